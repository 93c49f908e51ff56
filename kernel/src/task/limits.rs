//! The task limit: Linux's `threads-max` (`/proc/sys/kernel/threads-max`).
//!
//! Linux sizes it at boot so that kernel stacks can take at most an eighth of RAM:
//! `max_threads = totalram / (8 × THREAD_SIZE)` with `THREAD_SIZE` = 16 KiB, clamped to at
//! least 20 (Linux: `set_max_threads()`) — about 3,800 at 512 MiB. A *task* is what Linux
//! counts in `nr_threads`: every thread, and a process until its parent reaps it (a zombie
//! still counts). `fork`/`clone` at the limit fail with `EAGAIN` (Linux: `copy_process()`),
//! for root as for anyone — root is exempt from `RLIMIT_NPROC`, not from `threads-max`.
//!
//! A [`TaskSlot`] is one counted task; dropping it gives the slot back. A process holds one
//! from `fork` until it is freed (after `wait4` reaped it and its threads are gone); each
//! further thread holds its own until it is freed.

use core::sync::atomic::{AtomicUsize, Ordering};
use pkeys::Errno;
use spin::Once;

use crate::arch::x86_64::context::{KERNEL_STACK_SIZE, MAX_KERNEL_STACKS};
use crate::mm::frame;

/// Linux's floor (`MIN_THREADS`).
const MIN_TASKS: usize = 20;
/// Linux's `THREAD_SIZE` on x86-64, which its formula divides by (pikku's kernel stacks have
/// the same size).
const LINUX_THREAD_SIZE: usize = 16 * 1024;
const _: () = assert!(KERNEL_STACK_SIZE == LINUX_THREAD_SIZE);

static MAX_TASKS: Once<usize> = Once::new();
static TASKS: AtomicUsize = AtomicUsize::new(0);

/// `threads-max` for this machine (computed once, from the usable RAM). Never above the
/// number of kernel stacks the stack region holds, with room for `execve`'s successor threads.
pub fn max_tasks() -> usize {
    *MAX_TASKS.call_once(|| {
        let ram = frame::total_usable() * 4096;
        (ram / (8 * LINUX_THREAD_SIZE)).clamp(MIN_TASKS, MAX_KERNEL_STACKS / 2)
    })
}

/// Tasks that exist now.
pub fn tasks() -> usize {
    TASKS.load(Ordering::Relaxed)
}

/// One counted task (see the module docs).
#[derive(Debug)]
pub struct TaskSlot(());

impl TaskSlot {
    /// Counts one more task, or `EAGAIN` at `threads-max`.
    pub fn take() -> Result<TaskSlot, Errno> {
        let max = max_tasks();
        TASKS
            .try_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .map(|_| TaskSlot(()))
            .map_err(|_| Errno::EAGAIN)
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Linux's number of resource limits (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: u32 = 16;

/// The resource limits every process has, as `(soft, hard)` — the values Linux gives init
/// (`INIT_RLIMITS` with `max_threads` filled in by `set_max_threads()` and `fork_init()`), and
/// the bounds pikku actually applies where it has them: `RLIMIT_NOFILE` is the fd table's size
/// ([`crate::fs::file::MAX_FDS`]), `RLIMIT_NPROC` and `RLIMIT_SIGPENDING` are `threads-max / 2`,
/// `RLIMIT_STACK` the 8 MiB stack area. They never change (`setrlimit` that would is `EPERM`).
/// Linux: `include/asm-generic/resource.h`.
pub fn rlimit(resource: u32) -> (u64, u64) {
    const RLIMIT_STACK: u32 = 3;
    const RLIMIT_CORE: u32 = 4;
    const RLIMIT_NPROC: u32 = 6;
    const RLIMIT_NOFILE: u32 = 7;
    const RLIMIT_MEMLOCK: u32 = 8;
    const RLIMIT_SIGPENDING: u32 = 11;
    const RLIMIT_MSGQUEUE: u32 = 12;
    const RLIMIT_NICE: u32 = 13;
    const RLIMIT_RTPRIO: u32 = 14;
    let half_tasks = (max_tasks() / 2) as u64;
    match resource {
        RLIMIT_STACK => (crate::mm::area::STACK_SIZE, RLIM_INFINITY),
        RLIMIT_CORE => (0, RLIM_INFINITY),
        RLIMIT_NPROC | RLIMIT_SIGPENDING => (half_tasks, half_tasks),
        // Linux: INR_OPEN_CUR, INR_OPEN_MAX.
        RLIMIT_NOFILE => (crate::fs::file::MAX_FDS as u64, 4096),
        RLIMIT_MEMLOCK => (8 << 20, 8 << 20),
        RLIMIT_MSGQUEUE => (819_200, 819_200),
        RLIMIT_NICE | RLIMIT_RTPRIO => (0, 0),
        _ => (RLIM_INFINITY, RLIM_INFINITY),
    }
}

/// Heap bytes a new task may need (its `Thread`, FPU area, `Process`, signal handlers, a
/// copy of the fd table), asked for with `heap::reserve` before a task is made, so that a
/// full heap means `ENOMEM` from `fork`/`clone` rather than a panic. Measured: 3,986 threads
/// grew the heap by about 10 MiB, some 2.6 KiB each (the XSAVE area is most of it); a process
/// adds its `Process`, handlers, fd table and areas.
pub const TASK_HEAP_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn threads_max_follows_linuxs_formula_and_binds() {
        let max = max_tasks();
        let expected = frame::total_usable() * 4096 / (128 * 1024);
        assert_eq!(max, expected.clamp(MIN_TASKS, MAX_KERNEL_STACKS / 2));
        assert!(max >= 1000, "1,000 threads must fit (512 MiB gives about 3,800): {max}");
        let before = tasks();
        let mut slots = alloc::vec::Vec::new();
        while let Ok(slot) = TaskSlot::take() {
            slots.push(slot);
        }
        assert_eq!(tasks(), max);
        assert_eq!(TaskSlot::take().err(), Some(Errno::EAGAIN));
        drop(slots);
        assert_eq!(tasks(), before, "every slot given back");
    }
}
