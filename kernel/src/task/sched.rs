//! The scheduler: a run queue, sleeping and blocking, preemption, and the context switch.
//!
//! * **Round robin.** Ready threads wait in [`READY`]; the timer tick ([`tick`], every
//!   [`timer::HZ`]-th of a second) preempts a thread running in user mode if another is ready, and
//!   puts it at the back. The kernel itself is not preemptible: it runs with interrupts off
//!   (interrupt gates and SYSCALL's FMASK clear IF), so no lock is ever taken by an interrupt
//!   that interrupted its holder.
//! * **Blocking.** A thread that waits (futex, nanosleep) leaves the run queue; [`wake`] puts it
//!   back. Sleepers with a deadline sit in [`SLEEPERS`]; the tick wakes them when it passes.
//! * **Idle.** The boot thread doubles as the idle thread: it waits for the first program in
//!   [`wait_for`], and when nothing else is ready it halts the CPU with interrupts on until the
//!   next tick.
//! * **The switch** ([`switch_to`]): address space (CR3), kernel stack (TSS.RSP0 and the
//!   SYSCALL stack), FS base, FPU state (XSAVE/XRSTOR, PKRU masked out), and PKRU through
//!   [`super::switch_pkru`] — Linux's `__switch_to()`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use super::{current, set_current, switch_pkru, ExitStatus, Process, Thread};
use crate::arch::x86_64::{context, cpu, gdt, percpu, time, timer};

static READY: Mutex<VecDeque<Arc<Thread>>> = Mutex::new(VecDeque::new());
/// The idle thread (the boot thread): never in READY, run when nothing else is.
static IDLE: Mutex<Option<Arc<Thread>>> = Mutex::new(None);
/// Threads waiting for a deadline (micros since boot).
static SLEEPERS: Mutex<Vec<(u64, Arc<Thread>)>> = Mutex::new(Vec::new());
/// Every blocked thread (so that killing a process can wake its threads wherever they wait).
static BLOCKED: Mutex<Vec<Arc<Thread>>> = Mutex::new(Vec::new());
/// Threads that have exited, kept until we are off their kernel stacks.
static DEAD: Mutex<Vec<Arc<Thread>>> = Mutex::new(Vec::new());

/// Switches caused by the timer (a user thread preempted).
pub static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);

/// Why a blocked thread was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WakeReason {
    None = 0,
    Woken = 1,
    TimedOut = 2,
}

impl Thread {
    fn set_wake(&self, reason: WakeReason) {
        self.wake_reason.store(reason as u8, Ordering::Relaxed);
    }
    fn wake_reason(&self) -> WakeReason {
        match self.wake_reason.load(Ordering::Relaxed) {
            1 => WakeReason::Woken,
            2 => WakeReason::TimedOut,
            _ => WakeReason::None,
        }
    }
}

/// Makes `thread` ready to run.
pub fn spawn(thread: Arc<Thread>) {
    READY.lock().push_back(thread);
}

/// Is any thread ready besides the current one?
pub fn others_ready() -> bool {
    !READY.lock().is_empty()
}

/// The next runnable thread. Threads of a process that has ended still run: each leaves at
/// its next kernel exit ([`kernel_exit`]), after its kernel stack has unwound, so
/// nothing they hold (open files, references) is leaked.
fn pick_next() -> Option<Arc<Thread>> {
    READY.lock().pop_front()
}

/// Must `me` end at this kernel exit? (Its process ended, or `execve` replaced it.)
fn must_leave(me: &Thread) -> bool {
    me.process.ended.load(Ordering::Acquire) || me.leaving.load(Ordering::Relaxed)
}

/// Everything a return to user mode must do — after a syscall, an interrupt or a fault from
/// user mode, and before a new thread's first entry — with one look at the current thread: act
/// on a pending signal (or stop), then end the thread if its process has ended (another thread
/// called `exit_group`, a fatal signal arrived): it ends here, with nothing left on its kernel
/// stack. (Linux checks pending fatal signals at the same place, in `exit_to_user_mode_loop()`.)
pub fn kernel_exit(frame: &mut crate::arch::x86_64::trap::TrapFrame) {
    let me = current();
    crate::signal::deliver_pending(&me, frame);
    let leave = must_leave(&me);
    drop(me);
    if leave {
        exit_current();
    }
}

/// Must the current thread end (its process ended, or `execve` replaced it), so that a
/// blocking call should give up with `EINTR`?
pub fn killed() -> bool {
    must_leave(&current())
}

/// Does the current thread have a signal to act on, or must it stop (so a blocking call gives
/// up, with `EINTR` or one of the `ERESTART*` codes)? Linux: `signal_pending()`.
pub fn signal_pending() -> bool {
    let me = current();
    me.signals.any_deliverable(me.blocked.load(Ordering::Relaxed)) || me.process.jobctl.group_stopped()
}

/// Records the idle thread (the boot thread, once, at boot).
pub fn set_idle(thread: Arc<Thread>) {
    *IDLE.lock() = Some(thread);
}

fn is_idle(t: &Arc<Thread>) -> bool {
    IDLE.lock().as_ref().is_some_and(|idle| Arc::ptr_eq(idle, t))
}

/// The next ready thread, or the idle thread when none is.
fn next_or_idle() -> Arc<Thread> {
    pick_next().unwrap_or_else(|| IDLE.lock().clone().expect("no idle thread"))
}

/// Lets the next ready thread run; the current thread stays ready. (The idle thread is never
/// queued: it runs only when nothing else can.)
pub fn yield_now() {
    let Some(next) = pick_next() else { return };
    let prev = current();
    if !is_idle(&prev) {
        READY.lock().push_back(prev.clone());
    }
    switch_to(prev, next);
}

/// Takes the current thread off the CPU until someone calls [`wake`] (or its deadline passes,
/// if it registered one). Returns why it woke. The caller must hold no `Arc<Thread>` of its own
/// across this call: a blocked thread's stack should keep nothing alive.
pub fn block_current() -> WakeReason {
    let me = current();
    me.waiting.store(true, Ordering::Relaxed);
    BLOCKED.lock().push(me.clone());
    switch_to(me, next_or_idle());
    current().wake_reason()
}

/// Makes a blocked thread ready again (`reason` tells it why). Waking a thread that is not
/// blocked (a stale entry in some wait queue) does nothing.
pub fn wake(thread: Arc<Thread>, reason: WakeReason) {
    if !thread.waiting.swap(false, Ordering::Relaxed) {
        return;
    }
    BLOCKED.lock().retain(|t| !Arc::ptr_eq(t, &thread));
    SLEEPERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, &thread));
    thread.set_wake(reason);
    READY.lock().push_back(thread);
}

/// Registers a deadline (micros since boot) for the current thread; the tick wakes it with
/// `TimedOut` once the deadline has passed. Follow with `block_current`.
pub fn arm_deadline(deadline_us: u64) {
    let t = current();
    t.set_wake(WakeReason::None);
    SLEEPERS.lock().push((deadline_us, t));
}

/// Sleeps until `deadline_us` (micros since boot). `false` if a signal (or a stop, or the end
/// of the process) came first. Linux: `hrtimer_nanosleep()`.
pub fn sleep_until(deadline_us: u64) -> bool {
    while time::micros_since_boot() < deadline_us {
        arm_deadline(deadline_us);
        block_current();
        if killed() || signal_pending() {
            return false;
        }
    }
    true
}

/// The timer tick: wake sleepers whose deadline has passed; if user code was interrupted and
/// another thread is ready, preempt it.
pub fn tick(from_user: bool) {
    timer::tick();
    if timer::heartbeat_due() {
        crate::console::heartbeat();
    }
    let now = time::micros_since_boot();
    let due: Vec<Arc<Thread>> = {
        let mut sleepers = SLEEPERS.lock();
        let mut due = Vec::new();
        sleepers.retain(|(deadline, t)| {
            if *deadline <= now {
                due.push(t.clone());
                false
            } else {
                true
            }
        });
        due
    };
    for t in due {
        wake(t, WakeReason::TimedOut);
    }
    if from_user && others_ready() {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        yield_now();
    }
}

/// Ends the current thread and runs the next one. Never returns.
pub fn exit_current() -> ! {
    let prev = current();
    DEAD.lock().push(prev.clone());
    switch_to(prev, next_or_idle());
    unreachable!("a dead thread was resumed");
}

/// `pause()`: sleeps until a signal arrives. Returns `ERESTARTNOHAND`: `EINTR` once a handler
/// ran, and back to sleep when none did (a stop and a continue, an ignored signal), as Linux's
/// `sys_pause()`.
pub fn pause() -> pkeys::Errno {
    while !killed() && !signal_pending() {
        block_current();
    }
    pkeys::Errno::ERESTARTNOHAND
}

/// `exit(code)` of one thread (Linux: `do_exit()`): clears and wakes the `set_tid_address` /
/// `CLONE_CHILD_CLEARTID` word (that is how `pthread_join` learns of it); the last thread of a
/// process ends the process with `code`.
pub fn exit_thread(code: u8) -> ! {
    let thread = current();
    let tidptr = thread.clear_child_tid.swap(0, Ordering::Relaxed);
    if tidptr != 0 && crate::mm::user::copy_to_user(tidptr, &0u32.to_le_bytes()).is_ok() {
        super::futex::wake(&thread.mm, tidptr, 1);
    }
    thread.process.thread_ids.lock().retain(|&t| t != thread.tid);
    if thread.process.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_process(&thread.process, ExitStatus::Exited(code));
    }
    drop(thread);
    exit_current()
}

/// Ends every thread of the current process with `status` (Linux: `do_group_exit()`): the
/// other threads are taken off every queue and never run again.
pub fn exit_group(status: ExitStatus) -> ! {
    let thread = current();
    let process = thread.process.clone();
    drop(thread);
    finish_process(&process, status);
    purge_threads(process.pid, None);
    drop(process);
    exit_current()
}

/// Ends a process with `status` (a fatal signal's default action, `kill`). If it is the
/// caller's own, the caller returns normally and ends at its kernel exit.
pub fn terminate(process: &Arc<Process>, status: ExitStatus) {
    finish_process(process, status);
    purge_threads(process.pid, None);
}

/// Wakes every blocked thread of process `pid` (but `except`), so that each runs to its next
/// kernel exit and ends there ([`kernel_exit`]). Threads that are ready already will
/// do the same when they next run.
pub fn purge_threads(pid: u32, except: Option<u32>) {
    let doomed: Vec<Arc<Thread>> =
        BLOCKED.lock().iter().filter(|t| t.process.pid == pid && Some(t.tid) != except).cloned().collect();
    super::futex::forget_process(pid, except);
    for t in doomed {
        wake(t, WakeReason::Woken);
    }
}

/// Wakes every blocked thread of process `pid` (a stop or a continue: each re-checks why it
/// sleeps; a stopped one stays stopped unless its stop ended).
pub fn wake_process(pid: u32) {
    let threads: Vec<Arc<Thread>> = BLOCKED.lock().iter().filter(|t| t.process.pid == pid).cloned().collect();
    for t in threads {
        wake(t, WakeReason::Woken);
    }
}

/// Records how a process ended (once), closes its files, hands its children to init and wakes
/// a parent waiting in `wait4`. Linux: `do_exit()` → `exit_notify()` → `forget_original_parent()`.
fn finish_process(process: &Arc<Process>, status: ExitStatus) {
    {
        let mut exit = process.exit.lock();
        if exit.is_some() {
            return;
        }
        *exit = Some(status);
        process.ended.store(true, Ordering::Release);
    }
    // Close the files now; the address space goes when the last thread is reaped. Its own
    // threads waiting in `wait4` are forgotten: each holds its process, so an entry left here
    // would keep the process (and the thread's kernel stack) alive in a cycle.
    *process.files.lock() = crate::fs::FdTable::empty();
    process.child_waiters.lock().clear();
    let orphans = core::mem::take(&mut *process.children.lock());
    if !orphans.is_empty() {
        if let Some(init) = super::process::find(1).filter(|init| !Arc::ptr_eq(init, process)) {
            for child in orphans {
                child.parent.store(1, Ordering::Relaxed);
                init.children.lock().push(child);
            }
            wake_child_waiters(&init);
        }
    }
    // SIGCHLD to the parent, which wakes its waiters too; tracees let go.
    crate::signal::jobctl::notify_exit(process, status);
}

/// Wakes every thread of `process` waiting in `wait4`.
pub fn wake_child_waiters(process: &Arc<Process>) {
    let waiters = core::mem::take(&mut *process.child_waiters.lock());
    for t in waiters {
        wake(t, WakeReason::Woken);
    }
}

/// The idle loop, run by the boot thread: runs ready threads until `process` has ended, and
/// halts the CPU whenever nothing is ready. Returns how the process ended.
pub fn wait_for(process: &Arc<Process>) -> ExitStatus {
    loop {
        reap();
        if let Some(status) = *process.exit.lock() {
            return status;
        }
        if let Some(next) = pick_next() {
            switch_to(current(), next);
        } else {
            // Halt with interrupts on; the tick wakes sleepers. (STI's one-instruction delay
            // makes `sti; hlt` race-free.)
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
        }
    }
}

/// Frees exited threads now (the boot thread, after the first program ended).
pub fn reap_now() {
    reap();
}

/// Gives the heap back the spare capacity of the scheduler's queues (they grow to the most
/// threads that were ever ready, blocked or asleep at once, and keep that capacity). Called
/// when the first program has ended, before the kernel reports what memory came back.
pub fn release_spare_capacity() {
    READY.lock().shrink_to_fit();
    SLEEPERS.lock().shrink_to_fit();
    BLOCKED.lock().shrink_to_fit();
    DEAD.lock().shrink_to_fit();
    super::futex::release_spare_capacity();
    super::release_spare_capacity();
}

/// Frees the threads that have exited (kernel stacks, FPU areas, and with the last one their
/// address space). Called only on a live thread's stack.
fn reap() {
    let dead: Vec<Arc<Thread>> = core::mem::take(&mut *DEAD.lock());
    drop(dead);
}

/// Switches this CPU from `prev` to `next` (Linux: `context_switch()` → `__switch_to()`).
///
/// The kernel's one `unsafe` outside `arch` (a documented exception to the house rule): the
/// stack switch itself is `arch::context::switch`, but whether the RSP it loads belongs to a
/// live thread, and whether any lock is still held, are facts only the scheduler knows — so
/// the scheduler, not `arch`, is the place that can vouch for them.
#[allow(unsafe_code)]
fn switch_to(prev: Arc<Thread>, next: Arc<Thread>) {
    if Arc::ptr_eq(&prev, &next) {
        return;
    }
    set_current(next.clone());
    switch_pkru(Some(&prev), &next);
    if let Some(fpu) = &prev.fpu {
        fpu.lock().save();
    }
    if let Some(fpu) = &next.fpu {
        fpu.lock().restore();
    }
    prev.fs_base.store(cpu::fs_base(), Ordering::Relaxed);
    cpu::set_fs_base(next.fs_base.load(Ordering::Relaxed));
    if !Arc::ptr_eq(&prev.mm, &next.mm) {
        next.mm.read().activate();
    }
    if let Some(top) = next.kernel_stack_top() {
        gdt::set_kernel_stack(top);
        percpu::set_kernel_stack_top(top);
    }
    let save = prev.saved_rsp_ptr();
    let load = next.saved_rsp();
    // Both threads stay alive in READY, DEAD, a wait queue or CURRENT; drop our own references
    // first, since a dead `prev` never comes back to drop them.
    drop(prev);
    drop(next);
    // SAFETY: `load` was saved by an earlier switch or prepared by `prepare_first_entry`, on a
    // stack owned by a live thread; no lock is held; interrupts are off in the kernel.
    unsafe { context::switch(save, load) };
    reap();
}

