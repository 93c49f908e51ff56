/* 2-MiB huge pages (MAP_HUGETLB) with protection keys, as the protection_keys selftest uses
 * them when it runs as root. The kernel boots with a pool of 4 huge pages (Linux's
 * `hugepages=4` kernel parameter, pikku's boot option of the same name: the conformance
 * runner passes it to both), so the pool's state shows in what mmap allows: a mapping
 * reserves its pages when it is made, and ENOMEM says the pool cannot promise them.
 * Prints one line per observable fact; no addresses (they differ between kernels). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_user.h"

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define POOL 4
#ifndef MAP_HUGETLB
#define MAP_HUGETLB 0x40000
#endif
#define HUGE_SHIFT 26
#define ANON_HUGE (MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)

static void show(const char *what, long r) {
    if (r == -1)
        printf("%s = -1 %s\n", what, errname(errno));
    else
        printf("%s = %ld\n", what, r);
}

static char *map(unsigned long len, int prot, int flags) {
    return mmap(0, len, prot, flags, -1, 0);
}

static void show_map(const char *what, char *p) {
    if (p == MAP_FAILED)
        printf("%s = -1 %s\n", what, errname(errno));
    else
        printf("%s: ok, 2 MiB aligned: %s\n", what, ((unsigned long)p % HUGE) ? "no" : "yes");
}

static volatile int faults, last_code, last_pkey;

/* Records the fault and opens the key in the interrupted code's PKRU, so the write is redone
 * and goes through. */
static void on_segv(int sig, siginfo_t *si, void *ctx) {
    faults++;
    last_code = si->si_code;
    last_pkey = si->si_pkey;
    open_faulting_key(sig, si, ctx);
}

/* Runs `what` in a child and says how it ended. */
static void in_child(const char *what, void (*f)(char *), char *p) {
    int status = run_in_child(f, p);
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
    else
        printf("%s: exit %d\n", what, WEXITSTATUS(status));
}

static void touch(char *p) { p[0] = 1; }

static void child_writes(char *p) {
    printf("child reads: %s\n", p);
    strcpy(p, "child's own");
    strcpy(p + HUGE - 16, "child end");
    printf("child reads back: %s, %s\n", p, p + HUGE - 16);
}

int main(void) {
    /* 1. Allocation: the length is rounded up to 2 MiB, the address 2-MiB aligned, the
     * memory zeroed and usable across the whole huge page. */
    char *p = map(PAGE, PROT_READ | PROT_WRITE, ANON_HUGE);
    show_map("mmap(4 KiB, MAP_HUGETLB)", p);
    int zero = 1;
    for (unsigned long i = 0; i < HUGE; i += PAGE)
        zero &= p[i] == 0 && p[i + PAGE - 1] == 0;
    printf("zeroed: %s\n", zero ? "yes" : "no");
    strcpy(p, "start");
    strcpy(p + HUGE - 16, "end");
    printf("reads: %s, %s\n", p, p + HUGE - 16);
    show("munmap(p, 4 KiB)", munmap(p, PAGE));
    show("munmap(p + 4 KiB, 2 MiB - 4 KiB)", munmap(p + PAGE, HUGE - PAGE));
    show("mprotect(p, 4 KiB, R)", mprotect(p, PAGE, PROT_READ));
    show("mprotect(p + 4 KiB, 4 KiB, R)", mprotect(p + PAGE, PAGE, PROT_READ));
    show("madvise(p + 4 KiB, 4 KiB, DONTNEED)", madvise(p + PAGE, PAGE, MADV_DONTNEED));
    show("madvise(p, 4 KiB, DONTNEED)", madvise(p, PAGE, MADV_DONTNEED));
    printf("after a 4 KiB DONTNEED: %s\n", p);
    show("madvise(p, 2 MiB, DONTNEED)", madvise(p, HUGE, MADV_DONTNEED));
    printf("after a 2 MiB DONTNEED: '%s'\n", p);
    show("madvise(p, 2 MiB, HUGEPAGE)", madvise(p, HUGE, MADV_HUGEPAGE));
    show("munmap(p, 2 MiB)", munmap(p, HUGE));

    /* 2. mmap's checks. */
    char *fixed = map(2 * HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    char *aligned = (char *)(((unsigned long)fixed + HUGE - 1) & ~(HUGE - 1));
    munmap(fixed, 2 * HUGE);
    show_map("MAP_FIXED at a 2 MiB boundary", mmap(aligned, HUGE, PROT_READ, ANON_HUGE | MAP_FIXED, -1, 0));
    munmap(aligned, HUGE);
    show_map("MAP_FIXED 4 KiB past it", mmap(aligned + PAGE, HUGE, PROT_READ, ANON_HUGE | MAP_FIXED, -1, 0));
    show_map("MAP_HUGE_2MB", p = map(HUGE, PROT_READ, ANON_HUGE | (21 << HUGE_SHIFT)));
    show_map("MAP_FIXED 4 KiB page inside it", mmap(p + PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
    munmap(p, HUGE);
    show_map("MAP_HUGE_1GB", map(1UL << 30, PROT_READ, ANON_HUGE | (30 << HUGE_SHIFT)));
    show_map("MAP_HUGE 4 MiB (no such size)", map(HUGE, PROT_READ, ANON_HUGE | (22 << HUGE_SHIFT)));
    show_map("length 0", map(0, PROT_READ, ANON_HUGE));
    show_map("length ~0", map(~0UL, PROT_READ, ANON_HUGE));
    show_map("length 2^47", map(1UL << 47, PROT_READ, ANON_HUGE));
    int fd = open("/etc/passwd", O_RDONLY);
    show_map("a file with MAP_HUGETLB", mmap(0, HUGE, PROT_READ, MAP_PRIVATE | MAP_HUGETLB, fd, 0));
    close(fd);

    /* 3. The pool: 4 pages, reserved at mmap, given back at munmap. */
    show_map("5 pages", map(5 * HUGE, PROT_READ | PROT_WRITE, ANON_HUGE));
    char *all = map(POOL * HUGE, PROT_READ | PROT_WRITE, ANON_HUGE);
    show_map("4 pages", all);
    show_map("1 more page", map(HUGE, PROT_READ | PROT_WRITE, ANON_HUGE));
    char *nores = map(HUGE, PROT_READ | PROT_WRITE, ANON_HUGE | MAP_NORESERVE);
    show_map("1 more page, MAP_NORESERVE", nores);
    in_child("touching it", touch, nores);
    show("munmap(it)", munmap(nores, HUGE));
    for (int i = 0; i < POOL; i++)
        all[i * HUGE + 5] = 'a' + i;
    show("munmap(the first 2 of the 4)", munmap(all, 2 * HUGE));
    char *two = map(2 * HUGE, PROT_READ | PROT_WRITE, ANON_HUGE);
    show_map("2 pages again", two);
    printf("fresh pages are zero: %s; the others kept: %c%c\n", two[5] == 0 && two[HUGE + 5] == 0 ? "yes" : "no",
           all[2 * HUGE + 5], all[3 * HUGE + 5]);
    show("munmap(the rest)", munmap(all + 2 * HUGE, 2 * HUGE));
    show("munmap(the 2)", munmap(two, 2 * HUGE));

    /* 4. Keys on huge pages: pkey_mprotect writes the key into the 2-MiB entry; a write under
     * the key's WD bit is SEGV_PKUERR with si_pkey, reads go through. */
    if (ospke()) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, 0);
        xsave_pkru_offset();
        char *k = map(2 * HUGE, PROT_NONE, ANON_HUGE);
        int key = pk_alloc(0, 0);
        show("pkey_mprotect(4 KiB)", pk_mprotect(k, PAGE, PROT_READ | PROT_WRITE, key));
        show("pkey_mprotect(2 MiB + 4 KiB)", pk_mprotect(k, HUGE + PAGE, PROT_READ | PROT_WRITE, key));
        show("pkey_mprotect(4 MiB)", pk_mprotect(k, 2 * HUGE, PROT_READ | PROT_WRITE, key));
        strcpy(k + HUGE + 100, "keyed");
        uint32_t open_pkru = rdpkru();
        wrpkru(open_pkru | (PKEY_DISABLE_WRITE << (2 * key)));
        char c = k[HUGE + 100];
        int fd = open("/etc/passwd", O_RDONLY);
        show("read() into the page under WD", read(fd, k + HUGE + 300, 4));
        close(fd);
        k[HUGE + 200] = 'w';
        wrpkru(open_pkru);
        printf("read under WD: %c; write under WD: %d fault(s), si_code %d, si_pkey == key: %s, then written: %c\n", c,
               faults, last_code, last_pkey == key ? "yes" : "no", k[HUGE + 200]);
        show("pkey_mprotect(second page, key 0)", pk_mprotect(k + HUGE, HUGE, PROT_READ | PROT_WRITE, 0));
        wrpkru(open_pkru | (PKEY_DISABLE_ACCESS << (2 * key)));
        c = k[HUGE + 100];
        k[0] = 'x';
        wrpkru(open_pkru);
        printf("after: key-0 page read %c with the key denied, %d fault(s) in all, si_pkey == key: %s\n", c, faults,
               last_pkey == key ? "yes" : "no");
        show("munmap(keyed)", munmap(k, 2 * HUGE));
        pk_free(key);
    }

    /* 5. fork: each side sees its own data after a write. */
    char *f = map(HUGE, PROT_READ | PROT_WRITE, ANON_HUGE);
    strcpy(f, "parent's");
    in_child("child", child_writes, f);
    printf("parent reads: %s, '%s'\n", f, f + HUGE - 16);
    strcpy(f, "parent again");
    printf("parent reads back: %s\n", f);
    show("munmap(f)", munmap(f, HUGE));

    /* 6. Everything came back: the whole pool can be reserved again. */
    char *again = map(POOL * HUGE, PROT_READ | PROT_WRITE, ANON_HUGE);
    show_map("4 pages at the end", again);
    for (int i = 0; i < POOL; i++)
        again[i * HUGE] = 1;
    show("munmap(them)", munmap(again, POOL * HUGE));
    return 0;
}
