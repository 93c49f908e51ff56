/* pkey_alloc / pkey_free from ring 3, with PKRU read back by RDPKRU after every change.
 * One line per observable fact, so the transcript can be compared with Linux's. */
#include <stdio.h>
#include "pikku_user.h"

static void show(const char *what, long r) {
    if (r < 0) printf("%s = -1 %s\n", what, errname(errno));
    else printf("%s = %ld\n", what, r);
}

static void pkru(void) {
    if (ospke()) printf("  pkru = 0x%08x\n", rdpkru());
}

int main(void) {
    printf("ospke = %d\n", ospke());
    pkru();
    show("pkey_alloc(0, 0)", pk_alloc(0, 0)); pkru();
    show("pkey_alloc(0, PKEY_DISABLE_WRITE)", pk_alloc(0, PKEY_DISABLE_WRITE)); pkru();
    show("pkey_alloc(0, PKEY_DISABLE_ACCESS)", pk_alloc(0, PKEY_DISABLE_ACCESS)); pkru();
    show("pkey_alloc(0, 3)", pk_alloc(0, 3)); pkru();
    show("pkey_alloc(1, 0)", pk_alloc(1, 0));
    show("pkey_alloc(0, 4)", pk_alloc(0, 4));
    show("pkey_free(3)", pk_free(3)); pkru();
    show("pkey_free(3) again", pk_free(3));
    show("pkey_alloc(0, 0) reuses", pk_alloc(0, 0)); pkru();
    show("pkey_free(16)", pk_free(16));
    show("pkey_free(-1)", pk_free(-1));
    show("pkey_free(0x100000002)", syscall(SYS_pkey_free, 0x100000002L));
    int n = 0;
    long k;
    while ((k = pk_alloc(0, 0)) >= 0) n++;
    printf("then %d more keys, and the next pkey_alloc = -1 %s\n", n, errname(errno));
    pkru();
    if (ospke()) {
        wrpkru(0x12345674);
        printf("wrpkru(0x12345674) then rdpkru = 0x%08x\n", rdpkru());
    }
    return 0;
}
