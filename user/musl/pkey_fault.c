/* One access that protection keys must refuse; argv[1] picks it. Each must end the process
 * with SIGSEGV (the kernel reports SEGV_PKUERR and the key). The protection_keys selftest's
 * tests 1, 2, 4, 6, 7, 8 and the read half of 11/12. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include "pikku_user.h"

#define PAGE 4096

static void set_rights(int key, unsigned rights) {
    uint32_t p = rdpkru();
    p &= ~(3u << (2 * key));
    wrpkru(p | (rights << (2 * key)));
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    volatile char *p = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int touched = strstr(what, "mapped") != 0;
    int rights = !strncmp(what, "ad", 2) ? PKEY_DISABLE_ACCESS : PKEY_DISABLE_WRITE;
    if (!strcmp(what, "xo-read")) {
        p[0] = (char)0xc3;
        mprotect((void *)p, PAGE, PROT_EXEC);
    } else {
        int k = pk_alloc(0, touched ? 0 : rights);
        pk_mprotect((void *)p, PAGE, PROT_READ | PROT_WRITE, k);
        if (touched) {
            p[0] = 1;
            set_rights(k, rights);
        }
    }
    printf("about to: %s\n", what);
    fflush(stdout);
    if (strstr(what, "read")) {
        printf("read %d\n", p[0]);
    } else {
        p[0] = 2;
    }
    printf("still alive\n");
    return 0;
}
