//! A Rust user program with no libc: raw system calls and RDPKRU, one line per fact.
//!
//! It allocates a write-disabled key, shows the PKRU the kernel set (read in ring 3 with
//! RDPKRU), frees the key twice (the second time is `EINVAL`), and exits 0. On a CPU without
//! protection keys it says so and checks that `pkey_alloc` is `ENOSPC`.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::fmt::Write;

// At entry RSP points at argc and is 16-byte aligned; call `main` with an ABI-aligned stack.
global_asm!(".globl _start", "_start:", "xor ebp, ebp", "and rsp, -16", "call {main}", "ud2", main = sym main);

fn syscall3(n: u64, a: u64, b: u64, c: u64) -> i64 {
    let r: i64;
    // SAFETY: the Linux x86-64 syscall convention; the kernel preserves all but rax, rcx, r11.
    unsafe { asm!("syscall", inlateout("rax") n as i64 => r, in("rdi") a, in("rsi") b, in("rdx") c, lateout("rcx") _, lateout("r11") _, options(nostack)) };
    r
}

struct Stdout;

impl Write for Stdout {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        syscall3(1, 1, s.as_ptr() as u64, s.len() as u64);
        Ok(())
    }
}

fn exit(code: u64) -> ! {
    syscall3(231, code, 0, 0);
    loop {}
}

fn ospke() -> bool {
    // CPUID.(EAX=7,ECX=0):ECX[4]
    let ecx = core::arch::x86_64::__cpuid_count(7, 0).ecx;
    ecx & (1 << 4) != 0
}

fn rdpkru() -> u32 {
    let eax: u32;
    // SAFETY: only called when OSPKE is set; RDPKRU reads PKRU into eax (ECX must be 0).
    unsafe { asm!("rdpkru", in("ecx") 0, out("eax") eax, out("edx") _, options(nomem, nostack)) };
    eax
}

extern "C" fn main() -> ! {
    let mut out = Stdout;
    let pku = ospke();
    let _ = writeln!(out, "rust: ospke = {}", pku as u8);
    let key = syscall3(330, 0, 2, 0); // pkey_alloc(0, PKEY_DISABLE_WRITE)
    let _ = writeln!(out, "rust: pkey_alloc(0, PKEY_DISABLE_WRITE) = {key}");
    if pku {
        let _ = writeln!(out, "rust: pkru = {:#010x}", rdpkru());
        let _ = writeln!(out, "rust: pkey_free({key}) = {}", syscall3(331, key as u64, 0, 0));
        let _ = writeln!(out, "rust: pkey_free({key}) = {}", syscall3(331, key as u64, 0, 0));
        exit(if key == 1 { 0 } else { 1 })
    }
    exit(if key == -28 { 0 } else { 1 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(101)
}
