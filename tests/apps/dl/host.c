/* A library with its own RUNPATH that dlopens a plugin by bare name: the
 * plugin must be searched for along THIS library's RUNPATH. */
#include <dlfcn.h>
#include <stdio.h>

int host_load(void) {
    void *h = dlopen("libplug2.so", RTLD_NOW);
    if (!h) { fprintf(stderr, "host dlopen: %s\n", dlerror()); return -1; }
    int (*v)(void) = (int (*)(void))dlsym(h, "plug_value");
    return v ? v() : -1;
}
