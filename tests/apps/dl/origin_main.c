/* Checks that dlopen and dlsym still act for their real caller under
 * lumigo-run: a bare name is searched along this program's RUNPATH
 * ($ORIGIN/plugins), "$ORIGIN" in a name is this program's directory, a
 * library loaded with RTLD_DEEPBIND dlopens along its own RUNPATH, and
 * RTLD_NEXT is relative to this program. Prints "ok" or what failed. */
#include <dlfcn.h>
#include <stdio.h>

static int value_of(void *h) {
    int (*v)(void) = (int (*)(void))dlsym(h, "plug_value");
    return v ? v() : -1;
}

int main(void) {
    void *a = dlopen("libplug.so", RTLD_NOW);
    if (!a) { printf("bare name: %s\n", dlerror()); return 1; }
    void *b = dlopen("$ORIGIN/plugins/libplug.so", RTLD_NOW);
    if (!b || b != a) { printf("$ORIGIN name: %s\n", b ? "another object" : dlerror()); return 1; }
    if (value_of(a) != 1) { printf("plug_value\n"); return 1; }
    void *host = dlopen("$ORIGIN/hostlib/libhost.so", RTLD_NOW | RTLD_DEEPBIND);
    if (!host) { printf("host: %s\n", dlerror()); return 1; }
    int (*load)(void) = (int (*)(void))dlsym(host, "host_load");
    if (!load || load() != 2) { printf("host_load\n"); return 1; }
    /* Under LD_PRELOAD, the next definition after this program is the
     * preloaded one, which is also the first in the global scope. */
    if (dlsym(RTLD_NEXT, "connect") != dlsym(RTLD_DEFAULT, "connect")) {
        printf("RTLD_NEXT is not relative to the caller\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
