//! Futexes: `FUTEX_WAIT` and `FUTEX_WAKE`, the primitive under every pthread mutex, condition
//! variable and `pthread_join`.
//!
//! A wait queue per (address space, user address). `FUTEX_WAIT(addr, val)` re-reads `*addr`
//! and sleeps only if it still holds `val` (otherwise `EAGAIN`), so a wake between the
//! program's check and the syscall is never lost — on one CPU with a non-preemptible kernel
//! nothing can run between the read and the enqueue (several CPUs will need the queue's lock
//! held from the read to the sleep, as Linux holds its hash bucket's). `FUTEX_WAKE(addr, n)`
//! takes up to `n` waiters off the queue in FIFO order and wakes them; a waiter woken any other
//! way takes itself off (Linux: `unqueue_me()`). Linux: `kernel/futex/`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use pkeys::Errno;
use spin::Mutex;

use super::sched::{self, WakeReason};
use super::{current, Thread};
use crate::arch::x86_64::time;
use crate::mm::address_space::MmRef;

type Key = (usize, u64);

static QUEUES: Mutex<BTreeMap<Key, VecDeque<Arc<Thread>>>> = Mutex::new(BTreeMap::new());

fn key(mm: &MmRef, addr: u64) -> Key {
    (Arc::as_ptr(mm) as usize, addr)
}

/// `FUTEX_WAIT`: sleep while `*addr == val`, until `deadline_us` (micros since boot) if given.
/// The caller has checked the address (aligned; for a shared futex, the page pin).
///
/// A signal or a stop ends the wait as on Linux (`futex_wait()`): without a deadline with
/// `ERESTARTSYS` (restarted under `SA_RESTART` or when no handler runs), with one with
/// `ERESTART_RESTARTBLOCK` — `EINTR` if a handler runs, else `restart_syscall` waits again
/// until the same deadline.
pub fn wait(addr: u64, val: u32, deadline_us: Option<u64>) -> Result<u64, Errno> {
    let mut word = [0u8; 4];
    crate::mm::user::copy_from_user(&mut word, addr)?;
    if u32::from_le_bytes(word) != val {
        return Err(Errno::EAGAIN);
    }
    let thread = current();
    let k = key(&thread.mm, addr);
    QUEUES.lock().entry(k).or_default().push_back(thread.clone());
    match deadline_us {
        Some(deadline) => sched::arm_deadline(deadline),
        None => thread.wake_reason.store(WakeReason::None as u8, core::sync::atomic::Ordering::Relaxed),
    }
    drop(thread);
    let reason = sched::block_current();
    // Linux: `unqueue_me()`. A `FUTEX_WAKE` took this thread off the queue and counted it:
    // that is a wake-up, whatever else happened meanwhile. Anything else — the deadline, a
    // signal, the process ending — left it queued, and it must leave now, or a later wake
    // would count it instead of a thread that is still waiting.
    if !unqueue(k, &current()) {
        return Ok(0);
    }
    if reason == WakeReason::TimedOut || deadline_us.is_some_and(|d| time::micros_since_boot() >= d) {
        return Err(Errno::ETIMEDOUT);
    }
    if sched::killed() {
        return Err(Errno::EINTR);
    }
    if !sched::signal_pending() {
        return Ok(0); // a spurious wake-up, which every futex user must handle
    }
    match deadline_us {
        Some(deadline_us) => {
            *current().signals.restart.lock() = Some(crate::signal::Restart::Futex { uaddr: addr, val, deadline_us });
            Err(Errno::ERESTART_RESTARTBLOCK)
        }
        None => Err(Errno::ERESTARTSYS),
    }
}

/// Takes `thread` off the queue of `k`; `false` if it was not there (a wake took it).
fn unqueue(k: Key, thread: &Arc<Thread>) -> bool {
    let mut queues = QUEUES.lock();
    let Some(q) = queues.get_mut(&k) else { return false };
    let Some(i) = q.iter().position(|t| Arc::ptr_eq(t, thread)) else { return false };
    q.remove(i);
    if q.is_empty() {
        queues.remove(&k);
    }
    true
}

/// `FUTEX_WAKE`: wakes up to `n` waiters on `addr`; returns how many.
pub fn wake(mm: &MmRef, addr: u64, n: u32) -> u64 {
    let mut woken = 0;
    let mut queues = QUEUES.lock();
    let k = key(mm, addr);
    while woken < n as u64 {
        let Some(t) = queues.get_mut(&k).and_then(VecDeque::pop_front) else { break };
        sched::wake(t, WakeReason::Woken);
        woken += 1;
    }
    if queues.get(&k).is_some_and(VecDeque::is_empty) {
        queues.remove(&k);
    }
    woken
}

/// Removes every thread of process `pid` (but `except`) from the wait queues.
pub fn forget_process(pid: u32, except: Option<u32>) {
    let mut queues = QUEUES.lock();
    for q in queues.values_mut() {
        q.retain(|t| t.process.pid != pid || Some(t.tid) == except);
    }
    queues.retain(|_, q| !q.is_empty());
}

/// Frees the wait-queue map's last node once no one waits (an empty `BTreeMap` keeps its root
/// node; a new one allocates nothing). See `sched::release_spare_capacity`.
pub fn release_spare_capacity() {
    let mut queues = QUEUES.lock();
    if queues.is_empty() {
        *queues = BTreeMap::new();
    }
}
