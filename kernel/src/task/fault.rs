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
//! There are no signal handlers yet, so every one of these takes the default action: the
//! process dies with that signal, and the console gets one line saying what happened, e.g.
//! `[ 0.412 warn] pid 1 (init): SIGSEGV SEGV_PKUERR at rip=0x401136 addr=0x7f0000001000 pkey=1`.

use crate::arch::x86_64::trap::{vector, PageFaultError, TrapFrame};
use crate::arch::x86_64::pkru;
use crate::mm::area::{Access, SegvCode};
use crate::task::{current, sched, ExitStatus};

/// Signal numbers (x86-64 Linux).
pub mod sig {
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGBUS: u8 = 7;
    pub const SIGFPE: u8 = 8;
    pub const SIGKILL: u8 = 9;
    pub const SIGSEGV: u8 = 11;
    pub const SIGPIPE: u8 = 13;

    /// The name of a signal.
    pub fn name(sig: u8) -> &'static str {
        match sig {
            SIGILL => "SIGILL",
            SIGTRAP => "SIGTRAP",
            SIGBUS => "SIGBUS",
            SIGFPE => "SIGFPE",
            SIGKILL => "SIGKILL",
            SIGSEGV => "SIGSEGV",
            SIGPIPE => "SIGPIPE",
            _ => "signal",
        }
    }
}

/// The trap hook for exceptions from user mode.
pub fn user_exception(frame: &mut TrapFrame, cr2: u64) {
    handle(frame, cr2);
    // A fatal signal (or another thread's exit_group) ends the thread here, on a clean stack.
    sched::leave_if_process_ended();
}

fn handle(frame: &mut TrapFrame, cr2: u64) {
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
            let thread = current();
            let result = thread.mm.write().handle_fault(
                cr2,
                access,
                error.contains(PageFaultError::PRESENT),
                error.contains(PageFaultError::PROTECTION_KEY),
                pkru::read(),
            );
            drop(thread);
            match result {
                Ok(()) => {}
                Err(SegvCode::OutOfMemory) => die(frame, sig::SIGBUS, "out of memory", Some(cr2)),
                Err(code) => {
                    let text = match code {
                        SegvCode::MapErr => alloc::format!("SEGV_MAPERR"),
                        SegvCode::AccErr => alloc::format!("SEGV_ACCERR"),
                        SegvCode::PkuErr(key) => alloc::format!("SEGV_PKUERR pkey={key}"),
                        SegvCode::OutOfMemory => unreachable!(),
                    };
                    die(frame, sig::SIGSEGV, &text, Some(cr2))
                }
            }
        }
        13 => die(frame, sig::SIGSEGV, "general protection fault (SI_KERNEL)", None),
        6 => die(frame, sig::SIGILL, "ILL_ILLOPN invalid opcode", None),
        0 => die(frame, sig::SIGFPE, "FPE_INTDIV divide error", None),
        16 | 19 => die(frame, sig::SIGFPE, "floating-point exception", None),
        1 | 3 => die(frame, sig::SIGTRAP, "trace/breakpoint trap", None),
        11 | 12 | 17 => die(frame, sig::SIGBUS, crate::arch::x86_64::trap::vector_name(frame.vector), None),
        v => die(frame, sig::SIGSEGV, crate::arch::x86_64::trap::vector_name(v), None),
    }
}

/// The default action of a fatal signal: report, and end the whole process (the faulting
/// thread leaves at the kernel exit, in `user_exception`).
fn die(frame: &TrapFrame, signal: u8, what: &str, addr: Option<u64>) {
    let process = current().process.clone();
    let addr = addr.map(|a| alloc::format!(" addr={a:#x}")).unwrap_or_default();
    crate::log_warn!("pid {} ({}): {} {} at rip={:#x}{}", process.pid, process.name.lock(), sig::name(signal), what, frame.rip, addr);
    sched::terminate(&process, ExitStatus::Signaled(signal));
}
