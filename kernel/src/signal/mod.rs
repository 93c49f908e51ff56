//! Signals: handlers, the x86-64 rt signal frame, delivery and `rt_sigreturn`; stops and the
//! restart of interrupted calls are in [`jobctl`].
//!
//! Linux is the model (`kernel/signal.c`, `arch/x86/kernel/signal.c`, `signal_64.c`,
//! `fpu/signal.c`). A signal is made *pending* on a thread (by `kill`/`tgkill`/`tkill`, or by a
//! fault); at every return to user mode ([`deliver_pending`], next to the scheduler's exit check)
//! the lowest pending signal that is not blocked is acted on: ignored, its default action
//! (usually ending the process), or its handler run on a frame built on the user stack:
//!
//! ```text
//!   higher   [red zone, 128 bytes, skipped]
//!            fpstate: the XSAVE area (x87, SSE, AVX and PKRU), `_fpx_sw_bytes` in its
//!                     reserved bytes (FP_XSTATE_MAGIC1 at 464), FP_XSTATE_MAGIC2 after it
//!            siginfo  (128 bytes; si_addr at 16, si_pkey at 0x20)
//!            ucontext (uc_flags, uc_link, uc_stack, uc_mcontext = sigcontext, uc_sigmask)
//!   rsp  →   return address = sa_restorer (which calls rt_sigreturn)
//! ```
//!
//! **PKRU around delivery, as Linux 6.12**: the frame is written with PKRU = 0 (all keys open,
//! `sig_prepare_pkru()`), so a stack tagged with a key can still take the frame; the frame's
//! XSAVE area holds the PKRU the interrupted code had (XSTATE_BV bit 9 forced on,
//! `update_pkru_in_sigframe()`); the handler runs with the default PKRU 0x55555554;
//! `rt_sigreturn` XRSTORs the frame — PKRU included — so a handler that edits the saved PKRU
//! changes the interrupted code's PKRU.

pub mod frame;
pub mod jobctl;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use pkeys::Errno;
use crate::sync::Mutex;

use crate::arch::x86_64::trap::TrapFrame;
use crate::task::{self, sched, ExitStatus};
pub use uapi::signal::AltStack;

/// `SIG_DFL`, `SIG_IGN`. (x86-64 passes `siginfo` and `ucontext` to every handler, so
/// `SA_SIGINFO` changes nothing in the kernel.)
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub use sig::{SIGKILL, SIGSEGV, SIGSTOP};

/// Signal numbers (x86-64 Linux), in one place for the whole kernel.
pub mod sig {
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGBUS: u8 = 7;
    pub const SIGFPE: u8 = 8;
    pub const SIGKILL: u8 = 9;
    pub const SIGSEGV: u8 = 11;
    pub const SIGPIPE: u8 = 13;
    pub const SIGSTOP: u8 = 19;

    /// The name of a signal, for reports.
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

/// `struct sigaction` as the kernel ABI lays it out (x86-64): handler, flags, restorer, mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// The handlers of a process (shared by its threads; copied by fork; reset by exec).
#[derive(Debug)]
pub struct Handlers(pub Mutex<[SigAction; 64]>);

impl Default for Handlers {
    fn default() -> Self {
        Handlers(Mutex::new([SigAction::default(); 64]))
    }
}

impl Handlers {
    /// A copy (fork).
    pub fn duplicate(&self) -> Handlers {
        Handlers(Mutex::new(*self.0.lock()))
    }
}

/// What a handler learns about its signal (`siginfo_t`, 128 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: u8,
    pub code: i32,
    /// `si_addr` (faults) or, for `kill`, `si_pid` in the low half and `si_uid` in the high.
    pub addr: u64,
    /// `si_pkey` (for `SEGV_PKUERR`).
    pub pkey: u32,
    /// `si_status` (SIGCHLD: the exit code or the signal).
    pub status: i32,
}

impl SigInfo {
    /// A signal sent by `sender` (a process, or the tracer that changed a signal): `si_code`
    /// `code`, `si_pid` and `si_uid` the sender's (Linux: `SI_USER`/`SI_TKILL`/`CLD_*` infos).
    pub fn from_process(signo: u8, code: i32, sender: &task::Process) -> SigInfo {
        let addr = sender.pid as u64 | ((sender.uid.load(Ordering::Relaxed) as u64) << 32);
        SigInfo { signo, code, addr, pkey: 0, status: 0 }
    }

    /// The 128 user-visible bytes (`siginfo_t`), as words: `si_signo` (an `int`; `si_errno`
    /// 0 above it), `si_code`, then the union — `si_addr` (or `si_pid` | `si_uid`) at byte 16,
    /// `si_status` at 24, `si_pkey` at 32 — and zeros.
    pub fn to_words(self) -> uapi::sigframe::SigInfoWords {
        let mut w = [0u64; 16];
        w[0] = u64::from(self.signo);
        w[1] = u64::from(self.code as u32);
        w[2] = self.addr;
        w[3] = u64::from(self.status as u32);
        w[4] = u64::from(self.pkey);
        w
    }
}

/// Per-thread signal state: pending signals with their info, the alternate stack.
#[derive(Debug, Default)]
pub struct ThreadSignals {
    /// Its `Mutex`, taken after the process's `handlers` are released: any thread pushes
    /// (`kill`, `tgkill`), only the thread itself takes signals out (delivery).
    pub pending: Mutex<alloc::vec::Vec<SigInfo>>,
    /// How many signals are pending: the kernel exit reads this one word and skips the rest
    /// when it is 0 (the common case). Atomic: incremented after the push, decremented under
    /// `pending`; a reader that sees non-zero re-checks under the lock.
    pub count: core::sync::atomic::AtomicUsize,
    /// The alternate stack, when one is set. Its `Mutex`, though only the thread itself touches
    /// it (`sigaltstack`, frame setup, `rt_sigreturn`).
    pub altstack: Mutex<Option<AltStack>>,
    /// The user registers of the thread while it is stopped (job control or ptrace), where a
    /// tracer reads and edits them; `None` while it runs. Its `Mutex`, a leaf: the stopping
    /// thread fills it before it blocks and takes it back when it resumes; a tracer touches it
    /// only while the thread is in a trace stop (see [`jobctl`]).
    pub regs: Mutex<Option<TrapFrame>>,
    /// What `restart_syscall` resumes after a sleep a stop interrupted (Linux: the thread's
    /// `restart_block`). Its `Mutex`, a leaf; only the thread itself touches it.
    pub restart: Mutex<Option<Restart>>,
}

/// A sleep to resume through `restart_syscall` (Linux: `struct restart_block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// `nanosleep`/`clock_nanosleep`: until `deadline_us` (micros since boot); the time left is
    /// written to `rem` (if not 0) when interrupted again.
    Sleep { deadline_us: u64, rem: u64 },
    /// `FUTEX_WAIT` (or `_BITSET`) with a timeout: the same word, value, deadline and bitset.
    Futex { uaddr: u64, val: u32, deadline_us: u64, bitset: u32 },
}

impl ThreadSignals {
    /// The index of the lowest pending signal that `blocked` does not block.
    pub fn first_deliverable(pending: &[SigInfo], blocked: u64) -> Option<usize> {
        pending.iter().enumerate().filter(|(_, s)| bit(s.signo) & blocked == 0).min_by_key(|(_, s)| s.signo).map(|(i, _)| i)
    }

    /// Takes the lowest pending signal that `blocked` does not block out of the queue (of
    /// several real-time ones with that number, the first queued). Linux: `dequeue_signal()`.
    pub fn dequeue(&self, blocked: u64) -> Option<SigInfo> {
        let mut pending = self.pending.lock();
        let i = Self::first_deliverable(&pending, blocked)?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        // The last one (the usual case: the only one) leaves without shifting the others down.
        if i + 1 == pending.len() { pending.pop() } else { Some(pending.remove(i)) }
    }

    /// Is a signal pending that `blocked` does not block? (One atomic load when none is.)
    pub fn any_deliverable(&self, blocked: u64) -> bool {
        self.count.load(Ordering::Relaxed) != 0 && Self::first_deliverable(&self.pending.lock(), blocked).is_some()
    }

    /// Drops the pending signals in `mask` (SIGCONT drops pending stop signals, and the other
    /// way round). Linux: `flush_sigqueue_mask()`.
    pub fn discard(&self, mask: u64) {
        let mut pending = self.pending.lock();
        let before = pending.len();
        pending.retain(|s| bit(s.signo) & mask == 0);
        self.count.fetch_sub(before - pending.len(), Ordering::Relaxed);
    }

    /// Is `sp` on this thread's alternate stack? Linux: `on_sig_stack()`.
    pub fn on_altstack(&self, sp: u64) -> bool {
        self.altstack.lock().is_some_and(|s| s.contains(sp))
    }

    /// Makes `info` pending. A standard signal (1–31) that is pending already is not queued
    /// again — one pending bit, as Linux's `legacy_queue()`; a real-time one (32–64) queues,
    /// but no further than `RLIMIT_SIGPENDING` (init's default: `threads-max` / 2) while it is
    /// pending already (Linux then keeps only the pending bit, `__send_signal_locked()`). So
    /// a program cannot grow this queue without bound by sending itself blocked signals.
    /// (Outside this module, signals are queued with [`queue`], which also sets the thread's
    /// work word.)
    fn push(&self, info: SigInfo) {
        const SIGRTMIN: u8 = 32;
        let mut pending = self.pending.lock();
        let already = pending.iter().any(|s| s.signo == info.signo);
        if already && (info.signo < SIGRTMIN || pending.len() >= crate::task::limits::max_tasks() / 2) {
            return;
        }
        pending.push(info);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Makes `info` pending on `thread`, then announces it in the thread's work word, so that its
/// next return to user mode looks (Linux: `signal_wake_up()` → `set_tsk_thread_flag(t,
/// TIF_SIGPENDING)`). The word is set after the signal is queued and before anyone wakes the
/// thread (see [`task::Thread::add_work`]).
pub fn queue(thread: &task::Thread, info: SigInfo) {
    thread.signals.push(info);
    thread.add_work(task::work::SIGNAL);
}

/// What a signal does by default: `None` = ignored, or (the stop signals) stops the process —
/// see [`jobctl::is_stop_signal`].
pub fn default_action(sig: u8) -> Option<ExitStatus> {
    match sig {
        // SIGCHLD, SIGCONT, SIGURG, SIGWINCH are ignored; SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU stop.
        17 | 18 | 23 | 28 | 19 | 20 | 21 | 22 => None,
        _ => Some(ExitStatus::Signaled(sig)),
    }
}

/// Does `sig`, with its default action, do nothing at all (not even stop)? Linux:
/// `sig_kernel_ignore()`.
fn ignored_by_default(sig: u8) -> bool {
    default_action(sig).is_none() && !jobctl::is_stop_signal(sig)
}

fn bit(sig: u8) -> u64 {
    1u64 << (sig - 1)
}

/// Makes `info` pending on `thread` (a signal sent by someone: `kill`, `tgkill`, or the
/// kernel's `SIGPIPE`). Ignored signals are dropped at once, and so is every signal with its
/// default action sent to init (Linux `sig_task_ignored()`: init is `SIGNAL_UNKILLABLE`, so
/// from its own namespace — pikku has only one — `SIGKILL` and `SIGSTOP` do nothing to it,
/// and other signals arrive only if it has a handler). A fatal default action ends the
/// process at once unless the thread blocks the signal (`SIGKILL` cannot be blocked); then
/// it waits, pending, like any blocked signal (Linux `complete_signal()`). A thread blocked
/// in a syscall is woken so the signal is acted on at its way out (the call returns `EINTR`).
///
/// Job control and ptrace (Linux `prepare_signal()`, `sig_ignored()`, `complete_signal()`):
/// SIGCONT continues a stopped process as it is sent; a stop signal is queued and stops the
/// process when a thread takes it ([`jobctl`]); a traced process gets every signal queued —
/// its tracer decides at delivery — and is not killed at once by a fatal one (but SIGKILL).
pub fn send_to_thread(thread: &Arc<task::Thread>, info: SigInfo) {
    if !is_init(&thread.process) {
        jobctl::prepare_signal(&thread.process, info.signo);
    }
    let action = thread.process.handlers.0.lock()[info.signo as usize - 1];
    let default = action.handler == SIG_DFL || info.signo == SIGKILL;
    let traced = info.signo != SIGKILL && thread.process.jobctl.tracer().is_some();
    let ignored = action.handler == SIG_IGN || (default && (ignored_by_default(info.signo) || is_init(&thread.process)));
    if ignored && !traced {
        return;
    }
    if default && jobctl::is_stop_signal(info.signo) && thread.process.jobctl.group_stopped() {
        return; // stopped already (Linux drops it at SIGCONT; nothing can tell the difference)
    }
    let blocked = info.signo != SIGKILL && thread.blocked.load(Ordering::Relaxed) & bit(info.signo) != 0;
    // A stopped process takes a fatal signal (but SIGKILL) only once continued: no thread of
    // it "wants" the signal (Linux `wants_signal()`), so it waits, pending.
    let stopped = info.signo != SIGKILL && thread.process.jobctl.group_stopped();
    if default && !blocked && !traced && !stopped && default_action(info.signo).is_some() {
        // A fatal default action: the whole process ends (each thread at its kernel exit).
        sched::terminate(&thread.process, default_action(info.signo).unwrap_or(ExitStatus::Signaled(info.signo)));
        return;
    }
    queue(thread, info);
    // If it sleeps (or is about to), it wakes to act on the signal; if it runs, nothing happens.
    sched::wake(thread.clone(), sched::WakeReason::Woken);
}

/// Sends `sig` from the current process to `thread`, with Linux's `si_code` (`SI_USER` 0 for
/// `kill` and the kernel's `SIGPIPE`, `SI_TKILL` -6 for `tgkill`/`tkill`) and the sender's
/// pid and uid.
pub fn send_from_current(thread: &Arc<task::Thread>, sig: u8, code: i32) {
    let me = task::current();
    send_to_thread(thread, SigInfo::from_process(sig, code, &me.process));
}

/// Sends `info` to a process: to its main thread, or to any thread once that has exited
/// (Linux picks a thread that does not block the signal, `complete_signal()`).
pub fn send_to_process(target: &Arc<task::Process>, info: SigInfo) {
    let tid = {
        let ids = target.thread_ids.lock();
        if ids.contains(&target.pid) { Some(target.pid) } else { ids.first().copied() }
    };
    if let Some(thread) = tid.and_then(task::find_thread) {
        send_to_thread(&thread, info);
    }
}

/// Is `process` init, pid 1? Linux: `is_global_init()` (and the `SIGNAL_UNKILLABLE` flag it
/// gets).
fn is_init(process: &task::Process) -> bool {
    process.pid == 1
}

/// A synchronous fault signal for `thread`, the current thread (Linux: `force_sig_fault()`):
/// if the signal is blocked or ignored, or has no handler, the process dies by it (a blocked
/// fault cannot wait) and this returns `false`; otherwise the handler runs when the fault hook
/// returns, and this returns `true`.
pub fn force_fault(thread: &task::Thread, info: SigInfo) -> bool {
    let handler = thread.process.handlers.0.lock()[info.signo as usize - 1].handler;
    let blocked = thread.blocked.load(Ordering::Relaxed) & bit(info.signo) != 0;
    if handler == SIG_DFL || handler == SIG_IGN || blocked {
        sched::terminate(&thread.process, ExitStatus::Signaled(info.signo));
        return false;
    }
    queue(thread, info);
    true
}

/// Is there nothing for [`deliver_pending`] to act on — no pending signal, no job control or
/// tracing? (The common case, checked on every return to user mode.)
#[inline]
pub fn nothing_pending(thread: &task::Thread) -> bool {
    thread.signals.count.load(Ordering::Relaxed) == 0 && !thread.process.jobctl.active()
}

/// Acts on the lowest pending, unblocked signal of `thread`, the current thread (called on
/// every return to user mode, by [`sched::kernel_exit`]; two atomic loads when nothing is
/// pending and the process is neither stopped nor traced). Handlers get a frame (see [`frame::setup`]); a frame that cannot be written
/// kills the process with SIGSEGV, as Linux's `signal_setup_done()` → `force_sigsegv()`.
///
/// Stops come first: a thread whose process is stopped stops here ([`jobctl`]); signals are
/// then taken one by one until one runs a handler (or none is left); a system call that a
/// signal interrupted is restarted when no handler ran.
#[inline]
pub fn deliver_pending(thread: &Arc<task::Thread>, frame: &mut TrapFrame) {
    if !nothing_pending(thread) {
        deliver_slow(thread, frame);
    } else {
        // A call that gave up for a signal which is gone (ignored meanwhile, taken by
        // another thread) starts again.
        jobctl::restart_without_handler(frame);
    }
}

/// What taking one signal did.
enum Taken {
    /// Nothing deliverable is pending.
    Nothing,
    /// A handler will run (its frame is built).
    Handler,
    /// The signal was used up without a handler (ignored, a stop, dropped by a tracer): look
    /// for another.
    Again,
}

/// The slow part of [`deliver_pending`], out of line so that the common return to user mode
/// (nothing pending) costs only the checks there.
#[inline(never)]
fn deliver_slow(thread: &Arc<task::Thread>, frame: &mut TrapFrame) {
    loop {
        jobctl::stop_if_group_stopped(thread, frame);
        // Ended meanwhile (another thread's exit_group, a fatal signal): `kernel_exit`, which
        // called us, looks at the same state next and ends the thread.
        if sched::must_leave(thread) {
            return;
        }
        match deliver_one(thread, frame) {
            Taken::Handler => return,
            Taken::Again => continue,
            Taken::Nothing => break,
        }
    }
    jobctl::restart_without_handler(frame);
}

fn deliver_one(thread: &Arc<task::Thread>, frame: &mut TrapFrame) -> Taken {
    let blocked = thread.blocked.load(Ordering::Relaxed);
    let Some(mut info) = thread.signals.dequeue(blocked) else {
        return Taken::Nothing;
    };
    if let Some(tracer) = thread.process.jobctl.tracer().filter(|_| info.signo != SIGKILL) {
        // A signal-delivery stop: the tracer sees the signal first and says which to deliver.
        let resumed = jobctl::trace_stop(thread, info.signo, frame);
        if resumed == 0 || sched::killed() {
            return Taken::Again;
        }
        if resumed != info.signo {
            // Another signal, from the tracer (Linux `ptrace_signal()`: `SI_USER`, the
            // tracer's pid and uid).
            info = match task::process::find(tracer) {
                Some(tracer) => SigInfo::from_process(resumed, 0, &tracer),
                None => SigInfo { signo: resumed, ..SigInfo::default() },
            };
        }
        if bit(resumed) & thread.blocked.load(Ordering::Relaxed) != 0 {
            thread.signals.push(info);
            return Taken::Again;
        }
    }
    let action = {
        let mut handlers = thread.process.handlers.0.lock();
        let a = handlers[info.signo as usize - 1];
        if a.flags & SA_RESETHAND != 0 && a.handler > SIG_IGN {
            handlers[info.signo as usize - 1].handler = SIG_DFL;
        }
        a
    };
    if action.handler == SIG_IGN {
        return Taken::Again;
    }
    if action.handler == SIG_DFL {
        // Init ignores default actions even of a signal that was pending while blocked
        // (Linux `get_signal()`: `SIGNAL_UNKILLABLE`).
        if is_init(&thread.process) {
            return Taken::Again;
        }
        if info.signo == SIGSTOP {
            jobctl::group_stop(thread, info.signo, frame);
        } else if jobctl::is_stop_signal(info.signo) {
            // SIGTSTP, SIGTTIN, SIGTTOU stop a process only if its process group has a parent
            // outside it in the same session (Linux `get_signal()`: `is_current_pgrp_orphaned()`
            // drops the signal). pikku has one process group, init's, which Linux counts as
            // orphaned — a parent that is init does not count — so they are dropped.
        } else if let Some(status) = default_action(info.signo) {
            sched::terminate(&thread.process, status);
        }
        return Taken::Again;
    }
    jobctl::restart_before_handler(frame, action.flags & SA_RESTART != 0);
    match frame::setup(thread, frame, &info, &action, blocked) {
        Ok(()) => {
            let mut new_blocked = blocked | action.mask;
            if action.flags & SA_NODEFER == 0 {
                new_blocked |= bit(info.signo);
            }
            thread.blocked.store(new_blocked & !(bit(SIGKILL) | bit(SIGSTOP)), Ordering::Relaxed);
            Taken::Handler
        }
        Err(_) => {
            crate::log_warn_ratelimited!("pid {}: cannot deliver signal {} (bad frame): SIGSEGV", thread.process.pid, info.signo);
            sched::terminate(&thread.process, ExitStatus::Signaled(SIGSEGV));
            Taken::Handler
        }
    }
}

/// `rt_sigaction(sig, act, oact, sigsetsize)`. Linux: `do_sigaction()`: `EINVAL` for a bad
/// signal number or size, and for changing SIGKILL or SIGSTOP.
pub fn sys_rt_sigaction(sig: u64, act: u64, oact: u64, sigsetsize: u64) -> Result<u64, Errno> {
    let sig = sig as u32 as i32;
    if sigsetsize != 8 || !(1..=64).contains(&sig) {
        return Err(Errno::EINVAL);
    }
    let sig = sig as u8;
    if act != 0 && (sig == SIGKILL || sig == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 {
        let mut b = [0u8; 32];
        crate::mm::user::copy_from_user(&mut b, act)?;
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Some(SigAction { handler: w(0), flags: w(1), restorer: w(2), mask: w(3) & !(bit(SIGKILL) | bit(SIGSTOP)) })
    } else {
        None
    };
    let thread = task::current();
    let old = {
        let mut handlers = thread.process.handlers.0.lock();
        let old = handlers[sig as usize - 1];
        if let Some(new) = new {
            handlers[sig as usize - 1] = new;
        }
        old
    };
    if oact != 0 {
        let mut b = [0u8; 32];
        for (i, v) in [old.handler, old.flags, old.restorer, old.mask].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        crate::mm::user::copy_to_user(oact, &b)?;
    }
    Ok(0)
}

/// `sigaltstack(ss, old_ss)`. Linux: `do_sigaltstack()`: unknown flags `EINVAL`, a size below
/// `MINSIGSTKSZ` (2048) `ENOMEM`, changing it while running on it `EPERM`.
/// `stack_t.ss_flags` (`sigaltstack`, `uc_stack`): on the alternate stack; no alternate stack;
/// disarm it while a handler runs on it.
const SS_ONSTACK: i32 = 1;
const SS_DISABLE: i32 = 2;
const SS_AUTODISARM: i32 = 1 << 31;

/// Sets the calling thread's alternate signal stack from a user `stack_t` (`sp`, `flags`,
/// `size`), with Linux's checks in Linux's order (`do_sigaltstack()`): not while running on the
/// current one (judged at `user_rsp`) — EPERM; a mode other than 0, SS_ONSTACK, SS_DISABLE —
/// EINVAL; SS_DISABLE turns it off; a size below MINSIGSTKSZ (2,048) — ENOMEM. On an error
/// nothing changes. `sigaltstack` and `rt_sigreturn` (which ignores the error) share it.
#[inline(always)] // rt_sigreturn's hot path: inline, the checks fold into its own
pub fn set_altstack(thread: &task::Thread, user_rsp: u64, sp: u64, flags: i32, size: u64) -> Result<(), Errno> {
    // One lock for the look and the change.
    let mut altstack = thread.signals.altstack.lock();
    if altstack.is_some_and(|s| s.contains(user_rsp)) {
        return Err(Errno::EPERM);
    }
    let mode = flags & !SS_AUTODISARM;
    if mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0 {
        return Err(Errno::EINVAL);
    }
    *altstack = if mode == SS_DISABLE {
        None
    } else if size < 2048 {
        return Err(Errno::ENOMEM);
    } else {
        Some(AltStack { sp, size })
    };
    Ok(())
}

pub fn sys_sigaltstack(ss: u64, old: u64, user_rsp: u64) -> Result<u64, Errno> {
    // Linux's order: read the new stack (EFAULT before anything changes), act on it, and only
    // then write the old one out — so an unwritable `old` is EFAULT with the new stack set.
    let new = if ss != 0 {
        let mut b = [0u8; 24];
        crate::mm::user::copy_from_user(&mut b, ss)?;
        let sp = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let flags = i32::from_le_bytes(b[8..12].try_into().unwrap());
        let size = u64::from_le_bytes(b[16..24].try_into().unwrap());
        Some((sp, flags, size))
    } else {
        None
    };
    let thread = task::current();
    let current = *thread.signals.altstack.lock();
    let on_stack = thread.signals.on_altstack(user_rsp);
    if let Some((sp, flags, size)) = new {
        set_altstack(&thread, user_rsp, sp, flags, size)?;
    }
    if old != 0 {
        let mut b = [0u8; 24];
        let (sp, size, flags) = match current {
            Some(AltStack { sp, size }) => (sp, size, if on_stack { SS_ONSTACK } else { 0 }),
            None => (0, 0, SS_DISABLE),
        };
        b[0..8].copy_from_slice(&sp.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&size.to_le_bytes());
        crate::mm::user::copy_to_user(old, &b)?;
    }
    Ok(0)
}

/// `rt_sigreturn()`, with the caller's register frame. A frame that fails its checks ends the
/// process with SIGSEGV.
pub fn sys_rt_sigreturn(frame: &mut TrapFrame) -> u64 {
    // The current thread, borrowed while the frame is read (nothing there switches threads).
    match task::with_current(|me| frame::sigreturn(me, frame)) {
        Ok(rax) => rax,
        Err(_) => {
            let thread = task::current();
            crate::log_warn_ratelimited!("pid {}: bad rt_sigreturn frame: SIGSEGV", thread.process.pid);
            sched::terminate(&thread.process, ExitStatus::Signaled(SIGSEGV));
            0
        }
    }
}

/// `execve` resets handled signals to their default action; ignored ones stay ignored
/// (Linux `flush_signal_handlers()`).
pub fn reset_for_exec(handlers: &Handlers) {
    for a in handlers.0.lock().iter_mut() {
        if a.handler != SIG_IGN {
            *a = SigAction::default();
        }
    }
}
