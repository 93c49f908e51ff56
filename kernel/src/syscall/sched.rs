//! CPU affinity: `sched_setaffinity`, `sched_getaffinity`, `getcpu` — which CPUs a thread may
//! run on, and where it runs.
//!
//! A mask is a little-endian array of `unsigned long`s, bit n = CPU n (Linux's `cpumask_t`).
//! pikku's CPUs are at most 64 ([`percpu::MAX_CPUS`]), so every mask fits one 8-byte word,
//! which is also the size Linux reports (`cpumask_size()` with `nr_cpu_ids` ≤ 64). Programs
//! learn the CPU count from `sched_getaffinity` (musl's `sysconf(_SC_NPROCESSORS_ONLN)`, glibc's
//! `get_nprocs_sched`), so its answer is the machine's CPU count as programs see it.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use pkeys::Errno;

use crate::arch::x86_64::percpu;
use crate::mm::user;
use crate::task::{self, sched, Thread};

/// Bytes of a CPU mask: one `unsigned long` (Linux `cpumask_size()` for up to 64 CPUs).
const MASK_BYTES: u32 = 8;

/// The number of CPU ids (Linux `nr_cpu_ids`): one past the highest online CPU.
fn nr_cpu_ids() -> u32 {
    64 - percpu::online_mask().leading_zeros()
}

/// What a pid names: a live thread, or a process that has exited but is not reaped yet (a
/// zombie is still found by its pid on Linux, until `wait` releases it).
enum Target {
    Thread(Arc<Thread>),
    Zombie,
}

/// The task `pid` names: 0 = the caller, otherwise any thread id (Linux
/// `find_process_by_pid()`, which looks up threads too, and zombies).
fn target(pid: u64) -> Result<Target, Errno> {
    let pid = pid as u32 as i32;
    if pid == 0 {
        return Ok(Target::Thread(task::current()));
    }
    if pid < 0 {
        return Err(Errno::ESRCH);
    }
    if let Some(thread) = task::find_thread(pid as u32) {
        return Ok(Target::Thread(thread));
    }
    match task::process::find(pid as u32) {
        Some(_) => Ok(Target::Zombie),
        None => Err(Errno::ESRCH),
    }
}

/// `sched_getaffinity(pid, len, mask)` (204). Linux's order: `len` too small for `nr_cpu_ids`
/// bits, or not a multiple of 8 → `EINVAL`; unknown pid → `ESRCH`; the copy → `EFAULT`.
/// Returns the bytes written, `min(len, 8)`. The mask is the thread's affinity and the online
/// CPUs (Linux `sched_getaffinity()`: `p->cpus_mask & cpu_active_mask`). `len` is an
/// `unsigned int`: only its low 32 bits count, and `len * 8` wraps as in C.
pub fn sys_sched_getaffinity(pid: u64, len: u64, mask: u64) -> Result<u64, Errno> {
    let len = len as u32;
    if len.wrapping_mul(8) < nr_cpu_ids() || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    // A zombie's mask: pikku keeps none once the thread is gone; every CPU.
    let affinity = match target(pid)? {
        Target::Thread(thread) => thread.affinity.load(Ordering::Relaxed),
        Target::Zombie => u64::MAX,
    };
    let bits = affinity & percpu::online_mask();
    let n = len.min(MASK_BYTES) as usize;
    user::copy_to_user(mask, &bits.to_le_bytes()[..n])?;
    Ok(n as u64)
}

/// `sched_setaffinity(pid, len, mask)` (203). Linux's order: the copy of `min(len, 8)` bytes
/// (a shorter mask is zero-extended, Linux `get_user_cpu_mask()`) → `EFAULT`; unknown pid →
/// `ESRCH`; another user's thread without root → `EPERM`; no online CPU in the mask →
/// `EINVAL`. When the caller takes itself off the CPU it runs on, it has moved by the time the
/// call returns (Linux `__set_cpus_allowed_ptr()` migrates before returning); another thread
/// running on a CPU it may no longer use is asked to move with the reschedule IPI.
pub fn sys_sched_setaffinity(pid: u64, len: u64, mask: u64) -> Result<u64, Errno> {
    let n = (len as u32).min(MASK_BYTES) as usize;
    let mut bytes = [0u8; 8];
    user::copy_from_user(&mut bytes[..n], mask)?;
    let wanted = u64::from_le_bytes(bytes);
    let Target::Thread(thread) = target(pid)? else {
        // A zombie runs nowhere again: there is nothing to move (Linux accepts the call).
        return if wanted & percpu::online_mask() == 0 { Err(Errno::EINVAL) } else { Ok(0) };
    };
    let me = task::current();
    let (my_uid, their_uid) = (me.process.uid.load(Ordering::Relaxed), thread.process.uid.load(Ordering::Relaxed));
    if my_uid != 0 && my_uid != their_uid {
        return Err(Errno::EPERM);
    }
    let allowed = wanted & percpu::online_mask();
    if allowed == 0 {
        return Err(Errno::EINVAL);
    }
    thread.affinity.store(allowed, Ordering::SeqCst);
    if Arc::ptr_eq(&thread, &me) {
        drop(thread);
        drop(me);
        sched::migrate_if_disallowed();
    } else {
        let cpu = thread.cpu.load(Ordering::Relaxed);
        if allowed & (1 << cpu) == 0 && thread.on_cpu.load(Ordering::Relaxed) {
            crate::arch::x86_64::ipi::send(cpu as usize, crate::arch::x86_64::ipi::Ipi::Reschedule);
        }
    }
    Ok(0)
}

/// `getcpu(cpu, node, cache)` (309): the CPU the caller runs on and its NUMA node
/// ([`crate::mm::numa::cpu_node`]), each written only if its pointer is not NULL; the third argument is unused
/// since Linux 2.6.24. Linux: `sys_getcpu()`.
pub fn sys_getcpu(cpu: u64, node: u64, _cache: u64) -> Result<u64, Errno> {
    let here = percpu::this_cpu().cpu_id;
    if cpu != 0 {
        user::copy_to_user(cpu, &here.to_le_bytes())?;
    }
    if node != 0 {
        user::copy_to_user(node, &(crate::mm::numa::cpu_node(here as usize).index() as u32).to_le_bytes())?;
    }
    Ok(0)
}
