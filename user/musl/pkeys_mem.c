/* Keys on memory, as Linux's protection_keys selftest checks them — the cases that do not end
 * the process (the faulting ones are in pkey_fault.c). One observable fact per line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#define FUTEX_WAIT 0 /* <linux/futex.h>, which musl-gcc does not ship */
#define FUTEX_WAKE 1
#include <sched.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
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

/* Test 15, test_pkey_init_state: with every key allocated and open, PKRU is 0; a user-mode
 * XRSTOR of an image whose XSTATE_BV has the PKRU bit clear puts PKRU into its *initial*
 * state (0, and "not in use" as far as XSAVE is concerned). The kernel must keep it 0 across
 * interrupts and context switches — here against a parent with another PKRU that keeps
 * yielding — for a million reads. Then every key is freed again. */
static void init_state_child(void) {
    int keys[16], n = 0, k;
    while ((k = pk_alloc(0, 0)) > 0) keys[n++] = k;
    printf("child: pkey_alloc succeeded %d times, then %s; PKRU = 0x%08x\n", n, errname(errno), rdpkru());
    wrpkru(0x0000000c); /* key 1 closed: not the initial state */
    static uint8_t image[4096] __attribute__((aligned(64)));
    const uint32_t pkru_bit = 1u << 9;
    __asm__ volatile("xsave64 %0" : "+m"(image) : "a"(pkru_bit), "d"(0));
    image[512 + 1] &= ~(pkru_bit >> 8); /* XSTATE_BV: PKRU "in its initial state" */
    __asm__ volatile("xrstor64 %0" : : "m"(image), "a"(pkru_bit), "d"(0) : "memory");
    uint32_t first = rdpkru();
    long nonzero = 0;
    for (long i = 0; i < 1000000; i++) nonzero += rdpkru() != 0;
    printf("child: PKRU after the XRSTOR = 0x%08x; a million reads later, %ld were not 0\n", first, nonzero);
    int freed = 0;
    for (int i = 0; i < n; i++) freed += pk_free(keys[i]) == 0;
    printf("child: freed %d of %d keys\n", freed, n);
    fflush(stdout);
}

static void init_state(void) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        init_state_child();
        _exit(0);
    }
    int st;
    while (waitpid(c, &st, WNOHANG) == 0) sched_yield(); /* PKRU 0x55555554 in between */
    printf("child exited with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
}

int main(void) {
    printf("ospke = %d\n", ospke());
    if (!ospke()) {
        no_pkeys();
        return 0;
    }
    init_state();
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

    /* Test 10, test_kernel_gup_write_to_write_disabled_region: FUTEX_WAIT on a word whose key
     * is write-disabled. A private futex (FUTEX_PRIVATE_FLAG, 128) only reads the word: WD
     * lets it (the value differs: EAGAIN), AD does not (EFAULT); a private WAKE never touches
     * the word. A shared futex first pins the page — for writing, else read-only, and a
     * read-only anonymous page is refused — so under WD, and under AD, it is EFAULT, WAKE too.
     * (The selftest asserts nothing here; Linux's answers are these.) */
    int *w = (int *)page(RW);
    *w = 7;
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT, 6, NULL, NULL, 0));
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT | 128, 6, NULL, NULL, 0));
    SHOW(pk_mprotect(w, PAGE, RW, k));
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT, 6, NULL, NULL, 0));
    set_rights(k, PKEY_DISABLE_WRITE);
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT | 128, 6, NULL, NULL, 0));
    set_rights(k, PKEY_DISABLE_ACCESS);
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT | 128, 6, NULL, NULL, 0));
    SHOW(syscall(SYS_futex, w, FUTEX_WAKE | 128, 1, NULL, NULL, 0));
    set_rights(k, PKEY_DISABLE_WRITE);
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT, 6, NULL, NULL, 0));
    SHOW(syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0));
    set_rights(k, PKEY_DISABLE_ACCESS);
    SHOW(syscall(SYS_futex, w, FUTEX_WAIT, 7, NULL, NULL, 0));
    SHOW(syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0));
    set_rights(k, 0);
    /* Kernel copies that cross from an open page into a keyed one stop at the boundary:
     * whatever was copied before the fault counts (a short read or write), and only a copy
     * that got nothing is EFAULT. */
    {
        char *two = mmap(0, 2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(two, 'x', 2 * PAGE);
        SHOW(pk_mprotect(two + PAGE, PAGE, RW, k));
        char *edge = two + PAGE - 2; /* two bytes open, then the keyed page */
        set_rights(k, PKEY_DISABLE_WRITE);
        SHOW(pread(fd, edge, 4, 0));
        printf("the two open bytes now read \"%.2s\"\n", edge);
        SHOW(getrandom(edge, 4, 0));
        SHOW(uname((struct utsname *)edge));
        SHOW(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, edge)); /* not the vDSO: it would write in user mode and fault */
        set_rights(k, PKEY_DISABLE_ACCESS);
        memcpy(edge, "ok", 2);
        SHOW(write(1, edge, 4));
        printf("\n");
        struct iovec iov[2] = {{(void *)"iov0\n", 5}, {two + PAGE, 4}};
        SHOW(writev(1, iov, 2));
        int *fds = (int *)(two + PAGE);
        SHOW(pipe(fds));
        /* The kernel writes results to user memory *after* acting: an answer buffer it cannot
         * write is EFAULT, yet the new action, mask or alternate stack is in place (Linux:
         * rt_sigaction, rt_sigprocmask and sigaltstack copy the old value out last). A pipe()
         * whose fds cannot be stored leaves no descriptors behind. */
        set_rights(k, PKEY_DISABLE_WRITE);
        void *answer = two + PAGE;
        struct { unsigned long handler, flags, restorer, mask; } act = {1 /* SIG_IGN */, 0x04000000, 0, 0}, now;
        SHOW(syscall(SYS_rt_sigaction, SIGUSR2, &act, answer, 8));
        syscall(SYS_rt_sigaction, SIGUSR2, NULL, &now, 8);
        printf("SIGUSR2 ignored now: %s\n", now.handler == 1 ? "yes" : "no");
        unsigned long block = 1ul << (SIGUSR2 - 1), mask = 0;
        SHOW(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &block, answer, 8));
        syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &block, &mask, 8);
        printf("SIGUSR2 was blocked: %s\n", mask & block ? "yes" : "no");
        static char alt[16384];
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt}, cur;
        SHOW(syscall(SYS_sigaltstack, &ss, answer));
        syscall(SYS_sigaltstack, NULL, &cur);
        printf("alternate stack in place: %s\n", cur.ss_sp == alt ? "yes" : "no");
        SHOW(syscall(SYS_fstat, fd, answer)); /* raw: musl may go through statx and a user-mode copy */
        SHOW(pipe(answer));
        SHOW(dup(0)); /* the lowest free descriptor: nothing leaked */
        set_rights(k, PKEY_DISABLE_ACCESS);
        SHOW(syscall(SYS_nanosleep, answer, NULL));
        SHOW(read(fd, answer, 0));
        SHOW(write(1, answer, 0));
        SHOW(getrandom(answer, 0, 0));
        SHOW(execve(answer, NULL, NULL));
        SHOW(execve("/init", (char **)answer, NULL)); /* the argv array itself is unreadable */
        /* clone() with CLONE_PARENT_SETTID / CLONE_CHILD_SETTID into a page the caller cannot
         * write: Linux ignores a failed tid store (the child is created, the call succeeds). */
        fflush(stdout);
        long child = syscall(SYS_clone, SIGCHLD | 0x00100000 /* CLONE_PARENT_SETTID */ | 0x01000000 /* CLONE_CHILD_SETTID */,
                             0, answer, answer, 0);
        if (child == 0) _exit(42);
        int st = 0;
        waitpid((pid_t)child, &st, 0);
        printf("clone with tid pointers in a keyed page: child created: %s, exit status %d\n", child > 0 ? "yes" : "no",
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        set_rights(k, 0);
        int p[2];
        pipe(p);
        SHOW(write(p[1], edge, 4));
        SHOW(writev(p[1], iov, 2));
        SHOW(write(p[1], "abcd", 4));
        char got[16] = {0};
        SHOW(read(p[0], got, sizeof got));
        printf("the pipe held \"%.4s\"\n", got);
        SHOW(write(p[1], "efgh", 4));
        set_rights(k, PKEY_DISABLE_WRITE);
        SHOW(read(p[0], edge, 4));
        SHOW(read(p[0], got, sizeof got));
        printf("then the pipe held \"%.4s\"\n", got);
        close(p[0]);
        close(p[1]);
        set_rights(k, 0);
    }
    /* Test 9, test_kernel_gup_of_access_disabled_region: vmsplice() makes the kernel pin the
     * user page; under AD that fails (EFAULT), under WD reading is allowed. And the call's own
     * checks: flags, fd, a descriptor that is not a pipe; out of a read end into keyed pages. */
    {
        int vp[2];
        pipe(vp);
        char *buf = page(RW);
        memcpy(buf, "spliced", 8);
        SHOW(pk_mprotect(buf, PAGE, RW, k));
        struct iovec one = {buf, PAGE};
        set_rights(k, PKEY_DISABLE_ACCESS);
        SHOW(vmsplice(vp[1], &one, 1, SPLICE_F_GIFT));
        set_rights(k, PKEY_DISABLE_WRITE);
        SHOW(vmsplice(vp[1], &one, 1, SPLICE_F_GIFT));
        SHOW(vmsplice(vp[1], &one, 1, 0x10));
        SHOW(vmsplice(99, &one, 1, 0));
        SHOW(vmsplice(1, &one, 1, 0));
        SHOW(vmsplice(vp[1], &one, 0, 0));
        struct iovec into = {buf, 8};
        SHOW(vmsplice(vp[0], &into, 1, 0)); /* WD: the kernel cannot write the bytes out */
        set_rights(k, 0);
        char *plain = page(RW);
        struct iovec out = {plain, 8};
        SHOW(vmsplice(vp[0], &out, 1, 0));
        printf("vmsplice out of the pipe: \"%s\"\n", plain);
        close(vp[0]);
        close(vp[1]);
    }
    /* A read-only anonymous mapping: a shared futex cannot pin it for writing either. */
    int *ro = (int *)page(PROT_READ);
    SHOW(syscall(SYS_futex, ro, FUTEX_WAIT, 1, NULL, NULL, 0));
    SHOW(syscall(SYS_futex, ro, FUTEX_WAIT | 128, 1, NULL, NULL, 0));
    return 0;
}
