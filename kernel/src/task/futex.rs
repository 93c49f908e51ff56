//! Futexes: `FUTEX_WAIT` and `FUTEX_WAKE`, the primitive under every pthread mutex, condition
//! variable and `pthread_join`.
//!
//! A wait queue per (address space, user address). `FUTEX_WAIT(addr, val)` re-reads `*addr`
//! under the queue lock and sleeps only if it still holds `val` (otherwise `EAGAIN`), so a wake
//! between the program's check and the syscall is never lost — on one CPU with a
//! non-preemptible kernel the read and the enqueue cannot be separated. `FUTEX_WAKE(addr, n)`
//! wakes up to `n` waiters in FIFO order. Linux: `kernel/futex/`.

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

/// `FUTEX_WAIT`: sleep while `*addr == val`, at most `timeout_us` (relative) if given. The
/// caller has checked the address (aligned; for a shared futex, the page pin).
pub fn wait(addr: u64, val: u32, timeout_us: Option<u64>) -> Result<u64, Errno> {
    let mut word = [0u8; 4];
    crate::mm::user::copy_from_user(&mut word, addr)?;
    if u32::from_le_bytes(word) != val {
        return Err(Errno::EAGAIN);
    }
    let thread = current();
    QUEUES.lock().entry(key(&thread.mm, addr)).or_default().push_back(thread.clone());
    match timeout_us {
        Some(us) => sched::arm_deadline(time::micros_since_boot().saturating_add(us)),
        None => thread.wake_reason.store(WakeReason::None as u8, core::sync::atomic::Ordering::Relaxed),
    }
    drop(thread);
    match sched::block_current() {
        WakeReason::TimedOut => Err(Errno::ETIMEDOUT),
        _ => Ok(0),
    }
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

/// Removes `thread` from any wait queue (its deadline passed).
pub fn forget(thread: &Arc<Thread>) {
    let mut queues = QUEUES.lock();
    for q in queues.values_mut() {
        q.retain(|t| !Arc::ptr_eq(t, thread));
    }
    queues.retain(|_, q| !q.is_empty());
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
