/* Helpers for pikku's musl test programs: the pkey syscalls and RDPKRU/WRPKRU, which musl
 * does not wrap, written out so the programs also run unchanged on Linux. */
#ifndef PIKKU_USER_H
#define PIKKU_USER_H
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef SYS_pkey_mprotect
#define SYS_pkey_mprotect 329
#define SYS_pkey_alloc 330
#define SYS_pkey_free 331
#endif
#define PKEY_DISABLE_ACCESS 0x1
#define PKEY_DISABLE_WRITE 0x2

static inline long pk_alloc(unsigned long flags, unsigned long rights) { return syscall(SYS_pkey_alloc, flags, rights); }
static inline long pk_free(long key) { return syscall(SYS_pkey_free, key); }
static inline long pk_mprotect(void *addr, size_t len, int prot, long key) { return syscall(SYS_pkey_mprotect, addr, len, prot, key); }

/* RDPKRU (0f 01 ee): ECX = 0, result in EAX. Only with OSPKE, or it raises #UD. */
static inline uint32_t rdpkru(void) {
    uint32_t eax, edx;
    __asm__ volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
    return eax;
}

/* WRPKRU (0f 01 ef): value in EAX, ECX = EDX = 0. */
static inline void wrpkru(uint32_t value) {
    __asm__ volatile(".byte 0x0f,0x01,0xef" : : "a"(value), "c"(0), "d"(0) : "memory");
}

/* CPUID.(7,0):ECX[4] — the OS has enabled protection keys (RDPKRU/WRPKRU allowed). */
static inline int ospke(void) {
    uint32_t a = 7, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return (c >> 4) & 1;
}

#ifdef _GNU_SOURCE
#include <signal.h>
#include <ucontext.h>
/* Signal handlers that read or edit keys. Needs _GNU_SOURCE (musl's full mcontext_t). */

/* Where PKRU sits in an XSAVE image: CPUID.(EAX=0Dh,ECX=9):EBX (2688 under -cpu max). */
static inline uint32_t xsave_pkru_offset(void) {
    static uint32_t offset;
    if (!offset) {
        uint32_t a = 0xd, b, c = 9, d;
        __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
        offset = b;
    }
    return offset;
}

/* The PKRU saved in a signal frame — uc_mcontext.fpregs points at the frame's XSAVE image —
 * which the interrupted code gets back at rt_sigreturn: a handler may edit it. */
static inline uint32_t *frame_pkru(void *ucontext) {
    return (uint32_t *)((char *)((ucontext_t *)ucontext)->uc_mcontext.fpregs + xsave_pkru_offset());
}

/* A SIGSEGV handler in the style of pkey sandboxes: open the faulting key (si_pkey) in the
 * PKRU saved in the frame; after rt_sigreturn the access is re-executed and succeeds. */
static inline void open_faulting_key(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    *frame_pkru(ctx) &= ~(3u << (2 * (int)si->si_pkey));
}

/* Installs open_faulting_key for SIGSEGV (and runs the CPUID for the PKRU offset now, not in
 * the handler). */
static inline void catch_key_faults(void) {
    xsave_pkru_offset();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = open_faulting_key;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
}
#endif

/* "-1 EINVAL" / "5": a syscall result the way the conformance transcripts print it. */
static inline const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM"; case EACCES: return "EACCES"; case EFAULT: return "EFAULT";
    case EEXIST: return "EEXIST"; case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS"; case EROFS: return "EROFS"; case ENOTDIR: return "ENOTDIR";
    case ENOTTY: return "ENOTTY"; case ESPIPE: return "ESPIPE"; case EISDIR: return "EISDIR";
    case ECHILD: return "ECHILD"; case ESRCH: return "ESRCH"; case ENOEXEC: return "ENOEXEC";
    case EINTR: return "EINTR"; case EPIPE: return "EPIPE"; case EAGAIN: return "EAGAIN";
    case ETIMEDOUT: return "ETIMEDOUT"; case E2BIG: return "E2BIG";
    case ENODEV: return "ENODEV"; case EOVERFLOW: return "EOVERFLOW"; case ENAMETOOLONG: return "ENAMETOOLONG";
    case EMFILE: return "EMFILE"; case EIO: return "EIO";
    default: return "E?";
    }
}

/* Runs `f(p)` in a forked child (stdout flushed on both sides of the fork) and returns the
 * child's wait status. */
static inline int run_in_child(void (*f)(char *), char *p) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        f(p);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* Mounts /proc unless it is there already (pikku's is built in; Linux's initramfs has none). */
static inline void mount_proc_if_absent(void) {
    int probe = open("/proc/self/maps", O_RDONLY);
    if (probe >= 0) {
        close(probe);
    } else {
        mkdir("/proc", 0555);
        mount("proc", "/proc", "proc", 0, NULL);
    }
}
#endif
