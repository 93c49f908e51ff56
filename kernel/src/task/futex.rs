//! Futexes: `FUTEX_WAIT` and `FUTEX_WAKE`, the primitive under every pthread mutex, condition
//! variable and `pthread_join`, and their `_BITSET` forms (glibc's condition variables).
//!
//! A wait queue per (address space, user address). `FUTEX_WAIT(addr, val)` sleeps only if
//! `*addr` still holds `val` (otherwise `EAGAIN`), and a wake that comes after the program
//! changed the word must never be lost — even when the waker runs on another CPU at the same
//! moment. The order that guarantees it: the waiter announces its sleep and *queues itself
//! first*, and only then reads the word; the waker changes the word first and only then looks
//! at the queue. So either the waiter reads the new value (and leaves), or the waker finds it
//! queued (and wakes it — a wake between the queueing and the sleep only cancels the sleep,
//! see `sched::block_current`). Linux gets the same order by counting the waiter in its hash
//! bucket (`futex_q_lock()`) before `futex_get_value_locked()`; pikku's queue insertion is that
//! count, and the read need not happen under the queue's lock — which is just as well, since a
//! read of user memory may fault, and the fault path takes the address space's lock, which
//! comes before `QUEUES` in the lock order. `FUTEX_WAKE(addr, n)` takes up to `n` waiters off
//! the queue in FIFO order and wakes them — with a bitset, only waiters whose own bitset shares
//! a bit with it (plain WAIT and WAKE use all ones, Linux's `FUTEX_BITSET_MATCH_ANY`); a waiter
//! woken any other way takes itself off (Linux: `unqueue_me()`). Linux: `kernel/futex/`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use pkeys::Errno;
use crate::sync::Mutex;

use super::sched::{self, WakeReason};
use super::{current, Thread};
use crate::arch::x86_64::time;
use crate::mm::address_space::MmRef;

type Key = (usize, u64);

/// A thread waiting on a futex, and the bitset it waits with (Linux: `futex_q.bitset`).
struct Waiter {
    thread: Arc<Thread>,
    bitset: u32,
}

static QUEUES: Mutex<BTreeMap<Key, VecDeque<Waiter>>> = Mutex::new(BTreeMap::new());

fn key(mm: &MmRef, addr: u64) -> Key {
    (Arc::as_ptr(mm) as usize, addr)
}

/// `FUTEX_WAIT_BITSET`: sleep while `*addr == val`, until `deadline_us` (microseconds since
/// boot) if given, to be woken by a wake whose bitset meets `bitset` (non-zero). The caller
/// has checked the address (aligned; for a shared futex, the page pin).
pub fn wait(addr: u64, val: u32, deadline_us: Option<u64>, bitset: u32) -> Result<u64, Errno> {
    let thread = current();
    let k = key(&thread.mm, addr);
    sched::prepare_to_wait();
    QUEUES.lock().entry(k).or_default().push_back(Waiter { thread: thread.clone(), bitset });
    if let Some(deadline) = deadline_us {
        sched::arm_deadline(deadline);
    }
    // Queued: now the word (see the module doc for why in this order).
    let mut word = [0u8; 4];
    let read = crate::mm::user::copy_from_user(&mut word, addr);
    if read.is_err() || u32::from_le_bytes(word) != val {
        sched::finish_wait();
        unqueue(k, &thread);
        read?;
        return Err(Errno::EAGAIN);
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
            *current().signals.restart.lock() = Some(crate::signal::Restart::Futex { uaddr: addr, val, deadline_us, bitset });
            Err(Errno::ERESTART_RESTARTBLOCK)
        }
        None => Err(Errno::ERESTARTSYS),
    }
}

/// Takes `thread` off the queue of `k`; `false` if it was not there (a wake took it).
fn unqueue(k: Key, thread: &Arc<Thread>) -> bool {
    let mut queues = QUEUES.lock();
    let Some(q) = queues.get_mut(&k) else { return false };
    let Some(i) = q.iter().position(|w| Arc::ptr_eq(&w.thread, thread)) else { return false };
    q.remove(i);
    if q.is_empty() {
        queues.remove(&k);
    }
    true
}

/// `FUTEX_WAKE_BITSET`: wakes up to `n` waiters on `addr` whose bitset meets `bitset`, first
/// come first; returns how many. Linux: `futex_wake()`.
pub fn wake(mm: &MmRef, addr: u64, n: u32, bitset: u32) -> u64 {
    let mut woken = 0;
    let mut queues = QUEUES.lock();
    let k = key(mm, addr);
    while woken < n as u64 {
        let Some(q) = queues.get_mut(&k) else { break };
        let Some(i) = q.iter().position(|w| w.bitset & bitset != 0) else { break };
        let Some(w) = q.remove(i) else { break };
        sched::wake(w.thread, WakeReason::Woken);
        woken += 1;
    }
    if queues.get(&k).is_some_and(VecDeque::is_empty) {
        queues.remove(&k);
    }
    woken
}

/// Linux's `FUTEX_BITSET_MATCH_ANY`: the bitset of plain `FUTEX_WAIT` and `FUTEX_WAKE`.
pub const MATCH_ANY: u32 = u32::MAX;

/// Removes every thread of process `pid` (but `except`) from the wait queues.
pub fn forget_process(pid: u32, except: Option<u32>) {
    let mut queues = QUEUES.lock();
    for q in queues.values_mut() {
        q.retain(|w| w.thread.process.pid != pid || Some(w.thread.tid) == except);
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
