//! The scheduler: one run queue for every CPU, sleeping and blocking, preemption, affinity, and
//! the context switch.
//!
//! * **One run queue.** Ready threads wait in [`READY`], shared by all CPUs; a CPU takes the
//!   first thread whose affinity mask allows it ([`pick_next`]). With at most a handful of
//!   CPUs and threads that mostly block, one queue under one lock keeps every CPU busy while
//!   there is work (an idle CPU takes whatever is ready; balancing needs no code) and makes
//!   migration free of extra machinery; Linux's per-CPU run queues exist for machines with
//!   hundreds of CPUs, where this lock would be contended. The tick ([`tick`], every
//!   [`timer::HZ`]-th of a second on each busy CPU) preempts a thread running in user mode if
//!   another is ready for this CPU, and puts it at the back.
//! * **Waking idle CPUs.** A CPU with nothing to run halts in `idle_once` ([`wait_for`] on CPU 0, [`ap_idle_loop`] on the others) after announcing
//!   itself in [`IDLE_CPUS`]; whoever queues a thread that such a CPU may run sends it the
//!   reschedule IPI ([`kick`]). An idle CPU needs no tick.
//! * **Blocking** is three steps, so that a wake-up on another CPU is never lost
//!   (Linux: `prepare_to_wait()`, `schedule()`, `finish_wait()`): [`prepare_to_wait`] marks the
//!   thread *Blocking*; the caller then makes itself findable (a futex queue, a pipe's waiters)
//!   and checks its condition once more; [`block_current`] goes to sleep only if no one woke it
//!   meanwhile. [`wake`] turns *Blocking* into *Running* (the sleeper does not sleep) or
//!   *Blocked* into *Running* and queues it. The wake reason travels in the same atomic word.
//! * **Leaving a CPU.** A thread switched out is still running on its old CPU until
//!   `context::switch` has saved its registers, so another CPU that picks it from the queue
//!   waits until its `on_cpu` flag drops ([`finish_switch`], run by whatever thread the old CPU
//!   switched to — Linux's `finish_task_switch()`). A thread that exited is dropped there too,
//!   after its CPU has left its kernel stack.
//! * **The switch** ([`switch_to`]): PKRU through [`super::switch_pkru`] (compared with this
//!   CPU's live register), FPU state (XSAVE/XRSTOR, PKRU masked out), FS base, address space
//!   ([`crate::mm::tlb::switch_mm`]), kernel stack (TSS.RSP0 and the SYSCALL stack) — Linux's
//!   `context_switch()` → `__switch_to()`.
//!
//! Locks: `SLEEPERS` → `READY` (never the other way), both after everything a caller of
//! [`wake`] may hold (`docs/ARCHITECTURE.md`, "Locks"). No lock is held across a switch.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;

use super::{current, set_current, switch_pkru, ExitStatus, Process, Thread};
use crate::arch::x86_64::{context, cpu, gdt, ipi, percpu, shootdown, time, timer};

/// Threads ready to run, oldest first, for every CPU.
static READY: Mutex<VecDeque<Arc<Thread>>> = Mutex::new(VecDeque::new());
/// Each CPU's idle thread (the boot thread on CPU 0): never in READY, run when nothing else is.
static IDLE: percpu::CpuLocalArc<Thread> = percpu::CpuLocalArc::new();
/// The thread each CPU has just switched away from, until [`finish_switch`] lets go of it.
static PREV: percpu::CpuLocalArc<Thread> = percpu::CpuLocalArc::new();
/// Threads waiting for a deadline (micros since boot).
static SLEEPERS: Mutex<Vec<(u64, Arc<Thread>)>> = Mutex::new(Vec::new());
/// CPUs halted (or about to halt) in the idle loop: a new ready thread must wake one.
static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);

/// Switches caused by the timer (a user thread preempted).
pub static PREEMPTIONS: percpu::Counter = percpu::Counter::new();
/// Threads that ran on another CPU than last time.
pub static MIGRATIONS: percpu::Counter = percpu::Counter::new();
/// Reschedule IPIs sent to wake an idle CPU.
pub static KICKS: percpu::Counter = percpu::Counter::new();

/// Why a blocked thread was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WakeReason {
    None = 0,
    Woken = 1,
    TimedOut = 2,
}

/// A thread's scheduling state, in the low bits of `Thread::sched_state` (the wake reason sits
/// above them, so that a waker sets both in one atomic step).
mod state {
    /// On a CPU, or in the run queue.
    pub const RUNNING: u8 = 0;
    /// Announced a sleep ([`super::prepare_to_wait`]) but still on its CPU.
    pub const BLOCKING: u8 = 1;
    /// Off every CPU and in no run queue: only [`super::wake`] brings it back.
    pub const BLOCKED: u8 = 2;
    pub const MASK: u8 = 0x0f;
    pub const REASON_SHIFT: u8 = 4;
}

impl Thread {
    fn wake_reason(&self) -> WakeReason {
        match self.sched_state.load(Ordering::Acquire) >> state::REASON_SHIFT {
            1 => WakeReason::Woken,
            2 => WakeReason::TimedOut,
            _ => WakeReason::None,
        }
    }
}

/// This CPU's index and mask bit.
fn this_cpu() -> (u32, u64) {
    let cpu = percpu::this_cpu().cpu_id;
    (cpu, 1 << cpu)
}

/// Queues `thread` to run and wakes an idle CPU that may run it.
fn enqueue(thread: Arc<Thread>) {
    let allowed = thread.affinity.load(Ordering::Relaxed);
    READY.lock().push_back(thread);
    kick(allowed);
}

/// Wakes one idle CPU among `allowed` (not this one) with the reschedule IPI, if there is one.
/// The queue was changed before this looks at `IDLE_CPUS`, and an idle CPU announces itself
/// before it looks at the queue (both sequentially consistent), so either it sees the thread
/// or this sees it idle. Linux: `wake_up_idle_cpu()`.
fn kick(allowed: u64) {
    let (_, me) = this_cpu();
    let idle = IDLE_CPUS.load(Ordering::SeqCst) & allowed & !me;
    if idle == 0 {
        return;
    }
    let target = idle.trailing_zeros();
    if IDLE_CPUS.fetch_and(!(1 << target), Ordering::SeqCst) & (1 << target) != 0 {
        KICKS.add(1);
        ipi::send(target as usize, ipi::Ipi::Reschedule);
    }
}

/// Interrupts `thread` with the reschedule IPI if it is running on another CPU now: work was
/// just announced in its work word (set *before* this looks, both sequentially consistent), and
/// the IPI makes that CPU take the interrupt path's kernel exit, which acts on the word — at
/// once if it runs user code, at the SYSRET that re-enables interrupts if it is in a system
/// call. A thread that is not on a CPU reads the word on its way out anyway; a thread that
/// leaves its CPU meanwhile gets a harmless extra IPI. Linux: `kick_process()`.
/// Inline, the IPI out of line: most work is announced by a thread for itself (a fault's
/// signal, `signal_pending()`), which costs a few loads and a compare here.
#[inline]
pub fn kick_running(thread: &Thread) {
    // The thread running here (one GS load): nothing to interrupt.
    if percpu::with_current_thread(|me| me.is_some_and(|me| core::ptr::eq(me, thread))) {
        return;
    }
    if thread.on_cpu.load(Ordering::SeqCst) {
        kick_cpu(thread.cpu.load(Ordering::Relaxed));
    }
}

#[inline(never)]
fn kick_cpu(cpu: u32) {
    if cpu != this_cpu().0 {
        ipi::send(cpu as usize, ipi::Ipi::Reschedule);
    }
}

/// Makes a new thread ready to run (and findable by its tid).
pub fn spawn(thread: Arc<Thread>) {
    super::register(&thread);
    enqueue(thread);
}

/// Is a thread ready that this CPU may run?
pub fn others_ready() -> bool {
    let (_, me) = this_cpu();
    READY.lock().iter().any(|t| t.affinity.load(Ordering::Relaxed) & me != 0)
}

/// The oldest ready thread this CPU may run. Threads of a process that has ended still run:
/// each leaves at its next kernel exit ([`kernel_exit`]), after its kernel stack has
/// unwound, so nothing they hold (open files, references) is leaked.
fn pick_next() -> Option<Arc<Thread>> {
    let (_, me) = this_cpu();
    let mut ready = READY.lock();
    let i = ready.iter().position(|t| t.affinity.load(Ordering::Relaxed) & me != 0)?;
    ready.remove(i)
}

/// A new thread's first code, before it leaves for user mode with `frame`: finish the switch
/// that brought it here, then the same kernel exit as every other way back to user mode.
pub fn first_entry(frame: &mut crate::arch::x86_64::trap::TrapFrame) {
    finish_switch();
    kernel_exit(frame);
}

/// Must `me` end at this kernel exit? (Its process ended, or `execve` replaced it.)
pub fn must_leave(me: &Thread) -> bool {
    me.process.ended.load(Ordering::Acquire) || me.leaving.load(Ordering::Relaxed)
}

/// Has the current thread's return to user mode anything to do besides SYSRET — a signal or
/// stop to act on, an end to meet (its process ended, `execve` replaced it), an interrupted call
/// to restart? One load: the thread's work word ([`Thread::add_work`](super::Thread::add_work))
/// — the test the SYSCALL stub makes in assembly (through `PerCpu::current_work`) right before
/// SYSRET, with interrupts off, and the first thing [`kernel_exit`] asks. Linux: the
/// `_TIF_WORK_SYSCALL_EXIT` test of `syscall_exit_to_user_mode_prepare()`.
///
/// An `ERESTART*` code in RAX needs no separate test: a call returns one only when it gave up
/// because [`signal_pending`] said so, and that set the word (a tracer that writes one into a
/// stopped thread's registers does so at a stop, which is the slow exit already).
#[inline]
pub fn exit_work_pending() -> bool {
    super::with_current(|me| me.work_pending())
}

/// Everything a return to user mode must do — after a syscall, an interrupt or a fault from
/// user mode, and before a new thread's first entry. The common case is one load: the work
/// word is clear, there is nothing to do. Otherwise the thread clears the word and only then
/// looks at the state behind it (so work announced meanwhile sets the word again and is never
/// lost): acts on a pending signal (or stop), then ends if its process has ended (another
/// thread called `exit_group`, a fatal signal arrived) or `execve` replaced it — here, with
/// nothing left on its kernel stack. (Linux: `exit_to_user_mode_loop()`, which also checks
/// fatal signals there.)
pub fn kernel_exit(frame: &mut crate::arch::x86_64::trap::TrapFrame) {
    if !exit_work_pending() {
        return;
    }
    let me = current();
    me.take_work();
    crate::signal::deliver_pending(&me, frame);
    let leave = must_leave(&me);
    if !leave && !crate::signal::nothing_pending(&me) {
        // Still something to look at next time: a signal pending but blocked (a call that
        // unblocks it must find it), or a stopped or traced process.
        me.add_work(super::work::SIGNAL);
    }
    drop(me);
    if leave {
        exit_current();
    }
}

/// Must the current thread end (its process ended, or `execve` replaced it), so that a
/// blocking call should give up with `EINTR`? If so, its exit will see it too (the word is
/// set here as well: the thread that ended the process may not have reached this one yet).
pub fn killed() -> bool {
    super::with_current(|me| {
        let killed = must_leave(me);
        if killed {
            me.add_work(super::work::LEAVE);
        }
        killed
    })
}

/// Does the current thread have a signal to act on, or must it stop (so a blocking call gives
/// up, with `EINTR` or one of the `ERESTART*` codes)? Linux: `signal_pending()`. If so, the
/// thread's exit will look (the word is set here: the call's `ERESTART*` code must reach the
/// slow exit even if the sender has not set the word yet).
pub fn signal_pending() -> bool {
    super::with_current(|me| {
        let pending = me.signals.any_deliverable(me.blocked.load(Ordering::Relaxed)) || me.process.jobctl.group_stopped();
        if pending {
            me.add_work(super::work::SIGNAL);
        }
        pending
    })
}

/// Records this CPU's idle thread (the boot thread on CPU 0, an AP's own at its start).
pub fn set_idle(thread: Arc<Thread>) {
    IDLE.replace(thread);
}

fn is_idle(t: &Arc<Thread>) -> bool {
    IDLE.get().is_some_and(|idle| Arc::ptr_eq(&idle, t))
}

/// The next ready thread for this CPU, or its idle thread when none is.
fn next_or_idle() -> Arc<Thread> {
    pick_next().unwrap_or_else(|| IDLE.get().expect("no idle thread on this CPU"))
}

/// Lets the next ready thread run; the current thread stays ready. (The idle thread is never
/// queued: it runs only when nothing else can.)
pub fn yield_now() {
    let Some(next) = pick_next() else { return };
    let prev = current();
    if !is_idle(&prev) {
        enqueue(prev.clone());
    }
    switch_to(prev, next);
}

/// Moves the current thread to a CPU its affinity allows, if this one no longer is (after
/// `sched_setaffinity`): it queues itself, wakes an allowed idle CPU, and leaves this one.
/// When it runs again, it runs where it may. Linux: `__set_cpus_allowed_ptr()` →
/// `affine_move_task()`.
pub fn migrate_if_disallowed() {
    let (_, me) = this_cpu();
    let prev = current();
    if prev.affinity.load(Ordering::Relaxed) & me != 0 {
        return;
    }
    enqueue(prev.clone());
    switch_to(prev, next_or_idle());
}

/// Step 1 of sleeping (Linux: `prepare_to_wait()` / `set_current_state(TASK_INTERRUPTIBLE)`):
/// the current thread is *Blocking* from now on, so a [`wake`] from here on is not lost. Then
/// make the thread findable by its waker, check the condition once more, and call
/// [`block_current`] (or [`finish_wait`] if the condition holds already).
pub fn prepare_to_wait() {
    current().sched_state.store(state::BLOCKING, Ordering::SeqCst);
}

/// Gives up a sleep announced with [`prepare_to_wait`] (the condition held after all), and any
/// deadline armed for it. Linux: `finish_wait()`.
pub fn finish_wait() {
    let me = current();
    let _ = me.sched_state.compare_exchange(state::BLOCKING, state::RUNNING, Ordering::SeqCst, Ordering::Relaxed);
    SLEEPERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, &me));
}

/// Takes the current thread off the CPU until someone calls [`wake`] (or its deadline passes,
/// if it armed one) — unless someone already did since [`prepare_to_wait`]. Returns why it
/// woke. The caller must hold no lock and no `Arc<Thread>` of its own across this call: a
/// blocked thread's stack should keep nothing alive. Linux: `schedule()`.
pub fn block_current() -> WakeReason {
    let me = current();
    if me.sched_state.compare_exchange(state::BLOCKING, state::BLOCKED, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
        switch_to(me, next_or_idle());
    } else {
        drop(me);
    }
    current().wake_reason()
}

/// Waits until `thread` is off every CPU (its registers, FPU state and PKRU saved by the
/// switch), serving shootdowns meanwhile. For a tracer about to read or write a stopped
/// tracee's saved state. Linux: `wait_task_inactive()`.
pub fn wait_inactive(thread: &Thread) {
    while thread.on_cpu.load(Ordering::Acquire) {
        shootdown::serve();
        core::hint::spin_loop();
    }
}

/// Makes a blocking or blocked thread run again (`reason` tells it why). Waking a thread that
/// is running (a stale entry in some wait queue) does nothing. Linux: `try_to_wake_up()`.
pub fn wake(thread: Arc<Thread>, reason: WakeReason) {
    let running = state::RUNNING | ((reason as u8) << state::REASON_SHIFT);
    let mut seen = thread.sched_state.load(Ordering::SeqCst);
    loop {
        let next = match seen & state::MASK {
            // Still on its CPU: it will see the change in `block_current` and not sleep.
            state::BLOCKING | state::BLOCKED => running,
            _ => return,
        };
        match thread.sched_state.compare_exchange(seen, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(now) => seen = now,
        }
    }
    SLEEPERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, &thread));
    if seen & state::MASK == state::BLOCKED {
        enqueue(thread);
    }
}

/// Registers a deadline (micros since boot) for the current thread; the tick wakes it with
/// `TimedOut` once the deadline has passed. Between [`prepare_to_wait`] and [`block_current`].
pub fn arm_deadline(deadline_us: u64) {
    SLEEPERS.lock().push((deadline_us, current()));
}

/// Sleeps until `deadline_us` (micros since boot). `false` if a signal (or a stop, or the end
/// of the process) came first. Linux: `hrtimer_nanosleep()`.
pub fn sleep_until(deadline_us: u64) -> bool {
    while time::micros_since_boot() < deadline_us {
        prepare_to_wait();
        arm_deadline(deadline_us);
        if killed() || signal_pending() {
            finish_wait();
            return false;
        }
        block_current();
        if killed() || signal_pending() {
            return false;
        }
    }
    true
}

/// The timer tick on this CPU: CPU 0 wakes sleepers whose deadline has passed (CPU 0 always
/// ticks; the others only while busy); if user code was interrupted and another thread is
/// ready for this CPU, preempt it.
pub fn tick(from_user: bool) {
    timer::tick();
    let (cpu, _) = this_cpu();
    if cpu == 0 {
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
    }
    if from_user && others_ready() {
        PREEMPTIONS.add(1);
        yield_now();
    }
}

/// The reschedule IPI: another CPU queued a thread this one may run, or changed the running
/// thread's affinity. If user code was
/// interrupted, let the queue decide now; the idle loop looks at the queue by itself after
/// any interrupt. Linux: `scheduler_ipi()`.
pub fn reschedule_ipi(from_user: bool) {
    if from_user {
        // `sched_setaffinity` on another CPU may have taken this one from the running thread.
        migrate_if_disallowed();
        if others_ready() {
            yield_now();
        }
    }
}

/// Ends the current thread and runs the next one. Never returns. The thread leaves the
/// registry and is in no queue; the CPU lets go of it in [`finish_switch`], once it is off its
/// stack.
pub fn exit_current() -> ! {
    let prev = current();
    super::unregister(&prev);
    switch_to(prev, next_or_idle());
    unreachable!("a dead thread was resumed");
}

/// `pause()`: sleeps until a signal arrives. Returns `ERESTARTNOHAND`: `EINTR` once a handler
/// ran, and back to sleep when none did (a stop and a continue, an ignored signal), as Linux's
/// `sys_pause()`.
pub fn pause() -> pkeys::Errno {
    loop {
        prepare_to_wait();
        if killed() || signal_pending() {
            finish_wait();
            return pkeys::Errno::ERESTARTNOHAND;
        }
        block_current();
    }
}

/// `exit(code)` of one thread (Linux: `do_exit()`): clears and wakes the `set_tid_address` /
/// `CLONE_CHILD_CLEARTID` word (that is how `pthread_join` learns of it); the last thread of a
/// process ends the process with `code`.
pub fn exit_thread(code: u8) -> ! {
    let thread = current();
    let tidptr = thread.clear_child_tid.swap(0, Ordering::Relaxed);
    if tidptr != 0 && crate::mm::user::copy_to_user(tidptr, &0u32.to_le_bytes()).is_ok() {
        super::futex::wake(&thread.mm, tidptr, 1, super::futex::MATCH_ANY);
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

/// Wakes every thread of process `pid` (but `except`), so that each runs to its next kernel
/// exit and ends there ([`kernel_exit`]). Threads that are ready or running already
/// will do the same when they next reach a kernel exit (their work word says so).
pub fn purge_threads(pid: u32, except: Option<u32>) {
    super::futex::forget_process(pid, except);
    for t in super::threads_of(pid) {
        if Some(t.tid) != except {
            t.add_work(super::work::LEAVE);
            wake(t, WakeReason::Woken);
        }
    }
}

/// Wakes every blocked thread of process `pid` (a stop or a continue: each re-checks why it
/// sleeps; a stopped one stays stopped unless its stop ended).
pub fn wake_process(pid: u32) {
    for t in super::threads_of(pid) {
        t.add_work(super::work::STOP);
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

/// The boot CPU's idle loop, run by the boot thread: runs ready threads until `process` has
/// ended. Returns how the process ended.
pub fn wait_for(process: &Arc<Process>) -> ExitStatus {
    loop {
        if let Some(status) = *process.exit.lock() {
            // Let go of the last program's address space, and give the other CPUs a moment to
            // do the same (each announces itself idle once it has), so that the memory report
            // that follows sees everything returned.
            crate::mm::tlb::leave_mm();
            let others = percpu::online_mask() & !1;
            let deadline = time::micros_since_boot().saturating_add(1_000_000);
            while IDLE_CPUS.load(Ordering::SeqCst) & others != others && time::micros_since_boot() < deadline {
                shootdown::serve();
                core::hint::spin_loop();
            }
            return status;
        }
        idle_once();
    }
}

/// An application processor's idle loop, forever.
pub fn ap_idle_loop() -> ! {
    loop {
        idle_once();
    }
}

/// One turn of an idle loop: run a ready thread if there is one; otherwise let go of the user
/// address space, announce this CPU idle, look at the queue once more (a thread queued before
/// the announcement was not kicked here), and halt until an interrupt — the reschedule IPI,
/// a shootdown, or the tick. (STI's one-instruction delay makes `sti; hlt` race-free: an IPI
/// that arrives after the check waits for the HLT.) CPUs other than 0 stop their tick while
/// halted.
fn idle_once() {
    if let Some(next) = pick_next() {
        switch_to(current(), next);
        return;
    }
    let (cpu, me) = this_cpu();
    crate::mm::tlb::leave_mm();
    IDLE_CPUS.fetch_or(me, Ordering::SeqCst);
    if others_ready() {
        IDLE_CPUS.fetch_and(!me, Ordering::SeqCst);
        return;
    }
    if cpu != 0 {
        timer::stop_this_cpu();
    }
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
    IDLE_CPUS.fetch_and(!me, Ordering::SeqCst);
    if cpu != 0 {
        timer::start_this_cpu();
    }
}

/// Gives the heap back the spare capacity of the scheduler's queues (they grow to the most
/// threads that were ever ready or asleep at once, and keep that capacity). Called when the
/// first program has ended, before the kernel reports what memory came back.
pub fn release_spare_capacity() {
    READY.lock().shrink_to_fit();
    SLEEPERS.lock().shrink_to_fit();
    super::futex::release_spare_capacity();
    super::release_spare_capacity();
}

/// Completes a switch on the CPU that made it, running on the new thread's stack: the thread
/// switched away from is off this CPU now, so another CPU may run it (its `on_cpu` drops), and
/// if it has exited this may be the last reference, which frees its kernel stack — safely,
/// since no CPU is on it. Linux: `finish_task_switch()`.
fn finish_switch() {
    if let Some(prev) = PREV.take() {
        prev.on_cpu.store(false, Ordering::Release);
    }
}

/// Switches this CPU from `prev` to `next` (Linux: `context_switch()` → `__switch_to()`).
///
/// The kernel's one `unsafe` outside `arch` (a documented exception to the house rule): the
/// stack switch itself is `arch::context::switch`, but whether the RSP it loads belongs to a
/// live thread that no other CPU runs, and whether any lock is still held, are facts only the
/// scheduler knows — so the scheduler, not `arch`, is the place that can vouch for them.
#[allow(unsafe_code)]
fn switch_to(prev: Arc<Thread>, next: Arc<Thread>) {
    if Arc::ptr_eq(&prev, &next) {
        return;
    }
    // `next` may have been queued (by a waker, or by itself on its way off a CPU: a yield, a
    // move) before its old CPU finished switching it out. Waiting for that CPU here, with
    // `prev` still on this one, could wait forever: two threads crossing between two CPUs
    // (this CPU leaves A for B while B's CPU leaves B for A) would each wait for the other.
    // So a thread waits only from the idle thread, which no other CPU ever waits for: `next`
    // goes back to the queue, and this CPU's idle thread takes it (or another) from there.
    let next = if next.on_cpu.load(Ordering::Acquire) && !is_idle(&prev) {
        match IDLE.get() {
            Some(idle) => {
                enqueue(next);
                idle
            }
            None => next,
        }
    } else {
        next
    };
    // From the idle thread: wait until `next`'s old CPU is off its stack (Linux: the `on_cpu`
    // wait in `try_to_wake_up()`). Serve shootdowns meanwhile: that CPU may be waiting for
    // this one.
    while next.on_cpu.load(Ordering::Acquire) {
        shootdown::serve();
        core::hint::spin_loop();
    }
    next.on_cpu.store(true, Ordering::Relaxed);
    let (cpu, _) = this_cpu();
    if next.cpu.swap(cpu, Ordering::Relaxed) != cpu && !next.kernel_only {
        MIGRATIONS.add(1);
    }
    set_current(next.clone());
    super::SWITCHES.inc();
    switch_pkru(&prev, &next);
    if let Some(fpu) = &prev.fpu {
        fpu.lock().save();
    }
    if let Some(fpu) = &next.fpu {
        fpu.lock().restore();
    }
    prev.fs_base.store(cpu::fs_base(), Ordering::Relaxed);
    cpu::set_fs_base(next.fs_base.load(Ordering::Relaxed));
    // A kernel-only thread keeps whatever tree is loaded (the idle loop lets go of it only
    // when it halts: `mm::tlb`).
    if !next.kernel_only {
        crate::mm::tlb::switch_mm(&next.mm);
    }
    if let Some(top) = next.kernel_stack_top() {
        gdt::set_kernel_stack(top);
        percpu::set_kernel_stack_top(top);
    }
    let save = prev.saved_rsp_ptr();
    let load = next.saved_rsp();
    // `prev` stays alive in this CPU's PREV slot until `finish_switch`, after the switch; `next`
    // is alive in CURRENT. Drop our own references first, since a dead `prev` never comes
    // back to drop them.
    PREV.replace(prev);
    drop(next);
    // SAFETY: `load` was saved by an earlier switch or prepared by `prepare_first_entry`, on a
    // stack owned by a live thread that no other CPU runs (its `on_cpu` was clear, and we set
    // it); `save` points into `prev`, kept alive by PREV; no lock is held; interrupts are off.
    unsafe { context::switch(save, load) };
    finish_switch();
}
