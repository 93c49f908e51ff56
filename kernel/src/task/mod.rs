//! Threads, and the PKRU path of a context switch.
//!
//! PKRU is **per thread**, while the key allocation map is per address space: two threads of
//! one program may hold different rights to the same key (Linux: `thread_struct.pkru`). The
//! rule, as in Linux, is that while a thread runs the hardware register *is* its PKRU; the
//! copy in [`Thread`] is valid only while the thread is switched out.
//!
//! Two ways a thread becomes current:
//!
//! * [`sched`] — the real one: user threads have their own kernel stacks, and
//!   [`sched::yield_now`] / [`sched::exit_current`] switch stacks with `arch::context::switch`,
//!   calling [`switch_pkru`] on the way (Linux: `__switch_to()` → `x86_pkru_load()`);
//! * [`run_as`] — synchronous, on the caller's stack: the in-kernel tests use it to run syscall
//!   handlers as a kernel-made thread and to show that two threads' PKRU values do not leak into
//!   each other. It calls the same [`switch_pkru`].
//!
//! [`process`] holds what the threads of one program share besides the address space: the fd
//! table, the exit status, the credentials. [`fault`] turns a user exception into a signal.

pub mod fault;
pub mod futex;
pub mod limits;
pub mod process;
pub mod sched;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use pkeys::Pkru;
use crate::sync::Mutex;

use crate::arch::x86_64::context::KernelStack;
use crate::arch::x86_64::fpu::FpuState;
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::{cpu, percpu, pkru};
use crate::mm::address_space::MmRef;
pub use process::{ExitStatus, Process};

/// A thread: an id, its process and address space, its kernel stack, and the registers that
/// are saved only while it is switched out (PKRU, FS base, kernel RSP).
///
/// Locking (xv6 style; the one lock order is in `docs/ARCHITECTURE.md`, "Locks"): a field is
/// either immutable once the `Arc` exists, an atomic with the writers named below, or behind its
/// own lock. "Only the thread itself" means the thread's own kernel code, with interrupts off.
#[derive(Debug)]
pub struct Thread {
    /// Immutable.
    pub tid: u32,
    /// Immutable (the `Arc`; the `Process` has its own locks).
    pub process: Arc<Process>,
    /// Immutable (`execve` makes a new `Thread` rather than swapping it); the `Mm` behind it is
    /// protected by its `RwLock`.
    pub mm: MmRef,
    /// Linux: `thread.pkru` — valid only while the thread is not running. Atomic (no lock on
    /// the switch's PKRU path): written by `switch_pkru` on the CPU that switches the thread
    /// out, and by a tracer while the thread is stopped; read when it is switched in (the
    /// scheduler's `on_cpu` hand-over orders the two).
    saved_pkru: AtomicU32,
    /// The thread's NUMA memory policy (`set_mempolicy`; Linux: `task_struct.mempolicy`);
    /// `None`: the default (local allocation). Its own `Mutex`, a leaf after `saved_pkru`:
    /// written by the thread itself (and by its creator before `spawn`), read by the fault path
    /// with the `Mm` lock held. `fork` and `clone` copy it, `execve` keeps it.
    pub mempolicy: Mutex<Option<mempolicy::Policy>>,
    /// The kernel stack (none for the boot thread, which keeps the bootloader's). Immutable;
    /// the memory is used only by this thread while it runs, and freed with the last `Arc`
    /// (by `reap`, which never runs on it).
    kstack: Option<KernelStack>,
    /// The kernel RSP saved by the context switch. Atomic: written by
    /// [`context::switch`](crate::arch::x86_64::context::switch) when the thread is switched out,
    /// read by `switch_to` when it is switched in.
    saved_rsp: AtomicU64,
    /// IA32_FS_BASE (the user's TLS pointer), saved while switched out (the MSR is the truth
    /// while it runs). Atomic: written by `switch_to`, `arch_prctl` (the thread itself) and the
    /// creator before `spawn`.
    pub fs_base: AtomicU64,
    /// `set_tid_address()`'s pointer: at thread exit, 0 is written there and a futex waiter on
    /// it is woken (how `pthread_join` learns a thread ended). Atomic: only the thread itself,
    /// or its creator before `spawn`.
    pub clear_child_tid: AtomicU64,
    /// `set_robust_list()`'s head (0: none; a new thread starts without one, as Linux's
    /// `futex_init_task()`). Atomic: only the thread itself writes it.
    pub robust_list: AtomicU64,
    /// Blocked signals (`rt_sigprocmask`). Atomic: written and read only by the thread itself
    /// (or its creator before `spawn`); senders never look at it.
    pub blocked: AtomicU64,
    /// The user FPU/SSE/AVX state while switched out (none for kernel-made threads). The
    /// `Option` is immutable; the state is behind its `Mutex`, taken by `switch_to` and
    /// `inherit_fpu` only.
    pub fpu: Option<Mutex<FpuState>>,
    /// The scheduler's state (running, blocking, blocked) and why the thread was last woken,
    /// in one word (see `sched`'s `state`). Atomic: set to blocking by the thread itself, moved
    /// to blocked by the thread itself and back to running by a waker, each with a
    /// compare-and-swap, so a wake-up and a sleep never both win.
    pub(crate) sched_state: AtomicU8,
    /// Is a CPU still on this thread's kernel stack? Set by the CPU that switches it in, cleared
    /// by that CPU once it has switched it out (`sched::finish_switch`); another CPU waits for
    /// it to drop before it resumes the thread. Linux: `task_struct.on_cpu`.
    pub(crate) on_cpu: core::sync::atomic::AtomicBool,
    /// The CPUs it may run on (bit = CPU index; Linux: `cpus_mask`). Atomic: written by
    /// `sched_setaffinity` (any thread of a process the caller may affect) and by the creator
    /// before `spawn`; read by every CPU that looks at the run queue.
    pub affinity: AtomicU64,
    /// The CPU it last ran on (for `getcpu` and the migration count). Atomic: written by the
    /// CPU that switches it in.
    pub cpu: AtomicU32,
    /// A kernel-only thread (the idle/boot thread): it never runs user code, so a switch to it
    /// keeps the loaded address space and does not count as a migration. (The PKRU part of a
    /// switch treats it like any thread: see [`switch_pkru`].) Immutable.
    kernel_only: bool,
    /// Set by `execve` — on the exec'ing thread (its successor runs the new program) and on
    /// every other thread of the process (Linux's `de_thread()`): the thread ends at its next
    /// kernel exit. Atomic: set by the exec'ing thread, read by the thread itself.
    pub leaving: core::sync::atomic::AtomicBool,
    /// Pending signals and the alternate signal stack (see [`crate::signal::ThreadSignals`] for
    /// their locks).
    pub signals: crate::signal::ThreadSignals,
    /// The "work pending" word: the bits of [`work`], each saying that the thread's next return
    /// to user mode has something to do besides SYSRET/IRETQ. The one word every kernel exit
    /// tests (the SYSCALL stub through this CPU's [`percpu::PerCpu::current_work`] pointer,
    /// [`sched::kernel_exit`] for interrupts and faults); Linux: `thread_info.flags`' `_TIF_*`
    /// work bits. Atomic: any CPU sets bits ([`Thread::add_work`]) *after* it changed the state
    /// they announce and *before* it wakes or interrupts the thread; only the thread itself
    /// clears them, in [`sched::kernel_exit`], before it looks at that state.
    work: AtomicU32,
    /// The task this thread counts as, if it is not its process's first thread (whose task
    /// the process holds): see [`limits`].
    task: Option<limits::TaskSlot>,
}

/// The bits of [`Thread::work`]: what a return to user mode must do besides SYSRET/IRETQ.
/// Which bit is set matters only for reading a stuck thread's state; every exit treats any bit
/// the same way — it takes the slow way out, [`sched::kernel_exit`], which looks at the real state.
pub mod work {
    /// A signal was queued for the thread, or one may be pending (a blocked one waits; an
    /// unblocking call must find it). Set by [`crate::signal::queue`], by
    /// [`super::sched::signal_pending`] when a call gives up for a signal or a stop, and by
    /// [`super::sched::kernel_exit`] while a signal stays pending.
    pub const SIGNAL: u32 = 1 << 0;
    /// The process was stopped or continued (job control): stop here, or stop no more. Set by
    /// [`super::sched::wake_process`].
    pub const STOP: u32 = 1 << 1;
    /// The thread must end: its process ended (`exit_group`, a fatal signal) or `execve`
    /// replaced it. Set by [`super::sched::purge_threads`] and [`super::Thread::mark_leaving`].
    pub const LEAVE: u32 = 1 << 2;
    /// Every bit: a new thread's first exit looks at everything.
    pub const ALL: u32 = SIGNAL | STOP | LEAVE;
}

static NEXT_TID: AtomicU32 = AtomicU32::new(1);
/// Every user thread by tid (weak), for signals aimed at a thread.
/// Holds every user thread from its start (`sched::spawn`) until it exits (`sched::exit_current` takes it
/// out): a thread that sleeps in no queue (`pause`, a job-control stop) is kept alive here, not
/// by the scheduler. Linux: the pid hash and the thread group list.
static THREADS: Mutex<alloc::collections::BTreeMap<u32, Arc<Thread>>> = Mutex::new(alloc::collections::BTreeMap::new());

/// The live user thread with id `tid`.
pub fn find_thread(tid: u32) -> Option<Arc<Thread>> {
    let t = THREADS.lock().get(&tid).cloned();
    t.filter(|t| t.process.exit.lock().is_none())
}

/// Every live thread of process `pid` (for waking them all when it ends).
pub fn threads_of(pid: u32) -> alloc::vec::Vec<Arc<Thread>> {
    let all: alloc::vec::Vec<Arc<Thread>> = THREADS.lock().values().cloned().collect();
    all.into_iter().filter(|t| t.process.pid == pid).collect()
}

/// Frees the thread registry's last node once it is empty (see
/// `sched::release_spare_capacity`).
pub fn release_spare_capacity() {
    let mut threads = THREADS.lock();
    if threads.is_empty() {
        *threads = alloc::collections::BTreeMap::new();
    }
}

/// Enters a thread about to run for the first time in the registry (`execve`'s successor takes
/// over its predecessor's tid and entry). A thread made but never started — a `clone` that
/// failed after it was built — is never entered, and simply goes away.
fn register(thread: &Arc<Thread>) {
    THREADS.lock().insert(thread.tid, thread.clone());
}

/// Takes an exiting thread out of the registry. `execve`'s successor reuses the tid, so only
/// the thread's own entry goes.
fn unregister(thread: &Arc<Thread>) {
    let mut threads = THREADS.lock();
    if threads.get(&thread.tid).is_some_and(|t| Arc::ptr_eq(t, thread)) {
        threads.remove(&thread.tid);
    }
}
/// Each CPU's current thread (Linux: `current`).
static CURRENT: percpu::CpuLocalArc<Thread> = percpu::CpuLocalArc::new();

/// Context switches (`sched::switch_to`, [`run_as`]), counted in the per-CPU area: one instruction.
pub static SWITCHES: percpu::AreaCounter<{ percpu::area_slot::SWITCHES }> = percpu::AreaCounter;

impl Thread {
    /// The first thread of a freshly exec'd program: PKRU = [`Pkru::INIT`] (Linux:
    /// `pkru_flush_thread()` at exec writes `init_pkru_value`). A kernel-made thread: it has
    /// no kernel stack of its own and runs only through [`run_as`].
    #[cfg(test)] // used by the in-kernel tests only
    pub fn new_program(mm: MmRef) -> Arc<Thread> {
        Self::with_pkru(mm, Pkru::INIT)
    }

    /// A new kernel-made thread that starts with `pkru` (a clone starts with its creator's
    /// *current* PKRU, Linux `copy_thread()`: `p->thread.pkru = read_pkru()`).
    #[cfg(test)] // used by the in-kernel tests only
    pub fn with_pkru(mm: MmRef, pkru: Pkru) -> Arc<Thread> {
        let tid = NEXT_TID.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self::build(tid, Process::new(tid, "kernel", None), mm, pkru, None))
    }

    fn build(tid: u32, process: Arc<Process>, mm: MmRef, pkru: Pkru, kstack: Option<KernelStack>) -> Thread {
        let fpu = kstack.as_ref().map(|_| Mutex::new(FpuState::new_initial()));
        Thread {
            fpu,
            sched_state: AtomicU8::new(0),
            on_cpu: core::sync::atomic::AtomicBool::new(false),
            affinity: AtomicU64::new(u64::MAX),
            cpu: AtomicU32::new(0),
            kernel_only: false,
            signals: crate::signal::ThreadSignals::default(),
            // A new thread looks at everything at its first kernel exit: a process may end, stop
            // or be exec'd over while the thread is being made, before anyone can find it.
            work: AtomicU32::new(work::ALL),
            leaving: core::sync::atomic::AtomicBool::new(false),
            tid,
            process,
            mm,
            saved_pkru: AtomicU32::new(pkru.bits()),
            mempolicy: Mutex::new(None),
            kstack,
            saved_rsp: AtomicU64::new(0),
            fs_base: AtomicU64::new(0),
            clear_child_tid: AtomicU64::new(0),
            robust_list: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            task: None,
        }
    }

    /// A new user thread `tid` of `process`, on kernel stack `stack` (made for `tid`), that
    /// will enter user mode with registers `user` (RIP, RSP, flags …) the first time the
    /// scheduler switches to it. `task` is its own counted task, if it is an extra thread.
    pub fn new_user(
        process: Arc<Process>,
        mm: MmRef,
        pkru: Pkru,
        user: &TrapFrame,
        tid: u32,
        mut stack: KernelStack,
        task: Option<limits::TaskSlot>,
    ) -> Arc<Thread> {
        let rsp = stack.prepare_first_entry(user);
        let mut thread = Self::build(tid, process, mm, pkru, Some(stack));
        thread.task = task;
        thread.saved_rsp.store(rsp, Ordering::Relaxed);
        Arc::new(thread)
    }

    /// The boot thread: tid 0 in process 0 (Linux's "swapper"), so the first program is pid 1.
    pub fn boot(mm: MmRef) -> Arc<Thread> {
        let mut t = Self::build(0, Process::new(0, "swapper", None), mm, Pkru::INIT, None);
        t.kernel_only = true;
        Arc::new(t)
    }

    /// The idle thread of another CPU: tid 0 of the boot thread's process ("swapper"), in the
    /// boot thread's address space, kernel-only (Linux: `fork_idle()` — every CPU's idle task
    /// is pid 0). It has no kernel stack of its own: it runs on the stack its CPU started on.
    pub fn idle_for_another_cpu(boot: &Thread) -> Arc<Thread> {
        let mut t = Self::build(0, boot.process.clone(), boot.mm.clone(), Pkru::INIT, None);
        t.kernel_only = true;
        Arc::new(t)
    }

    /// The top of its kernel stack, if it has one.
    pub fn kernel_stack_top(&self) -> Option<u64> {
        self.kstack.as_ref().map(KernelStack::top)
    }

    /// Where the context switch stores this thread's kernel RSP.
    fn saved_rsp_ptr(&self) -> *mut u64 {
        self.saved_rsp.as_ptr()
    }

    /// The kernel RSP the context switch resumes this thread at.
    fn saved_rsp(&self) -> u64 {
        self.saved_rsp.load(Ordering::Relaxed)
    }

    /// A fresh thread id (a new process's first thread has tid = pid).
    pub fn allocate_tid() -> u32 {
        NEXT_TID.fetch_add(1, Ordering::Relaxed)
    }

    /// A new thread in the same address space, inheriting the *calling* thread's live PKRU.
    #[cfg(test)] // used by the in-kernel tests only
    pub fn clone_current(mm: MmRef) -> Arc<Thread> {
        Self::with_pkru(mm, pkru::read())
    }

    /// The PKRU this thread will get when it next runs (meaningless while it runs).
    pub fn saved_pkru(&self) -> Pkru {
        Pkru::from_bits(self.saved_pkru.load(Ordering::Relaxed))
    }

    /// Announces work for the thread's next return to user mode (the [`work`] bits in `bits`).
    /// Call it after changing the state the bits stand for and before waking or interrupting
    /// the thread: its exit clears the word and *then* looks at that state, so either it sees
    /// the change or the bit survives to its next exit. (Release: a thread that sees the bit
    /// sees the change.) Then, if the thread is running on another CPU, that CPU gets the
    /// reschedule IPI, so the work is done at once — at the interrupted user code's kernel exit,
    /// or at the SYSRET of the system call it is in — not at its next tick ([`sched::kick_running`];
    /// Linux: `set_tsk_thread_flag()` and `kick_process()`).
    pub fn add_work(&self, bits: u32) {
        self.work.fetch_or(bits, Ordering::SeqCst);
        sched::kick_running(self);
    }

    /// Is any work announced? (What the system-call and interrupt exits test.)
    pub fn work_pending(&self) -> bool {
        self.work.load(Ordering::Relaxed) != 0
    }

    /// Clears the work word, by the thread itself at its kernel exit, *before* it looks at the
    /// state the bits announce (Acquire: it then sees every change whose bit it cleared). Work
    /// announced from here on sets the word again, so none is lost.
    pub fn take_work(&self) -> u32 {
        self.work.swap(0, Ordering::Acquire)
    }

    /// Marks the thread to end at its next kernel exit (`execve` replaced it).
    pub fn mark_leaving(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        self.add_work(work::LEAVE);
    }

    /// Sets the PKRU this thread gets when it next runs: a tracer's `SETREGSET`, while the
    /// thread is stopped (switched out). Linux: `target->thread.pkru = …`.
    pub fn set_saved_pkru(&self, pkru: Pkru) {
        self.saved_pkru.store(pkru.bits(), Ordering::Relaxed);
    }
}

/// The thread running on this CPU. Panics if none has been installed (a kernel bug).
#[inline]
pub fn current() -> Arc<Thread> {
    try_current().expect("no current thread on this CPU")
}

/// Runs `f` with the thread running on this CPU, borrowed (no reference count taken: the
/// cheap way for a system call that only reads a field or takes a lock). `f` must not block,
/// yield or exit — anything that switches threads; take [`current`] for that.
#[inline(always)]
pub fn with_current<R>(f: impl FnOnce(&Thread) -> R) -> R {
    percpu::with_current_thread(|t| f(t.expect("no current thread on this CPU")))
}

/// The thread running on this CPU, if any.
#[inline]
pub fn try_current() -> Option<Arc<Thread>> {
    CURRENT.get()
}

fn set_current(thread: Arc<Thread>) -> Option<Arc<Thread>> {
    percpu::this_cpu().set_current(Arc::as_ptr(&thread), thread.tid, &thread.work);
    CURRENT.replace(thread)
}

/// The PKRU part of a context switch from `prev` to `next`. Linux: `x86_pkru_load()`.
///
/// * Without OSPKE: nothing (no PKRU instruction may run).
/// * Save: `prev`'s live PKRU goes into its `saved_pkru` (RDPKRU is cheap).
/// * Restore: WRPKRU `next`'s value — only if it differs from what the register holds, because
///   WRPKRU is comparatively slow. (Linux compares `prev->pkru != next->pkru`; pikku compares
///   with the register it just read, which is the same value.)
/// * Kernel-only threads (the idle loop) are no exception, as in Linux: kernel code never
///   depends on PKRU (it never restricts the kernel's own pages), and an idle thread's saved
///   value is simply what the register held when it last left — so user A → idle → user A
///   costs no WRPKRU unless A's PKRU changed in between.
///
/// One OSPKE test, one RDPKRU, one store, one compare, no lock: [`pkru::switch`], which
/// `make trace` lists instruction by instruction (`docs/trace.md`, "The PKRU part of a context
/// switch").
#[inline]
pub fn switch_pkru(prev: &Thread, next: &Thread) {
    pkru::switch(&prev.saved_pkru, &next.saved_pkru);
}

/// Makes `thread` current on this CPU (PKRU, address space), runs `f` as it, then switches
/// back to whatever ran before. Returns what `f` returns.
pub fn run_as<R>(thread: &Arc<Thread>, f: impl FnOnce() -> R) -> R {
    let cpu = percpu::this_cpu();
    let prev = CURRENT.replace(thread.clone());
    SWITCHES.inc();
    match prev.as_deref() {
        Some(prev) => switch_pkru(prev, thread),
        None => pkru::write(thread.saved_pkru()),
    }
    crate::mm::tlb::switch_mm(&thread.mm);
    cpu.set_current(Arc::as_ptr(thread), thread.tid, &thread.work);

    let result = f();

    let ours = CURRENT.take();
    match prev {
        Some(prev) => {
            SWITCHES.inc();
            match ours.as_deref() {
                Some(ours) => switch_pkru(ours, &prev),
                None => pkru::write(prev.saved_pkru()),
            }
            crate::mm::tlb::switch_mm(&prev.mm);
            cpu.set_current(Arc::as_ptr(&prev), prev.tid, &prev.work);
            CURRENT.replace(prev);
        }
        None => {
            if let Some(ours) = ours {
                ours.set_saved_pkru(pkru::read());
            }
            crate::mm::tlb::leave_mm();
            cpu.set_current(core::ptr::null(), 0, &percpu::NO_WORK);
        }
    }
    result
}

/// Installs `thread` as this CPU's current thread for good, and as its idle thread (the boot
/// thread on CPU 0; an AP's own idle thread).
pub fn install_idle_thread(thread: Arc<Thread>) {
    let cpu = percpu::this_cpu();
    SWITCHES.inc();
    pkru::write(thread.saved_pkru());
    crate::mm::tlb::switch_mm(&thread.mm);
    thread.on_cpu.store(true, Ordering::Relaxed);
    thread.cpu.store(cpu.cpu_id, Ordering::Relaxed);
    cpu.set_current(Arc::as_ptr(&thread), thread.tid, &thread.work);
    sched::set_idle(thread.clone());
    CURRENT.replace(thread);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::as_fresh_program;
    use crate::syscall::{decode, dispatch, nr};
    use ktest_macros::ktest;

    /// Two threads of one program: one key map, two PKRUs.
    #[ktest(needs = pku)]
    fn threads_share_the_key_map_but_not_pkru() {
        as_fresh_program(|first| {
            let second = Thread::new_program(first.mm.clone());
            // The first thread allocates key 1 with full access: only its own PKRU opens it.
            let key = decode(dispatch(nr::PKEY_ALLOC, [0, 0, 0, 0, 0, 0])).unwrap();
            assert_eq!(key, 1);
            assert_eq!(pkru::read().bits() & 0b1100, 0, "first thread: key 1 open");
            let seen_by_second = run_as(&second, || {
                let pkru_there = pkru::read().bits();
                // Same address space: the second thread sees key 1 allocated and can free it.
                let freed = decode(dispatch(nr::PKEY_FREE, [1, 0, 0, 0, 0, 0]));
                (pkru_there, freed)
            });
            assert_eq!(seen_by_second, (0x5555_5554, Ok(0)), "second thread: its own PKRU, the shared map");
            assert_eq!(pkru::read().bits() & 0b1100, 0, "first thread's PKRU survived the switches");
            assert!(decode(dispatch(nr::PKEY_FREE, [1, 0, 0, 0, 0, 0])).is_err(), "freed by the sibling");
        });
    }

    #[ktest(needs = pku)]
    fn a_cloned_thread_starts_with_its_creators_live_pkru() {
        as_fresh_program(|first| {
            pkru::write(Pkru::from_bits(0x0000_0030));
            let child = Thread::clone_current(first.mm.clone());
            assert_eq!(child.saved_pkru().bits(), 0x30);
            let inside = run_as(&child, || pkru::read().bits());
            assert_eq!(inside, 0x30);
        });
    }

    #[ktest(needs = pku)]
    fn switching_between_equal_pkrus_executes_no_wrpkru() {
        as_fresh_program(|first| {
            let twin = Thread::new_program(first.mm.clone());
            let done = pkru::WRPKRU_DONE.here();
            let switches = SWITCHES.here();
            for _ in 0..10 {
                run_as(&twin, || ());
            }
            assert_eq!(SWITCHES.here(), switches + 20);
            assert_eq!(pkru::WRPKRU_DONE.here(), done, "both threads hold 0x55555554");
            let other = Thread::with_pkru(first.mm.clone(), Pkru::ALL_OPEN);
            run_as(&other, || assert_eq!(pkru::read(), Pkru::ALL_OPEN));
            assert_eq!(pkru::WRPKRU_DONE.here(), done + 2, "one WRPKRU in, one out");
        });
    }
}

/// A new thread or process starts with a copy of its creator's live FPU/SSE/AVX state (Linux:
/// `fpu_clone()`).
fn inherit_fpu(parent: &Thread, child: &Thread) {
    if let (Some(mine), Some(theirs)) = (&parent.fpu, &child.fpu) {
        let mut mine = mine.lock();
        mine.save();
        *theirs.lock() = mine.duplicate();
    }
}

/// `clone()` flags pikku looks at (`include/uapi/linux/sched.h`).
pub mod clone_flags {
    pub const CLONE_VM: u64 = 0x0000_0100;
    pub const CLONE_SIGHAND: u64 = 0x0000_0800;
    pub const CLONE_THREAD: u64 = 0x0001_0000;
    pub const CLONE_SETTLS: u64 = 0x0008_0000;
    pub const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
    pub const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
    pub const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
}

/// A new thread in the caller's process (Linux `copy_process()` for `CLONE_VM | CLONE_THREAD`):
/// the same address space and files, the caller's registers with `rax = 0` and the new stack,
/// the caller's *live* PKRU (Linux `copy_thread()`: `p->thread.pkru = read_pkru()`), a copy of
/// the caller's FPU state, and the TLS and tid pointers `clone` asked for. Returns the new tid.
pub fn clone_thread(parent_frame: &TrapFrame, flags: u64, stack: u64, parent_tid: u64, child_tid: u64, tls: u64) -> Result<u64, pkeys::Errno> {
    use clone_flags::*;
    use pkeys::Errno;
    // Linux's consistency rules: a thread shares signal handlers, handlers need a shared VM.
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_VM == 0 {
        // A new process (fork-style clone; the low byte is the exit signal, SIGCHLD).
        return fork_process(parent_frame);
    }
    if flags & CLONE_THREAD == 0 {
        crate::log_warn_ratelimited!("clone(CLONE_VM) without CLONE_THREAD (a vfork-like process) is not supported: -ENOSYS");
        return Err(Errno::ENOSYS);
    }
    let parent = current();
    let mut frame = parent_frame.clone();
    frame.rax = 0;
    if stack != 0 {
        frame.rsp = stack;
    }
    let (task, tid, kstack) = new_task_resources()?;
    let child = Thread::new_user(parent.process.clone(), parent.mm.clone(), pkru::read(), &frame, tid, kstack, Some(task));
    inherit_fpu(&parent, &child);
    child.affinity.store(parent.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    *child.mempolicy.lock() = *parent.mempolicy.lock();
    child.fs_base.store(if flags & CLONE_SETTLS != 0 { tls } else { cpu::fs_base() }, Ordering::Relaxed);
    // The signal mask is inherited, as by `fork` (Linux: `dup_task_struct()` copies `blocked`).
    // It matters: glibc and musl block every signal around `clone` and let the new thread
    // unblock them once its thread pointer is set up — a signal delivered before that would
    // run a handler on a thread without TLS.
    child.blocked.store(parent.blocked.load(Ordering::Relaxed), Ordering::Relaxed);
    if flags & CLONE_PARENT_SETTID != 0 {
        crate::mm::user::copy_to_user(parent_tid, &tid.to_le_bytes())?;
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        crate::mm::user::copy_to_user(child_tid, &tid.to_le_bytes())?;
    }
    if flags & CLONE_CHILD_CLEARTID != 0 {
        child.clear_child_tid.store(child_tid, Ordering::Relaxed);
    }
    parent.process.live_threads.fetch_add(1, Ordering::AcqRel);
    parent.process.thread_ids.lock().push(tid);
    sched::spawn(child);
    Ok(tid as u64)
}

/// What every new task needs before anything is committed (Linux: the checks at the start of
/// `copy_process()`): memory for its kernel objects (`ENOMEM`), a task slot under
/// `threads-max` (`EAGAIN`), then its id, and a kernel stack (`ENOMEM`). The id is taken only
/// once the limit check passed, so a refused `fork` uses up no pid, as on Linux.
fn new_task_resources() -> Result<(limits::TaskSlot, u32, KernelStack), pkeys::Errno> {
    crate::mm::heap::reserve(limits::TASK_HEAP_BYTES)?;
    let task = limits::TaskSlot::take()?;
    let tid = Thread::allocate_tid();
    let kstack = KernelStack::new(tid).ok_or(pkeys::Errno::ENOMEM)?;
    Ok((task, tid, kstack))
}

/// `fork()`: a new process running a copy of the caller. Linux: `kernel_clone()` without
/// `CLONE_VM`. The child gets a copy-on-write copy of the address space — with the key
/// allocation map, the execute-only key and every PTE's key (`Mm::fork`, Linux
/// `arch_dup_pkeys()`) — the fd table, the caller's registers with `rax = 0`, its FPU state,
/// FS base and **live PKRU** (Linux `copy_thread()`). Only the calling thread is copied.
/// Returns the child's pid; `ENOMEM` (the parent untouched) if memory runs out.
pub fn fork_process(parent_frame: &TrapFrame) -> Result<u64, pkeys::Errno> {
    let parent = current();
    let (task, pid, kstack) = new_task_resources()?;
    // The child's copy of the memory areas comes from the heap too.
    let areas = parent.mm.read().vmas.len();
    crate::mm::heap::reserve(areas.saturating_mul(crate::mm::area::AREA_HEAP_BYTES))?;
    let child_mm = parent.mm.write().fork()?.into_ref();
    let process = parent.process.fork_child(pid, task);
    let mut frame = parent_frame.clone();
    frame.rax = 0;
    let child = Thread::new_user(process, child_mm, pkru::read(), &frame, pid, kstack, None);
    inherit_fpu(&parent, &child);
    child.affinity.store(parent.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    *child.mempolicy.lock() = *parent.mempolicy.lock();
    child.fs_base.store(cpu::fs_base(), Ordering::Relaxed);
    child.blocked.store(parent.blocked.load(Ordering::Relaxed), Ordering::Relaxed);
    sched::spawn(child);
    Ok(pid as u64)
}

/// The hardware-interrupt hook. IRQ 0 is the scheduler's tick; the PIC is acknowledged before
/// anything else, because the tick may switch threads and not come back for a while.
pub fn interrupt(frame: &mut TrapFrame, irq: u8) {
    crate::arch::x86_64::timer::end_of_interrupt();
    if irq == 0 {
        sched::tick(frame.interrupted_user_mode());
    }
    if frame.interrupted_user_mode() {
        sched::kernel_exit(frame);
    }
}
