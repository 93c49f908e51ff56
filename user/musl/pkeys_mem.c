/* Keys on memory, as Linux's protection_keys selftest checks them — the cases that do not end
 * the process (the faulting ones are in pkey_fault.c). One observable fact per line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include "pikku_user.h"

#define SHOW(expr) do { errno = 0; long r_ = (long)(expr); fflush(stdout); \
    if (r_ < 0) printf("%s = -1 %s\n", #expr, errname(errno)); else printf("%s = %ld\n", #expr, r_); } while (0)
#define PAGE 4096
#define RW (PROT_READ | PROT_WRITE)
#define RWX (PROT_READ | PROT_WRITE | PROT_EXEC)

static void set_rights(int key, unsigned rights) {
    uint32_t p = rdpkru();
    p &= ~(3u << (2 * key));
    wrpkru(p | (rights << (2 * key)));
}

static char *page(int prot) {
    return mmap(0, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void no_pkeys(void) {
    /* test_mprotect_pkey_on_unsupported_cpu, and the reference's §10.3 derivations. */
    char *p = page(RW);
    SHOW(pk_mprotect(p, PAGE, PROT_READ, 1));
    SHOW(pk_mprotect(p, PAGE, PROT_READ, 0));
    SHOW(pk_mprotect(p, PAGE, PROT_READ, -1));
    SHOW(mprotect(p, PAGE, PROT_EXEC));
    SHOW(mprotect(p, PAGE, RW));
    p[0] = 1;
    printf("an execute-only request leaves the page readable and writable: yes\n");
}

int main(void) {
    printf("ospke = %d\n", ospke());
    if (!ospke()) {
        no_pkeys();
        return 0;
    }
    int fd = open("/etc/passwd", O_RDONLY);
    char *p = page(RW);
    int k = pk_alloc(0, 0);
    printf("key = %d\n", k);
    SHOW(pk_mprotect(p, PAGE, RW, k));
    memcpy(p, "abcd\n", 5);

    /* WD: reads allowed (test 0), kernel writes into the page refused, kernel reads allowed. */
    set_rights(k, PKEY_DISABLE_WRITE);
    printf("read under WD: %c\n", p[0]);
    SHOW(read(fd, p, 4));
    SHOW(write(1, p, 5));
    SHOW(uname((struct utsname *)p));

    /* AD: the kernel can neither read nor write it (tests 3, 5: EFAULT, no signal). */
    set_rights(k, PKEY_DISABLE_ACCESS);
    SHOW(write(1, p, 5));
    SHOW(read(fd, p, 4));
    set_rights(k, 0);
    SHOW(pread(fd, p, 4, 0));
    printf("now it reads \"%.4s\"\n", p);

    /* A page never touched: refused before anything is mapped. */
    char *q = page(RW);
    SHOW(pk_mprotect(q, PAGE, RW, k));
    set_rights(k, PKEY_DISABLE_ACCESS);
    SHOW(pread(fd, q, 4, 0));
    set_rights(k, 0);

    /* Test 19: key 0 attaches with every protection. */
    int prots[] = {PROT_READ, PROT_WRITE, PROT_EXEC, RW, RWX};
    for (int i = 0; i < 5; i++) printf("pkey_mprotect(q, PAGE, %d, 0) = %ld\n", prots[i], pk_mprotect(q, PAGE, prots[i], 0));

    /* Test 16: syscalls on unallocated keys fail; test 17: key 16+99. */
    int refused = 0;
    for (int i = 1; i < 16; i++) {
        if (i == k) continue;
        refused += pk_free(i) < 0 && pk_free(i) < 0 && pk_mprotect(q, PAGE, PROT_READ, i) < 0;
    }
    printf("unallocated keys refused by pkey_free and pkey_mprotect: %d of 14\n", refused);
    SHOW(pk_mprotect(q, PAGE, PROT_READ, 16 + 99));

    /* munmap, then mmap of the same range: key 0 again. */
    SHOW(pk_mprotect(q, PAGE, RW, k));
    SHOW(munmap(q, PAGE));
    char *q2 = mmap(q, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    set_rights(k, PKEY_DISABLE_ACCESS);
    q2[0] = 1;
    set_rights(k, 0);
    printf("remapped page writable while key %d is access-disabled: yes\n", k);

    /* madvise(MADV_DONTNEED): anonymous pages come back as zeros, private file pages as the file. */
    p[0] = 'Z';
    SHOW(madvise(p, PAGE, MADV_DONTNEED));
    printf("anonymous page after MADV_DONTNEED: %d\n", p[0]);
    char *f = mmap(0, PAGE, RW, MAP_PRIVATE, fd, 0);
    f[0] = 'X';
    SHOW(madvise(f, PAGE, MADV_DONTNEED));
    printf("file page after MADV_DONTNEED: \"%.4s\"\n", f);
    SHOW(madvise(p + 1, PAGE, MADV_DONTNEED));
    SHOW(madvise(p, PAGE, 999));
    SHOW(madvise(p, PAGE, MADV_WILLNEED));
    SHOW(madvise(p, PAGE, MADV_HUGEPAGE));
    SHOW(madvise(p, 0, MADV_DONTNEED));

    /* Test 13: mprotect(PROT_EXEC) alone makes execute-only memory with its own key. */
    char *x = page(RWX);
    x[0] = (char)0xc3; /* ret */
    SHOW(mprotect(x, PAGE, PROT_EXEC));
    printf("pkru = 0x%08x\n", rdpkru());
    ((void (*)(void))x)();
    printf("called code on an execute-only page: yes\n");
    SHOW(pk_free(2));
    SHOW(pk_mprotect(p, PAGE, RW, 2));
    SHOW(pk_alloc(0, 0));
    SHOW(mprotect(x, PAGE, PROT_READ | PROT_EXEC));
    printf("readable again after PROT_READ|PROT_EXEC: 0x%02x\n", (unsigned char)x[0]);

    /* Test 11: executing from a page whose key has AD works (keys never stop fetches). */
    char *y = page(RWX);
    y[0] = (char)0xc3;
    int k2 = pk_alloc(0, PKEY_DISABLE_ACCESS);
    SHOW(pk_mprotect(y, PAGE, RWX, k2));
    ((void (*)(void))y)();
    printf("executed code on a page whose key %d has AD: yes\n", k2);
    return 0;
}
