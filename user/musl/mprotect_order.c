/* mprotect / pkey_mprotect argument checks, in the order Linux makes them, and a range with a
 * hole (what lies before the hole changes; the call fails with ENOMEM). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include "pikku_user.h"

#define SHOW(expr) do { errno = 0; long r_ = (long)(expr); \
    if (r_ < 0) printf("%s = -1 %s\n", #expr, errname(errno)); else printf("%s = %ld\n", #expr, r_); } while (0)
#define P 4096L
/* The raw system call: musl's mprotect() rounds the start down and the length up. */
#define mprotect(a, l, p) syscall(SYS_mprotect, (a), (l), (p))

int main(void) {
    char *p = mmap(0, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + P, P); /* p: page, hole, page */
    char *q = p + 2 * P;
    long key = ospke() ? pk_alloc(0, 0) : -1;
    printf("ospke = %d\n", ospke());

    SHOW(mprotect(p + 1, P, PROT_READ));                          /* misaligned start */
    SHOW(mprotect(p, 0, 0xff));                                   /* len 0: success, prot unchecked */
    SHOW(pk_mprotect(p, 0, PROT_READ, 99));                       /* len 0: before the key */
    SHOW(mprotect(p, -1L, PROT_READ));                            /* length wraps */
    SHOW(mprotect((void *)-4096L, 2 * P, PROT_READ));             /* end wraps */
    SHOW(mprotect(p, P, 0x10));                                   /* unknown prot bit */
    SHOW(mprotect(p, P, PROT_READ | 0x8));                        /* PROT_SEM is allowed */
    SHOW(mprotect(p, P, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP));
    SHOW(mprotect(p, P, PROT_READ | PROT_GROWSDOWN));             /* area does not grow down */
    SHOW(mprotect(p, P, PROT_READ | PROT_GROWSUP));
    SHOW(pk_mprotect(p, P, PROT_READ, 99));                       /* bad key */
    SHOW(pk_mprotect((void *)0x10000, P, PROT_READ, 99));         /* bad key beats ENOMEM */
    SHOW(pk_mprotect(p, P, PROT_READ, 0x100000000L + key));       /* int: the high half is ignored */
    SHOW(pk_mprotect(p, P, PROT_READ, 0x80000000L));              /* INT_MIN */
    SHOW(pk_mprotect(p, P, PROT_READ, -2));
    SHOW(mprotect((void *)0x10000, P, PROT_READ));                /* nothing mapped */
    SHOW(mprotect(p + P, P, PROT_READ));                          /* the hole itself */

    /* Across the hole: the first page changes, the call fails, the last page is untouched. */
    SHOW(mprotect(p, 3 * P, PROT_READ));
    int fd = open("/etc/passwd", 0);
    SHOW(read(fd, p, 4));                                         /* p is read-only now: EFAULT */
    SHOW(read(fd, q, 4));                                         /* q is still writable */
    if (ospke()) {
        SHOW(pk_free(0));
        SHOW(pk_free(0));
        SHOW(pk_mprotect(p, P, PROT_READ, 0));                    /* key 0 freed: refused */
        SHOW(pk_alloc(0, 0));                                     /* hands key 0 out again */
        SHOW(pk_free(0x100000001L));
        SHOW(pk_free(0x80000000L));
    }
    return 0;
}
