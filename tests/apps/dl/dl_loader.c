/* dl_loader LIBRARY MODE PORT PATH: dlopens LIBRARY (MODE: deepbind-lazy,
 * deepbind-now, plain, or deepbind-reload: loaded, used, closed, loaded
 * and used again), looks up http_get and calls it; prints the
 * status. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int mode = RTLD_NOW;
    if (strcmp(argv[2], "deepbind-lazy") == 0 || strcmp(argv[2], "deepbind-reload") == 0) mode = RTLD_LAZY | RTLD_DEEPBIND;
    else if (strcmp(argv[2], "deepbind-now") == 0) mode = RTLD_NOW | RTLD_DEEPBIND;
    void *h = dlopen(argv[1], mode);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int (*get)(int, const char *) = (int (*)(int, const char *))dlsym(h, "http_get");
    if (!get) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 1; }
    printf("%d\n", get(atoi(argv[3]), argv[4]));
    if (strcmp(argv[2], "deepbind-reload") == 0) {
        /* Closed and loaded again: a fresh copy, to be patched again. */
        dlclose(h);
        h = dlopen(argv[1], RTLD_LAZY | RTLD_DEEPBIND);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
        get = (int (*)(int, const char *))dlsym(h, "http_get");
        if (!get) return 1;
        printf("%d\n", get(atoi(argv[3]), argv[4]));
    }
    return 0;
}
