//! What happens when a user program faults.
//!
//! Every exception from ring 3 arrives here (the trap hook). A page fault that the program's
//! memory areas can satisfy is demand paging and simply returns. Anything else becomes the
//! signal Linux would send (`arch/x86/kernel/traps.c`, `arch/x86/mm/fault.c`):
//!
//! | exception                 | signal  | `si_code`                          |
//! |---------------------------|---------|------------------------------------|
//! | #PF outside any area      | SIGSEGV | `SEGV_MAPERR` (1)                  |
//! | #PF against protection    | SIGSEGV | `SEGV_ACCERR` (2)                  |
//! | #PF refused by a key      | SIGSEGV | `SEGV_PKUERR` (4), `si_pkey`       |
//! | #GP (privileged instruction, non-canonical address) | SIGSEGV | `SI_KERNEL` (0x80) |
//! | #UD                       | SIGILL  | `ILL_ILLOPN` (2)                   |
//! | #DE                       | SIGFPE  | `FPE_INTDIV` (1)                   |
//! | #MF, #XM                  | SIGFPE  | —                                  |
//! | #DB, #BP                  | SIGTRAP | —                                  |
//! | #NP, #SS, #AC             | SIGBUS  | —                                  |
//!
//! With a handler installed (and the signal not blocked) the handler runs; otherwise the process
//! dies with that signal, and the console gets one line saying what happened, e.g.
//! `[ 0.412 warn] pid 1 (init): SIGSEGV SEGV_PKUERR pkey=1 at rip=0x401136 addr=0x7f0000001000`.
//! The line is formatted only when it is printed: a fault a handler catches costs no text.

use crate::arch::x86_64::trap::{vector, PageFaultError, TrapFrame};
use crate::arch::x86_64::pkru;
use crate::mm::area::{Access, SegvCode};
use crate::signal::sig;
use crate::task::{sched, try_current, with_current, Thread};

/// The trap hook for exceptions from user mode.
pub fn user_exception(frame: &mut TrapFrame, cr2: u64) {
    // The current thread, borrowed for the whole decision (nothing here switches threads).
    with_current(|me| handle(me, frame, cr2));
    // A handled signal runs now; a fatal one (or another thread's exit_group) ends the thread
    // here, on a clean stack.
    sched::kernel_exit(frame);
}

fn handle(me: &Thread, frame: &mut TrapFrame, cr2: u64) {
    match frame.vector {
        vector::PAGE_FAULT => {
            let error = PageFaultError::from_bits_retain(frame.error_code);
            let access = if error.contains(PageFaultError::INSTRUCTION) {
                Access::Execute
            } else if error.contains(PageFaultError::WRITE) {
                Access::Write
            } else {
                Access::Read
            };
            let result = me.mm.write().handle_fault(
                cr2,
                access,
                error.contains(PageFaultError::PRESENT),
                error.contains(PageFaultError::PROTECTION_KEY),
                pkru::read(),
            );
            match result {
                Ok(()) => {}
                Err(SegvCode::OutOfMemory) => die(me, frame, sig::SIGBUS, 2, "out of memory", Some(cr2), None),
                Err(code) => {
                    let (si_code, what, key) = match code {
                        SegvCode::MapErr => (1, "SEGV_MAPERR", None),
                        SegvCode::AccErr => (2, "SEGV_ACCERR", None),
                        SegvCode::PkuErr(key) => (4, "SEGV_PKUERR", Some(key.index() as u32)),
                        SegvCode::OutOfMemory => unreachable!(),
                    };
                    die(me, frame, sig::SIGSEGV, si_code, what, Some(cr2), key)
                }
            }
        }
        13 => die(me, frame, sig::SIGSEGV, 0x80, "general protection fault (SI_KERNEL)", None, None),
        6 => die(me, frame, sig::SIGILL, 2, "ILL_ILLOPN invalid opcode", None, None),
        0 => die(me, frame, sig::SIGFPE, 1, "FPE_INTDIV divide error", None, None),
        16 | 19 => die(me, frame, sig::SIGFPE, 0, "floating-point exception", None, None),
        1 | 3 => die(me, frame, sig::SIGTRAP, 1, "trace/breakpoint trap", None, None),
        11 | 12 | 17 => die(me, frame, sig::SIGBUS, 2, crate::arch::x86_64::trap::vector_name(frame.vector), None, None),
        v => die(me, frame, sig::SIGSEGV, 0x80, crate::arch::x86_64::trap::vector_name(v), None, None),
    }
}

/// A fault signal: its handler runs (when the fault hook returns), or — no handler, or the
/// signal blocked — the process dies by it, and the console gets the report line (Linux prints
/// its `segfault at …` line only for unhandled signals, too).
fn die(me: &Thread, frame: &TrapFrame, signal: u8, si_code: i32, what: &str, addr: Option<u64>, pkey: Option<u32>) {
    let info = crate::signal::SigInfo { signo: signal, code: si_code, addr: addr.unwrap_or(0), pkey: pkey.unwrap_or(0), status: 0 };
    if !crate::signal::force_fault(me, info) {
        report(me, frame, signal, what, addr, pkey);
    }
}

/// The console line for a fault that ends the process. Out of line (and marked cold): a fault a
/// handler catches does not pay for the formatting machinery's stack frame.
#[cold]
#[inline(never)]
fn report(me: &Thread, frame: &TrapFrame, signal: u8, what: &str, addr: Option<u64>, pkey: Option<u32>) {
    let process = &me.process;
    crate::log_warn_ratelimited!(
        "pid {} ({}): {} {}{} at rip={:#x}{}",
        process.pid,
        process.name.lock(),
        sig::name(signal),
        what,
        Field(" pkey=", pkey.map(u64::from), false),
        frame.rip,
        Field(" addr=", addr, true)
    );
}

/// ` name=value` in the report line when there is a value, nothing otherwise.
struct Field(&'static str, Option<u64>, bool);

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.1, self.2) {
            (None, _) => Ok(()),
            (Some(v), true) => write!(f, "{}{v:#x}", self.0),
            (Some(v), false) => write!(f, "{}{v}", self.0),
        }
    }
}

/// The trap hook for a kernel-mode page fault on a user address: resolve it like a user
/// fault (demand paging) if the current thread's area allows the access; never for a
/// protection-key fault (that one must become `EFAULT`).
pub fn kernel_fault_on_user_address(addr: u64, error: PageFaultError) -> bool {
    if error.contains(PageFaultError::PROTECTION_KEY) {
        return false;
    }
    let Some(thread) = try_current() else { return false };
    // The lock may be held by another thread of this address space on another CPU (a fork,
    // an mmap): wait for it, as Linux's `do_user_addr_fault()` does for a fault in a user copy
    // (`mmap_read_trylock()`, then `mmap_read_lock()` when the faulting instruction has an
    // exception-table entry). That this thread itself does not hold it is the lock order's
    // rule: nothing holding `Mm` touches user memory (docs/ARCHITECTURE.md, "Locks").
    let mut mm = thread.mm.write();
    let access = if error.contains(PageFaultError::WRITE) { Access::Write } else { Access::Read };
    mm.handle_fault(addr, access, error.contains(PageFaultError::PRESENT), false, pkru::read()).is_ok()
}
