/* No libc: every system call below gets a pointer it must not trust, and must answer with
 * -EFAULT (or -ENOSYS for an unknown number) — the kernel must not crash, and must not print. */
#include "pikku_raw.h"

static int failures;

static void expect(const char *name, long got, long want) {
    put(got == want ? "PASS " : "FAIL ");
    put(name);
    put(" = ");
    put_num(got);
    if (got != want) { put(" (want "); put_num(want); put(")"); failures++; }
    put("\n");
}

static const char readonly_buf[64] = "this lives in .rodata";

int main(long argc, char **argv) {
    (void)argc; (void)argv;
    const long EFAULT = -14, ENOSYS = -38;
    const long kernel = (long)0xffff800000000000UL, noncanonical = 0x0000900000000000L, unmapped = 0x10000;
    expect("write(1, kernel address)", sys3(1, 1, kernel, 8), EFAULT);
    expect("write(1, non-canonical address)", sys3(1, 1, noncanonical, 8), EFAULT);
    expect("write(1, unmapped address)", sys3(1, 1, unmapped, 8), EFAULT);
    expect("write(1, buffer running off the end of user space)", sys3(1, 1, 0x00007ffffffff000L, 0x2000), EFAULT);
    long fd = sys3(2, "/etc/passwd", 0, 0);
    expect("open(\"/etc/passwd\") is fd 3", fd, 3);
    expect("read(fd, read-only buffer)", sys3(0, fd, readonly_buf, 16), EFAULT);
    expect("read(fd, kernel address)", sys3(0, fd, kernel, 16), EFAULT);
    expect("uname(kernel address)", sys3(63, kernel + 0x1000, 0, 0), EFAULT);
    expect("clock_gettime(CLOCK_MONOTONIC, kernel address)", sys3(228, 1, kernel, 0), EFAULT);
    expect("open(kernel address)", sys3(2, kernel, 0, 0), EFAULT);
    long iov[2] = {kernel, 8};
    expect("writev(1, iov with a kernel base, 1)", sys3(20, 1, iov, 1), EFAULT);
    expect("writev(1, kernel iov, 1)", sys3(20, 1, kernel, 1), EFAULT);
    expect("syscall 9999", sys3(9999, 0, 0, 0), ENOSYS);
    expect("syscall -1", sys3(-1, 0, 0, 0), ENOSYS);
    expect("write(1, \"ok\\n\", 3)", sys3(1, 1, "ok\n", 3), 3);
    put(failures ? "badptr: FAILED\n" : "badptr: all passed\n");
    return failures ? 1 : 0;
}
