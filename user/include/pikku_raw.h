/* For the -nostdlib programs: raw system calls, output, a _start that calls main. */
#ifndef PIKKU_RAW_H
#define PIKKU_RAW_H

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return r;
}
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static unsigned long str_len(const char *s) { unsigned long n = 0; while (s[n]) n++; return n; }
static void put(const char *s) { sys3(1, 1, s, str_len(s)); }
static void put_num(long v) {
    char buf[24]; int i = 23; int neg = v < 0; unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = '0' + u % 10; u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    put(&buf[i]);
}

int main(long argc, char **argv);

/* At entry rsp points at argc and is 16-byte aligned; give main (argc, argv) and an ABI stack. */
__asm__(".globl _start\n_start:\n xor %rbp, %rbp\n mov (%rsp), %rdi\n lea 8(%rsp), %rsi\n and $-16, %rsp\n call main\n mov %eax, %edi\n mov $231, %eax\n syscall\n ud2\n");
#endif
