//! `ptrace(request, pid, addr, data)`: what a debugger's first steps and Linux's protection-key
//! selftests use — `PTRACE_TRACEME`, `ATTACH`, `PEEKTEXT`/`PEEKDATA`, `POKETEXT`/`POKEDATA`,
//! `CONT`, `KILL`, `DETACH`, `GETREGS`/`SETREGS`, and `GETREGSET`/`SETREGSET` for `NT_PRSTATUS`
//! and `NT_X86_XSTATE`. Linux: `kernel/ptrace.c` (`SYSCALL_DEFINE4(ptrace)`, `ptrace_attach()`,
//! `ptrace_check_attach()`, `ptrace_request()`), `arch/x86/kernel/ptrace.c` (`arch_ptrace()`,
//! `putreg()`), `arch/x86/kernel/fpu/regset.c` (`xstateregs_get()`/`_set()`).
//!
//! The tracee's registers are the frame it copied aside when it stopped (see
//! [`crate::signal::jobctl`]); its FPU state is its saved XSAVE area, into which PKRU — kept
//! outside that area by the context switch — is merged for the tracer to see and taken from
//! when the tracer sets it. Its memory is reached as a foreign access
//! ([`Mm::access_foreign`](crate::mm::address_space::Mm)): no protection key and no page
//! protection stands in the way, as for Linux's `access_process_vm(FOLL_FORCE)`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use pkeys::{Errno, Pkru};

use crate::arch::x86_64::fpu;
use crate::arch::x86_64::gdt::{USER_CS, USER_SS};
use crate::arch::x86_64::paging::USER_END;
use crate::arch::x86_64::trap::TrapFrame;
use crate::mm::user;
use crate::signal::jobctl;
use crate::task::{self, Thread};

/// Request numbers (`include/uapi/linux/ptrace.h`, `arch/x86/include/uapi/asm/ptrace-abi.h`).
mod req {
    pub const TRACEME: u64 = 0;
    pub const PEEKTEXT: u64 = 1;
    pub const PEEKDATA: u64 = 2;
    pub const POKETEXT: u64 = 4;
    pub const POKEDATA: u64 = 5;
    pub const CONT: u64 = 7;
    pub const KILL: u64 = 8;
    pub const GETREGS: u64 = 12;
    pub const SETREGS: u64 = 13;
    pub const ATTACH: u64 = 16;
    pub const DETACH: u64 = 17;
    pub const GETREGSET: u64 = 0x4204;
    pub const SETREGSET: u64 = 0x4205;
}

/// Register sets (ELF note types, `include/uapi/linux/elf.h`).
const NT_PRSTATUS: u64 = 1;
const NT_X86_XSTATE: u64 = 0x202;

/// `struct user_regs_struct`: 27 words.
const USER_REGS_WORDS: usize = 27;

/// Yama's `ptrace_scope` on the reference kernel (Debian's 6.12 build): 0, "classic ptrace
/// permissions" — a process may attach to any process of its own uid, not only to its
/// descendants (measured: `ptrace` conformance case, the sibling attach).
const YAMA_RELATIONAL: bool = false;

/// `ptrace(request, pid, addr, data)`, checks in Linux's order: `TRACEME` first; then the pid
/// (`ESRCH`); `ATTACH`; then "is it our tracee, stopped" (`ESRCH`; `KILL` needs it traced
/// only); then the request (`EIO` for one pikku does not know — Linux's answer to an unknown
/// request).
pub fn sys_ptrace(request: u64, pid: u64, addr: u64, data: u64) -> Result<u64, Errno> {
    let me = task::current();
    if request == req::TRACEME {
        return traceme(&me);
    }
    let pid = pid as u32 as i32;
    let tracee = if pid > 0 { task::find_thread(pid as u32) } else { None }.ok_or(Errno::ESRCH)?;
    if request == req::ATTACH {
        return attach(&me, &tracee);
    }
    let traced_by_me = tracee.process.jobctl.tracer() == Some(me.process.pid);
    if request == req::KILL && traced_by_me {
        crate::signal::send_from_current(&tracee, crate::signal::SIGKILL, 0);
        return Ok(0);
    }
    let stopped = traced_by_me
        && tracee.process.jobctl.state.lock().trace_stop.is_some_and(|t| t.tid == tracee.tid && t.resume.is_none());
    if !stopped {
        return Err(Errno::ESRCH);
    }
    // Stopped, but perhaps still switching out on another CPU: its saved FPU state and PKRU
    // are valid only once it is off (Linux `ptrace_check_attach()` → `wait_task_inactive()`).
    crate::task::sched::wait_inactive(&tracee);
    match request {
        req::PEEKTEXT | req::PEEKDATA => {
            let mut word = [0u8; 8];
            if tracee.mm.write().access_foreign(addr, &mut word, false) != word.len() {
                return Err(Errno::EIO);
            }
            user::copy_to_user(data, &word).map(|()| 0)
        }
        req::POKETEXT | req::POKEDATA => {
            let mut word = data.to_le_bytes();
            if tracee.mm.write().access_foreign(addr, &mut word, true) != word.len() {
                return Err(Errno::EIO);
            }
            Ok(0)
        }
        req::CONT | req::DETACH => {
            let sig = valid_signal(data)?;
            if request == req::DETACH {
                jobctl::detach(&tracee.process, sig);
            } else {
                tracee.process.jobctl.with(|s| s.trace_stop.iter_mut().for_each(|t| t.resume = Some(sig)));
                task::sched::wake_process(tracee.process.pid);
            }
            Ok(0)
        }
        req::GETREGS => user::copy_to_user(data, &words_to_bytes(&user_regs(&tracee))).map(|()| 0),
        req::SETREGS => {
            let mut b = [0u8; USER_REGS_WORDS * 8];
            user::copy_from_user(&mut b, data)?;
            set_user_regs(&tracee, &b, b.len())
        }
        req::GETREGSET | req::SETREGSET => regset(&tracee, request == req::SETREGSET, addr, data),
        _ => Err(Errno::EIO),
    }
}

/// `PTRACE_TRACEME`: the parent becomes the tracer (`EPERM` if traced already). Linux:
/// `ptrace_traceme()`.
fn traceme(me: &Arc<Thread>) -> Result<u64, Errno> {
    let parent = me.process.parent.load(Ordering::Relaxed);
    me.process.jobctl.with(|s| {
        if s.tracer.is_some() {
            return Err(Errno::EPERM);
        }
        s.tracer = Some(parent);
        Ok(0)
    })
}

/// `PTRACE_ATTACH`: `EPERM` for a thread of the caller's own process, for a tracee the caller
/// may not trace ([`may_access`]), for a process that is ending or traced already; then the
/// tracee gets SIGSTOP. Linux: `ptrace_attach()`.
fn attach(me: &Arc<Thread>, tracee: &Arc<Thread>) -> Result<u64, Errno> {
    if Arc::ptr_eq(&me.process, &tracee.process) || !may_access(me, tracee) {
        return Err(Errno::EPERM);
    }
    if tracee.process.ended.load(Ordering::Acquire) {
        return Err(Errno::EPERM);
    }
    let tracer = me.process.pid;
    tracee.process.jobctl.with(|s| {
        if s.tracer.is_some() {
            return Err(Errno::EPERM);
        }
        s.tracer = Some(tracer);
        Ok(())
    })?;
    crate::signal::send_from_current(tracee, crate::signal::SIGSTOP, 0x80);
    Ok(0)
}

/// May `me` trace `tracee`? Root may; anyone else needs the same uid and gid, a dumpable
/// tracee (one that has not changed its ids since its last `execve`), and — with Yama's
/// relational scope — to be an ancestor of it. Linux: `__ptrace_may_access()`,
/// `yama_ptrace_access_check()`.
fn may_access(me: &Thread, tracee: &Thread) -> bool {
    if me.process.is_root() {
        return true;
    }
    let same = |a: &task::Process, b: &task::Process| {
        a.uid.load(Ordering::Relaxed) == b.uid.load(Ordering::Relaxed) && a.gid.load(Ordering::Relaxed) == b.gid.load(Ordering::Relaxed)
    };
    if !same(&me.process, &tracee.process) || !tracee.process.jobctl.dumpable.load(Ordering::Relaxed) {
        return false;
    }
    !YAMA_RELATIONAL || is_ancestor(me.process.pid, &tracee.process)
}

/// Is `ancestor` the parent, grandparent, … of `process`?
fn is_ancestor(ancestor: u32, process: &task::Process) -> bool {
    let mut pid = process.parent.load(Ordering::Relaxed);
    for _ in 0..crate::task::limits::max_tasks() {
        if pid == ancestor {
            return true;
        }
        match task::process::find(pid) {
            Some(p) if pid > 1 => pid = p.parent.load(Ordering::Relaxed),
            _ => return false,
        }
    }
    false
}

/// A signal number `CONT`/`DETACH` may carry (0–64), else `EIO`. Linux: `valid_signal()`.
fn valid_signal(data: u64) -> Result<u8, Errno> {
    u8::try_from(data).ok().filter(|&s| s <= 64).ok_or(Errno::EIO)
}

/// The stopped tracee's registers as `struct user_regs_struct`. Linux: `getreg()`.
fn user_regs(tracee: &Thread) -> [u64; USER_REGS_WORDS] {
    let f = tracee.signals.regs.lock().clone().unwrap_or_else(empty_frame);
    let fs_base = tracee.fs_base.load(Ordering::Relaxed);
    let (cs, ss) = (USER_CS as u64, USER_SS as u64);
    [
        f.r15, f.r14, f.r13, f.r12, f.rbp, f.rbx, f.r11, f.r10, f.r9, f.r8, f.rax, f.rcx, f.rdx, f.rsi, f.rdi,
        f.orig_rax(), f.rip, cs, f.rflags, f.rsp, ss, fs_base, 0, 0, 0, 0, 0,
    ]
}

fn empty_frame() -> TrapFrame {
    TrapFrame {
        rax: 0, rbx: 0, rcx: 0, rdx: 0, rsi: 0, rdi: 0, rbp: 0, r8: 0, r9: 0, r10: 0, r11: 0, r12: 0, r13: 0,
        r14: 0, r15: 0, vector: 0, error_code: 0, rip: 0, cs: USER_CS as u64, rflags: 0, rsp: 0, ss: USER_SS as u64,
    }
}

/// Sets the stopped tracee's registers from the first `len` bytes of a `user_regs_struct`
/// (the rest keep their values). Linux: `putreg()`: `EIO` for a selector other than the user
/// ones pikku has, an FS base outside user space; the flags only in the bits user code may
/// change. pikku also refuses a non-canonical RIP (`EIO`), which the return to user mode could
/// not take.
fn set_user_regs(tracee: &Thread, bytes: &[u8], len: usize) -> Result<u64, Errno> {
    const FLAG_MASK: u64 = 0x0000_0000_0025_4dd5; // CF PF AF ZF SF TF DF OF NT RF AC ID (Linux FLAG_MASK)
    let mut w = user_regs(tracee);
    for (i, chunk) in bytes[..len].as_chunks::<8>().0.iter().enumerate() {
        w[i] = u64::from_le_bytes(*chunk);
    }
    let [r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, rflags, rsp, ss, fs_base, ..] = w;
    if cs != USER_CS as u64 || ss != USER_SS as u64 || fs_base >= vma::TASK_SIZE || rip >= USER_END {
        return Err(Errno::EIO);
    }
    let mut regs = tracee.signals.regs.lock();
    let f = regs.as_mut().ok_or(Errno::ESRCH)?;
    *f = TrapFrame { r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, rip, rsp, ..f.clone() };
    f.rflags = (f.rflags & !FLAG_MASK) | (rflags & FLAG_MASK);
    f.set_orig_rax(orig_rax);
    tracee.fs_base.store(fs_base, Ordering::Relaxed);
    Ok(0)
}

fn words_to_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// `PTRACE_GETREGSET`/`SETREGSET` with `data` → `struct iovec`. Linux `ptrace_regset()`: an
/// unknown set, or an `iov_len` that is not a multiple of the set's word (8), is `EINVAL`;
/// `iov_len` is clamped to the set's size; a get writes the new `iov_len` back. For
/// `NT_X86_XSTATE` a set must supply the whole image (`EFAULT` otherwise, as Linux's
/// `xstateregs_set()`), and an image XRSTOR would refuse is `EINVAL`.
fn regset(tracee: &Thread, set: bool, kind: u64, iov_addr: u64) -> Result<u64, Errno> {
    let mut iov = [0u8; 16];
    user::copy_from_user(&mut iov, iov_addr)?;
    let base = u64::from_le_bytes(iov[..8].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(iov[8..].try_into().expect("8 bytes"));
    let size = match kind {
        NT_PRSTATUS => USER_REGS_WORDS * 8,
        NT_X86_XSTATE if fpu::xcr0() != 0 && tracee.fpu.is_some() => tracee.fpu.as_ref().map_or(0, |f| f.lock().bytes().len()),
        _ => return Err(Errno::EINVAL),
    };
    if len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = (len as usize).min(size);
    if !set {
        let image = match kind {
            NT_PRSTATUS => words_to_bytes(&user_regs(tracee)),
            _ => xstate_image(tracee),
        };
        user::copy_to_user(base, &image[..len])?;
        let iov_len_addr = iov_addr.checked_add(8).ok_or(Errno::EFAULT)?;
        return user::write_u64(iov_len_addr, len as u64).map(|()| 0);
    }
    let mut bytes = alloc::vec![0u8; len];
    user::copy_from_user(&mut bytes, base)?;
    match kind {
        NT_PRSTATUS => set_user_regs(tracee, &bytes, len),
        _ if len != size => Err(Errno::EFAULT),
        _ => set_xstate(tracee, &bytes),
    }
}

/// The tracee's XSAVE image with PKRU merged in at CPUID.(0Dh,9)'s offset (XSTATE_BV bit 9
/// set unless PKRU is 0), and in the legacy area's software-reserved bytes 464..512 what Linux puts there for a
/// debugger: XCR0 (the components the image can hold; gdb reads it there), then zeros (measured
/// on the reference kernel: the `ptrace` conformance case). Linux: `xstateregs_get()` →
/// `copy_xstate_to_uabi_buf()` (PKRU from `thread.pkru`).
fn xstate_image(tracee: &Thread) -> Vec<u8> {
    let mut image = tracee.fpu.as_ref().map(|f| f.lock().bytes().to_vec()).unwrap_or_default();
    let size = image.len();
    image[464..472].copy_from_slice(&fpu::xcr0().to_le_bytes());
    image[472..512].fill(0);
    if let Some(at) = fpu::pkru_offset().filter(|&at| at + 4 <= size) {
        // XSTATE_BV bit 9 says "PKRU is not in its initial state (0)", as an XSAVE of the live
        // register would (its XINUSE bit; SDM Vol. 1 §13.6 "Processor Tracking of XSAVE-Managed
        // State"). Linux shows the bit of the tracee's own saved header, which is the same.
        let pkru = tracee.saved_pkru().bits();
        image[at..at + 4].copy_from_slice(&pkru.to_le_bytes());
        if pkru != 0 {
            image[512 + 1] |= (fpu::XFEATURE_PKRU >> 8) as u8;
        }
    }
    image
}

/// Loads a tracer's XSAVE image into the stopped tracee: the FPU state, and PKRU from its
/// slot — or 0, PKRU's initial state, if XSTATE_BV bit 9 is clear. Linux:
/// `copy_uabi_to_xstate()`.
fn set_xstate(tracee: &Thread, image: &[u8]) -> Result<u64, Errno> {
    let fpu_state = tracee.fpu.as_ref().ok_or(Errno::EINVAL)?;
    fpu_state.lock().set_image(image).map_err(|_| Errno::EINVAL)?;
    if let Some(at) = fpu::pkru_offset() {
        let xstate_bv = u64::from_le_bytes(image[512..520].try_into().expect("8 bytes"));
        let pkru = if xstate_bv & fpu::XFEATURE_PKRU != 0 {
            u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"))
        } else {
            0
        };
        tracee.set_saved_pkru(Pkru::from_bits(pkru));
    }
    Ok(0)
}
