//! Stopped processes: job control (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT) and ptrace
//! stops, what `wait4` reports about them, the parent's SIGCHLD, and the restart of a system
//! call a signal interrupted.
//!
//! Linux is the model (`kernel/signal.c`: `prepare_signal()`, `do_signal_stop()`,
//! `ptrace_stop()`, `do_notify_parent()`, `do_notify_parent_cldstop()`;
//! `arch/x86/kernel/signal.c`: `handle_signal()`'s and `arch_do_signal_or_restart()`'s restart
//! rules; `kernel/exit.c`: `wait_task_stopped()`, `wait_task_continued()`).
//!
//! **A stop is a block.** A thread stops only at its kernel exit, with its whole user register
//! frame in hand: it copies the frame into its [`ThreadSignals::regs`](super::ThreadSignals)
//! (where a tracer reads and edits it), then blocks until the stop ends — a SIGCONT for a group
//! stop, the tracer's `PTRACE_CONT`/`DETACH` for a trace stop — or the process is killed
//! (SIGKILL ends a stopped process: `sched::terminate` wakes every blocked thread). Then it
//! copies the frame back and carries on to user mode. So whatever the kernel exit (any system
//! call, an interrupt, a fault), the stopped thread's registers are reachable without looking at
//! its kernel stack. A thread sleeping in a system call when its process stops is woken: the
//! call returns one of the `ERESTART*` codes, the thread stops at the exit, and once continued
//! the call is restarted as if nothing happened ([`restart_without_handler`]).
//!
//! pikku keeps the stop and trace state per *process* (a trace stop names the thread that
//! stopped); a ptrace tracee is addressed by its tid, which for a single-threaded process is
//! the pid — what the selftests and debuggers' first steps use.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use pkeys::Errno;
use crate::sync::Mutex;

use super::{sig, SigInfo, SIG_DFL, SIG_IGN};
use crate::arch::x86_64::trap::TrapFrame;
use crate::task::{self, sched, ExitStatus, Process, Thread};

/// `SIGCHLD`, `SIGCONT` and the stop signals (x86-64 numbers).
pub const SIGCHLD: u8 = 17;
pub const SIGCONT: u8 = 18;
pub const SIGTSTP: u8 = 20;
pub const SIGTTIN: u8 = 21;
pub const SIGTTOU: u8 = 22;

/// `SA_NOCLDSTOP`: no SIGCHLD when a child stops or continues.
const SA_NOCLDSTOP: u64 = 1;

/// `si_code` values of SIGCHLD (`include/uapi/asm-generic/siginfo.h`).
pub mod cld {
    pub const EXITED: i32 = 1;
    pub const KILLED: i32 = 2;
    pub const TRAPPED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const CONTINUED: i32 = 6;
}

/// Is `sig` one of the four stop signals? Linux: `sig_kernel_stop()`.
pub fn is_stop_signal(sig: u8) -> bool {
    matches!(sig, sig::SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU)
}

/// What `wait4` may still report about a child that has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReport {
    /// A group stop by this signal (`WUNTRACED`; status `sig << 8 | 0x7f`).
    Stopped(u8),
    /// Continued by SIGCONT (`WCONTINUED`; status `0xffff`).
    Continued,
}

/// A thread stopped for its tracer. Linux: `TASK_TRACED` with `exit_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceStop {
    /// The thread that stopped.
    pub tid: u32,
    /// The signal it stopped with (what the tracer's `wait4` reports).
    pub sig: u8,
    /// Has the tracer's `wait4` reported it yet?
    pub reported: bool,
    /// Set by the tracer's `PTRACE_CONT`/`PTRACE_DETACH`: the signal to deliver instead (0: none).
    pub resume: Option<u8>,
}

/// The stop and trace state of one process, behind one lock.
#[derive(Debug, Default)]
pub struct JobState {
    /// A group stop is in effect, by this signal (Linux: `SIGNAL_STOP_STOPPED`).
    pub group_stop: Option<u8>,
    /// What the parent's `wait4` has yet to report (Linux: `SIGNAL_STOP_*`/`CLD_*` flags).
    pub report: Option<WaitReport>,
    /// The tracer's pid (Linux: `task->ptrace`, `task->parent`).
    pub tracer: Option<u32>,
    /// A trace stop in effect.
    pub trace_stop: Option<TraceStop>,
}

/// A process's stop and trace state.
///
/// Locking: `state` is a `Mutex` of its own, taken after `Process.handlers` and released before
/// a signal is queued or a thread is woken (its place in the lock order: after
/// `Process.handlers`, before `ThreadSignals.pending`). `active` and `dumpable` are atomics.
#[derive(Debug)]
pub struct JobControl {
    pub state: Mutex<JobState>,
    /// `group_stop.is_some() || tracer.is_some()`, readable without the lock on every kernel
    /// exit. Atomic: written under `state`.
    active: AtomicBool,
    /// May a tracer of the same uid attach? (Linux keeps it in `mm->flags`: cleared when the
    /// process changes its ids — `commit_creds()` — inherited by fork, set again by `execve`.)
    pub dumpable: AtomicBool,
}

impl Default for JobControl {
    fn default() -> Self {
        JobControl { state: Mutex::new(JobState::default()), active: AtomicBool::new(false), dumpable: AtomicBool::new(true) }
    }
}

impl JobControl {
    /// A fork child's: not stopped, not traced, the parent's `dumpable`.
    pub fn for_child(&self) -> JobControl {
        let j = JobControl::default();
        j.dumpable.store(self.dumpable.load(Ordering::Relaxed), Ordering::Relaxed);
        j
    }

    /// Runs `f` on the state under its lock, and keeps `active` in step.
    pub fn with<R>(&self, f: impl FnOnce(&mut JobState) -> R) -> R {
        let mut s = self.state.lock();
        let r = f(&mut s);
        self.active.store(s.group_stop.is_some() || s.tracer.is_some(), Ordering::Relaxed);
        r
    }

    /// Is the process stopped or traced? (One atomic load.)
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// The tracer's pid, if traced. Inline, the lock out of line: every signal delivery asks,
    /// and for the untraced, unstopped process (nearly every one) the answer is one load.
    #[inline]
    pub fn tracer(&self) -> Option<u32> {
        if self.active() { self.tracer_locked() } else { None }
    }

    #[inline(never)]
    fn tracer_locked(&self) -> Option<u32> {
        self.state.lock().tracer
    }

    /// Is a group stop in effect? (A sleeping call gives up so that its thread can stop.)
    /// Inline with the lock out of line, as [`JobControl::tracer`].
    #[inline]
    pub fn group_stopped(&self) -> bool {
        self.active() && self.group_stopped_locked()
    }

    #[inline(never)]
    fn group_stopped_locked(&self) -> bool {
        self.state.lock().group_stop.is_some()
    }
}

/// The work a signal does when it is *sent*, before it is queued. Linux: `prepare_signal()`:
/// SIGCONT ends a group stop at once (and the stop signals still pending are dropped); a stop
/// signal drops a pending SIGCONT.
pub fn prepare_signal(process: &Arc<Process>, signo: u8) {
    if signo == SIGCONT {
        discard_pending(process, stop_mask());
        let continued = process.jobctl.with(|s| {
            let was = s.group_stop.take().is_some();
            if was {
                s.report = Some(WaitReport::Continued);
            }
            was
        });
        if continued {
            notify_parent(process, cld::CONTINUED, SIGCONT as i32);
            sched::wake_process(process.pid);
        }
    } else if is_stop_signal(signo) {
        discard_pending(process, super::bit(SIGCONT));
    }
}

fn stop_mask() -> u64 {
    [sig::SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU].iter().fold(0, |m, &s| m | super::bit(s))
}

/// Drops the pending signals in `mask` from every thread of `process`.
fn discard_pending(process: &Process, mask: u64) {
    let ids = process.thread_ids.lock().clone();
    for thread in ids.into_iter().filter_map(task::find_thread) {
        thread.signals.discard(mask);
    }
}

/// SIGCHLD to the parent of `child`, saying what happened (`code`, `status`), and a wake-up for
/// the parent's (and the tracer's) threads waiting in `wait4`. No signal for a stop or continue
/// if the parent's handler has `SA_NOCLDSTOP`. Linux: `do_notify_parent()`,
/// `do_notify_parent_cldstop()`.
pub fn notify_parent(child: &Process, code: i32, status: i32) {
    let tracer = child.jobctl.tracer();
    let to = if code == cld::TRAPPED { tracer } else { Some(child.parent.load(Ordering::Relaxed)) };
    let Some(parent) = to.and_then(task::process::find) else { return };
    let action = parent.handlers.0.lock()[SIGCHLD as usize - 1];
    let quiet = matches!(code, cld::STOPPED | cld::CONTINUED) && action.flags & SA_NOCLDSTOP != 0;
    if !quiet && action.handler != SIG_DFL && action.handler != SIG_IGN {
        super::send_to_process(&parent, SigInfo { status, ..SigInfo::from_process(SIGCHLD, code, child) });
    }
    sched::wake_child_waiters(&parent);
    if let Some(tracer) = tracer.filter(|&t| t != parent.pid).and_then(task::process::find) {
        sched::wake_child_waiters(&tracer);
    }
}

/// The SIGCHLD of a process that ended (called once, when it ends): `CLD_EXITED` with the
/// exit code or `CLD_KILLED` with the signal (pikku writes no core dumps, so never
/// `CLD_DUMPED`, as Linux with `RLIMIT_CORE` 0). A process that traced others lets them go
/// (Linux: `exit_ptrace()`).
pub fn notify_exit(process: &Arc<Process>, status: ExitStatus) {
    let (code, value) = match status {
        ExitStatus::Exited(c) => (cld::EXITED, c as i32),
        ExitStatus::Signaled(s) => (cld::KILLED, s as i32),
    };
    notify_parent(process, code, value);
    for tracee in task::process::all().into_iter().filter(|p| p.jobctl.tracer() == Some(process.pid)) {
        detach(&tracee, 0);
    }
}

/// Ends tracing of `tracee` and lets a thread in a trace stop go on with signal `sig` (0: none).
/// Linux: `ptrace_detach()` → `__ptrace_detach()`.
pub fn detach(tracee: &Arc<Process>, sig: u8) {
    tracee.jobctl.with(|s| {
        s.tracer = None;
        if let Some(stop) = s.trace_stop.as_mut() {
            stop.resume = Some(sig);
        }
    });
    sched::wake_process(tracee.pid);
}

/// The status word `wait4` reports for `child` (not ended) to `waiter`, if there is something
/// to report with these options — and consumes the report. Linux: `wait_task_stopped()` (a
/// tracer sees trace stops whatever the options; the parent sees a group stop with
/// `WUNTRACED`) and `wait_task_continued()` (`WCONTINUED`).
pub fn wait_report(child: &Process, waiter: u32, options: u64) -> Option<u32> {
    const WUNTRACED: u64 = 2;
    const WCONTINUED: u64 = 8;
    const WNOWAIT: u64 = 0x0100_0000;
    if !child.jobctl.active() && child.jobctl.state.lock().report.is_none() {
        return None;
    }
    let consume = options & WNOWAIT == 0;
    let mut s = child.jobctl.state.lock();
    if s.tracer == Some(waiter) {
        if let Some(stop) = s.trace_stop.as_mut().filter(|t| !t.reported && t.resume.is_none()) {
            stop.reported |= consume;
            return Some(((stop.sig as u32) << 8) | 0x7f);
        }
    }
    if child.parent.load(Ordering::Relaxed) != waiter {
        return None;
    }
    match s.report {
        Some(WaitReport::Stopped(sig)) if options & WUNTRACED != 0 => {
            if consume {
                s.report = None;
            }
            Some(((sig as u32) << 8) | 0x7f)
        }
        Some(WaitReport::Continued) if options & WCONTINUED != 0 => {
            if consume {
                s.report = None;
            }
            Some(0xffff)
        }
        _ => None,
    }
}

/// The current thread, at its kernel exit, dequeued stop signal `signo` with its default
/// action: the whole process stops (Linux: `do_signal_stop()`), the parent hears of it, every
/// other thread is woken to stop at its own kernel exit, and this one stops here.
pub fn group_stop(thread: &Arc<Thread>, signo: u8, frame: &mut TrapFrame) {
    let process = &thread.process;
    stash_regs(thread, frame);
    let started = process.jobctl.with(|s| {
        if s.group_stop.is_some() {
            return false;
        }
        s.group_stop = Some(signo);
        s.report = Some(WaitReport::Stopped(signo));
        true
    });
    if started {
        notify_parent(process, cld::STOPPED, signo as i32);
        sched::wake_process(process.pid);
    }
    park(thread, frame, |s| s.group_stop.is_some());
}

/// A thread at its kernel exit whose process is in a group stop stops too (Linux: the
/// `JOBCTL_STOP_PENDING` a group stop sets on every thread).
pub fn stop_if_group_stopped(thread: &Arc<Thread>, frame: &mut TrapFrame) {
    if thread.process.jobctl.group_stopped() {
        stash_regs(thread, frame);
        park(thread, frame, |s| s.group_stop.is_some());
    }
}

/// The current thread, traced, dequeued signal `signo`: it stops for its tracer (a
/// signal-delivery stop) and returns the signal the tracer resumed it with (0: none) — or
/// `signo` itself if the tracer let go meanwhile. Linux: `ptrace_signal()` → `ptrace_stop()`.
pub fn trace_stop(thread: &Arc<Thread>, signo: u8, frame: &mut TrapFrame) -> u8 {
    let process = &thread.process;
    stash_regs(thread, frame);
    // Checked and set under one lock: a tracer detaching at the same time either finds the
    // stop (and resumes it) or is already gone (and there is no stop).
    let stopped = process.jobctl.with(|s| {
        if s.tracer.is_none() {
            return false;
        }
        s.trace_stop = Some(TraceStop { tid: thread.tid, sig: signo, reported: false, resume: None });
        true
    });
    if !stopped {
        thread.signals.regs.lock().take();
        return signo;
    }
    notify_parent(process, cld::TRAPPED, signo as i32);
    park(thread, frame, |s| s.trace_stop.is_some_and(|t| t.resume.is_none()));
    process.jobctl.with(|s| s.trace_stop.take().and_then(|t| t.resume).unwrap_or(0))
}

/// Puts the stopping thread's register frame where a tracer can reach it — before the stop is
/// published, so that a tracer that sees the stop finds the registers.
fn stash_regs(thread: &Thread, frame: &TrapFrame) {
    *thread.signals.regs.lock() = Some(frame.clone());
}

/// Blocks the current thread while `stopped` holds for its process's state (and the process
/// lives), then takes back its register frame (see [`stash_regs`]), as a tracer left it.
///
/// The sleep announces itself before the state is looked at (`sched::prepare_to_wait`), so a
/// SIGCONT on another CPU between the look and the sleep is not lost. A tracer touches the
/// thread's saved FPU state and PKRU only once the thread is off its CPU (they are saved by
/// the switch): each ptrace request waits for that first (`sched::wait_inactive`, Linux's
/// `ptrace_check_attach()` → `wait_task_inactive()`).
fn park(thread: &Arc<Thread>, frame: &mut TrapFrame, stopped: impl Fn(&JobState) -> bool) {
    loop {
        sched::prepare_to_wait();
        if sched::killed() || !stopped(&thread.process.jobctl.state.lock()) {
            sched::finish_wait();
            break;
        }
        sched::block_current();
    }
    if let Some(regs) = thread.signals.regs.lock().take() {
        *frame = regs;
    }
}

/// The `restart_syscall` number (219).
const NR_RESTART_SYSCALL: u64 = 219;
/// The length of the SYSCALL instruction (0f 05): a restart backs RIP up over it.
const SYSCALL_INSN_LEN: u64 = 2;

/// The `ERESTART*` code a system-call frame returns, if any.
fn restart_code(frame: &TrapFrame) -> Option<Errno> {
    // Every return to user mode passes here: one range check keeps the common case (no
    // `ERESTART*` code, -512 to -516) to a few instructions.
    if !may_be_restart_code(frame.rax) || frame.orig_rax() == u64::MAX {
        return None;
    }
    match Errno::from_syscall_return(frame.rax) {
        Err(e @ (Errno::ERESTARTSYS | Errno::ERESTARTNOHAND | Errno::ERESTART_RESTARTBLOCK)) => Some(e),
        _ => None,
    }
}

/// Might `rax` be one of the kernel-internal `ERESTART*` codes (-512 to -516), which must never
/// reach user mode as they are? One range check, made on the slow exit only (the fast path
/// needs none: a call returns such a code only after `signal_pending()` set the work word).
#[inline]
fn may_be_restart_code(rax: u64) -> bool {
    (512..=516).contains(&(rax as i64).wrapping_neg())
}

/// A handler is about to run on a frame whose system call was interrupted: `EINTR`, or — for
/// `ERESTARTSYS` under `SA_RESTART` — the call again after the handler. Linux: `handle_signal()`.
pub fn restart_before_handler(frame: &mut TrapFrame, sa_restart: bool) {
    match restart_code(frame) {
        Some(Errno::ERESTARTSYS) if sa_restart => {
            frame.rax = frame.orig_rax();
            frame.rip = frame.rip.wrapping_sub(SYSCALL_INSN_LEN);
        }
        Some(_) => frame.rax = Errno::EINTR.to_syscall_return(),
        None => {}
    }
}

/// No handler ran (the signal stopped the process, was ignored, or went to a tracer that
/// dropped it): the interrupted call starts again — itself, or `restart_syscall` for one that
/// left a restart block. Linux: `arch_do_signal_or_restart()`.
#[inline]
pub fn restart_without_handler(frame: &mut TrapFrame) {
    match restart_code(frame) {
        Some(Errno::ERESTART_RESTARTBLOCK) => {
            frame.rax = NR_RESTART_SYSCALL;
            frame.rip = frame.rip.wrapping_sub(SYSCALL_INSN_LEN);
        }
        Some(_) => {
            frame.rax = frame.orig_rax();
            frame.rip = frame.rip.wrapping_sub(SYSCALL_INSN_LEN);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::syscall::SYSCALL_VECTOR;
    use ktest_macros::ktest;

    /// A frame as the SYSCALL entry leaves it after call `nr` returned `result`.
    fn after_syscall(nr: u64, result: Errno) -> TrapFrame {
        TrapFrame {
            rax: result.to_syscall_return(), rbx: 0, rcx: 0x40_1002, rdx: 0, rsi: 0, rdi: 0, rbp: 0, r8: 0, r9: 0,
            r10: 0, r11: 0x202, r12: 0, r13: 0, r14: 0, r15: 0, vector: SYSCALL_VECTOR, error_code: nr,
            rip: 0x40_1002, cs: 0x33, rflags: 0x202, rsp: 0x7fff_0000, ss: 0x2b,
        }
    }

    #[ktest]
    fn a_handler_turns_restarts_into_eintr_unless_sa_restart_allows_one() {
        let mut f = after_syscall(0, Errno::ERESTARTSYS);
        restart_before_handler(&mut f, false);
        assert_eq!((f.rax, f.rip), (Errno::EINTR.to_syscall_return(), 0x40_1002), "ERESTARTSYS without SA_RESTART");
        let mut f = after_syscall(0, Errno::ERESTARTSYS);
        restart_before_handler(&mut f, true);
        assert_eq!((f.rax, f.rip), (0, 0x40_1000), "ERESTARTSYS with SA_RESTART: read (0) again");
        for code in [Errno::ERESTARTNOHAND, Errno::ERESTART_RESTARTBLOCK] {
            let mut f = after_syscall(35, code);
            restart_before_handler(&mut f, true);
            assert_eq!((f.rax, f.rip), (Errno::EINTR.to_syscall_return(), 0x40_1002), "{code:?} even with SA_RESTART");
        }
    }

    #[ktest]
    fn without_a_handler_every_restart_code_restarts() {
        for code in [Errno::ERESTARTSYS, Errno::ERESTARTNOHAND] {
            let mut f = after_syscall(34, code);
            restart_without_handler(&mut f);
            assert_eq!((f.rax, f.rip), (34, 0x40_1000), "{code:?}: the same call again");
        }
        let mut f = after_syscall(35, Errno::ERESTART_RESTARTBLOCK);
        restart_without_handler(&mut f);
        assert_eq!((f.rax, f.rip), (NR_RESTART_SYSCALL, 0x40_1000), "through restart_syscall");
    }

    #[ktest]
    fn only_a_system_call_frame_is_ever_restarted() {
        // An interrupt that hit user code whose rax happens to hold -512: not a restart.
        let mut f = after_syscall(0, Errno::ERESTARTSYS);
        f.vector = 32;
        f.error_code = 0;
        restart_without_handler(&mut f);
        assert_eq!((f.rax, f.rip), (Errno::ERESTARTSYS.to_syscall_return(), 0x40_1002));
        // After rt_sigreturn (orig_rax -1) a restored -512 is a value, too.
        let mut f = after_syscall(15, Errno::ERESTARTSYS);
        f.set_orig_rax(u64::MAX);
        restart_before_handler(&mut f, true);
        restart_without_handler(&mut f);
        assert_eq!((f.rax, f.rip), (Errno::ERESTARTSYS.to_syscall_return(), 0x40_1002));
        // Ordinary results and other errors are left alone.
        let mut f = after_syscall(0, Errno::EAGAIN);
        restart_without_handler(&mut f);
        assert_eq!(f.rax, Errno::EAGAIN.to_syscall_return());
    }
}
