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
use crate::signal::sig;
use crate::task::{current, sched};

/// The trap hook for exceptions from user mode.
pub fn user_exception(frame: &mut TrapFrame, cr2: u64) {
    handle(frame, cr2);
    // A handled signal runs now; a fatal one (or another thread's exit_group) ends the thread
    // here, on a clean stack.
    sched::kernel_exit(frame);
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
                Err(SegvCode::OutOfMemory) => die(frame, sig::SIGBUS, 2, "out of memory", Some(cr2), 0),
                Err(code) => {
                    let (si_code, text, key) = match code {
                        SegvCode::MapErr => (1, alloc::format!("SEGV_MAPERR"), 0),
                        SegvCode::AccErr => (2, alloc::format!("SEGV_ACCERR"), 0),
                        SegvCode::PkuErr(key) => (4, alloc::format!("SEGV_PKUERR pkey={key}"), key.index() as u32),
                        SegvCode::OutOfMemory => unreachable!(),
                    };
                    die(frame, sig::SIGSEGV, si_code, &text, Some(cr2), key)
                }
            }
        }
        13 => die(frame, sig::SIGSEGV, 0x80, "general protection fault (SI_KERNEL)", None, 0),
        6 => die(frame, sig::SIGILL, 2, "ILL_ILLOPN invalid opcode", None, 0),
        0 => die(frame, sig::SIGFPE, 1, "FPE_INTDIV divide error", None, 0),
        16 | 19 => die(frame, sig::SIGFPE, 0, "floating-point exception", None, 0),
        1 | 3 => die(frame, sig::SIGTRAP, 1, "trace/breakpoint trap", None, 0),
        11 | 12 | 17 => die(frame, sig::SIGBUS, 2, crate::arch::x86_64::trap::vector_name(frame.vector), None, 0),
        v => die(frame, sig::SIGSEGV, 0x80, crate::arch::x86_64::trap::vector_name(v), None, 0),
    }
}

/// A fault signal: its handler runs (when the fault hook returns), or — no handler, or the
/// signal blocked — the process dies by it, and the console gets the report line (Linux prints
/// its `segfault at …` line only for unhandled signals, too).
fn die(frame: &TrapFrame, signal: u8, si_code: i32, what: &str, addr: Option<u64>, pkey: u32) {
    let info = crate::signal::SigInfo { signo: signal, code: si_code, addr: addr.unwrap_or(0), pkey };
    if crate::signal::force_fault(info) {
        return;
    }
    let process = current().process.clone();
    let addr = addr.map(|a| alloc::format!(" addr={a:#x}")).unwrap_or_default();
    crate::log_warn!("pid {} ({}): {} {} at rip={:#x}{}", process.pid, process.name.lock(), sig::name(signal), what, frame.rip, addr);
}
