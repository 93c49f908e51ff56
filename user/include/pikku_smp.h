/* Helpers for pikku's several-CPU test programs: CPU affinity and getcpu through raw syscall()
 * (so a program sees exactly what the kernel returns, not what a libc wrapper makes of it), a
 * spin wait that works on one CPU too, and a watchdog that ends a stuck program with a line
 * saying so instead of letting it hang the machine. Needs _GNU_SOURCE and pikku_user.h. */
#ifndef PIKKU_SMP_H
#define PIKKU_SMP_H
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef SYS_getcpu
#define SYS_getcpu 309
#endif

/* The raw calls. sched_getaffinity returns the number of bytes it wrote (the libc wrapper
 * hides that); getcpu writes the CPU and NUMA node where it was called. */
static inline long getaffinity(long pid, unsigned long len, void *mask) { return syscall(SYS_sched_getaffinity, pid, len, mask); }
static inline long setaffinity(long pid, unsigned long len, const void *mask) { return syscall(SYS_sched_setaffinity, pid, len, mask); }
static inline long raw_getcpu(unsigned *cpu, unsigned *node) { return syscall(SYS_getcpu, cpu, node, 0); }

/* The CPU this thread runs on now, or -1 if getcpu failed. */
static inline int current_cpu(void) {
    unsigned cpu = ~0u;
    return raw_getcpu(&cpu, 0) == 0 ? (int)cpu : -1;
}

/* Restricts the calling thread to `cpu` alone; 0 or -1 with errno. On Linux the call returns
 * with the thread already on that CPU. */
static inline int pin_to(int cpu) {
    unsigned long mask = 1ul << cpu;
    return (int)setaffinity(0, sizeof mask, &mask);
}

/* How many CPUs this thread may run on: the bits of its affinity mask — the number musl's
 * sysconf(_SC_NPROCESSORS_ONLN) reports — or 1 if the call fails. */
static inline int allowed_cpus(void) {
    unsigned char mask[128] = {0};
    long n = getaffinity(0, sizeof mask, mask);
    int count = 0;
    for (long i = 0; i < n; i++)
        for (unsigned char b = mask[i]; b; b &= b - 1) count++;
    return count ? count : 1;
}

/* PAUSE: the spin-wait hint (SDM Vol. 2B, "PAUSE"). */
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* Waits until *flag == value. Pure spinning, no system call: a thread that waits this way keeps
 * its CPU (and that CPU's TLB) busy with this address space. On one CPU the timer's preemption
 * lets the thread it waits for run. */
static inline void spin_until(volatile int *flag, int value) {
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != value) cpu_relax();
}

static inline void set_flag(volatile int *flag, int value) { __atomic_store_n(flag, value, __ATOMIC_RELEASE); }

/* Flushes stdout and waits until the console has sent every byte (tcdrain: TCSBRK on Linux,
 * which waits for the serial port to drain; pikku's console writes synchronously and answers
 * ENOTTY). Needed before /init ends on several CPUs: Linux's serial driver may still be sending
 * the last line from another CPU when init's exit panics the kernel, and the panic message
 * would land in the middle of that line. */
static void drain_console(void) {
    fflush(stdout);
    tcdrain(1);
}

/* The watchdog: a thread that sleeps `seconds` and then ends the whole program with exit
 * status 99 and a line naming it — a lost wake-up or a stuck thread then fails the comparison
 * with Linux in bounded time instead of hanging the machine. */
static const char *watchdog_name;
static unsigned watchdog_seconds;
static void *watchdog_thread(void *unused) {
    (void)unused;
    struct timespec t = {watchdog_seconds, 0};
    while (nanosleep(&t, &t) != 0) {}
    printf("watchdog: %s did not finish within %u s\n", watchdog_name, watchdog_seconds);
    drain_console();
    _exit(99);
}

/* The first call in main of every several-CPU program: the console drained at exit (see
 * drain_console) and the watchdog started. */
static inline void smp_program_begin(const char *name, unsigned watchdog_after_seconds) {
    atexit(drain_console);
    pthread_t t;
    watchdog_name = name;
    watchdog_seconds = watchdog_after_seconds;
    pthread_create(&t, 0, watchdog_thread, 0);
    pthread_detach(t);
}
#endif
