/* pikku's demo: memory protection keys, narrated step by step. `make run` boots it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_user.h"

static void decode(const char *who, uint32_t pkru) {
    printf("   %s PKRU = 0x%08x:", who, pkru);
    for (int k = 0; k < 16; k++) {
        unsigned r = (pkru >> (2 * k)) & 3;
        const char *t = (r & 1) ? "--" : (r & 2) ? "r-" : "rw";
        if (k < 4 || r != 1) printf(" %d:%s", k, t);
    }
    printf("  (all other keys --)\n");
}

static void set_rights(int key, unsigned rights) {
    uint32_t p = rdpkru() & ~(3u << (2 * key));
    wrpkru(p | (rights << (2 * key)));
}

static char *page;
static int key_ro;
static volatile int caught_code, caught_pkey;

/* A SIGSEGV handler in the style of pkey sandboxes: read si_pkey, open that key in the PKRU
 * saved in the signal frame (its XSAVE area), return; the faulting write then succeeds. */
static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    caught_code = si->si_code;
    caught_pkey = (int)si->si_pkey;
    *frame_pkru(ctx) &= ~(3u << (2 * caught_pkey));
}

static void *thread_b(void *arg) {
    (void)arg;
    printf("   thread B: my PKRU was copied from my creator at clone(): 0x%08x\n", rdpkru());
    set_rights(key_ro, PKEY_DISABLE_WRITE);
    printf("   thread B: I set key %d back to read-only for myself; I read \"%.12s\"\n", key_ro, page);
    decode("thread B's", rdpkru());
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--after-exec")) {
        printf("8. execve() starts a program over: the map holds key 0 only, PKRU is the default again.\n");
        decode("after exec,", rdpkru());
        printf("   pkey_alloc(0, 0) = %ld (key 1 is free again)\n\n", pk_alloc(0, 0));
        printf("That was the tour. The kernel's own report on switches and WRPKRUs follows.\n");
        return 0;
    }
    printf("\npikku demo: memory protection keys, step by step\n");
    printf("==================================================\n\n");
    if (!ospke()) {
        printf("This CPU has no protection keys (try CPU=max). pkey_alloc(0, 0) = %ld (-1 = ENOSPC, as on Linux).\n", pk_alloc(0, 0));
        return 0;
    }
    printf("1. Every page has a key (0-15) in bits 59-62 of its page-table entry; PKRU holds two\n"
           "   bits per key for this thread: AD (no access) and WD (no writes). A new program starts\n"
           "   with only key 0 open:\n");
    decode("initial", rdpkru());

    long k1 = pk_alloc(0, 0);
    key_ro = (int)pk_alloc(0, PKEY_DISABLE_WRITE);
    printf("\n2. pkey_alloc(0, 0) = %ld and pkey_alloc(0, PKEY_DISABLE_WRITE) = %d: the kernel takes the\n"
           "   lowest free keys from this address space's 16-bit map and sets their bits in *this\n"
           "   thread's* PKRU:\n", k1, key_ro);
    decode("now", rdpkru());

    page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(page, "hello, keys!");
    pk_mprotect(page, 4096, PROT_READ | PROT_WRITE, key_ro);
    int fd = open("/etc/passwd", O_RDONLY);
    long r = read(fd, page, 4);
    printf("\n3. pkey_mprotect() tagged a page with key %d. Reading it works: \"%.12s\". Even the kernel\n"
           "   honours our PKRU: read(fd, page, 4) = %ld (EFAULT) - no signal, just an error.\n", key_ro, page, r);

    printf("\n4. Two threads, one key. Thread A (main) opens key %d for writing; thread B does not:\n", key_ro);
    set_rights(key_ro, 0);
    strcpy(page, "written by A");
    pthread_t b;
    pthread_create(&b, 0, thread_b, 0);
    pthread_join(b, 0);
    decode("thread A's", rdpkru());
    printf("   Same address space, same key, different rights: PKRU is saved and restored on every\n"
           "   context switch (and WRPKRU is skipped when the value is already right).\n");

    printf("\n5. fork(): the child gets a copy of the key map and of the forking thread's PKRU.\n");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        decode("child's", rdpkru());
        long first = pk_free(k1);
        long again = pk_free(k1);
        printf("   child: pkey_free(%ld) = %ld; pkey_free(%ld) again = %ld (freed in my copy only)\n", k1, first, k1, again);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    long mine = pk_free(k1);
    printf("   parent: my key %ld is still mine: pkey_free(%ld) = %ld (and now it is free)\n", k1, k1, mine);

    printf("\n6. A denied access. A child makes key %d read-only again and writes to the page:\n", key_ro);
    fflush(stdout);
    if ((c = fork()) == 0) {
        set_rights(key_ro, PKEY_DISABLE_WRITE);
        page[0] = 'X';
        _exit(0);
    }
    waitpid(c, &st, 0);
    printf("   wait4(): the child was killed by signal %d (SIGSEGV); the kernel's report line says\n"
           "   SEGV_PKUERR and the key, as Linux reports it in si_code and si_pkey.\n", WTERMSIG(st));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    set_rights(key_ro, PKEY_DISABLE_WRITE);
    page[0] = 'Y';
    __asm__ volatile("" ::: "memory"); /* read what the handler wrote only after the store */
    printf("   With a handler instead: it saw si_code %d (SEGV_PKUERR) and si_pkey %d, opened key %d in\n"
           "   the PKRU saved in its signal frame, returned - and the same write went through: '%c'.\n",
           caught_code, caught_pkey, caught_pkey, page[0]);
    decode("after sigreturn,", rdpkru());
    signal(SIGSEGV, SIG_DFL);

    char *code = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    code[0] = (char)0xc3; /* ret */
    mprotect(code, 4096, PROT_EXEC);
    ((void (*)(void))code)();
    printf("\n7. Execute-only memory: mprotect(PROT_EXEC) gave that page a key of its own (the lowest\n"
           "   free one, key %ld again), with AD set in our PKRU, so it can be called - keys never stop\n"
           "   instruction fetches - but not read:\n", k1);
    decode("now", rdpkru());

    printf("\n");
    fflush(stdout);
    char *args[] = {"/init", "--after-exec", 0};
    execve("/init", args, 0);
    printf("execve failed\n");
    return 1;
}
