//! TLB shootdown: making every CPU forget a translation before the kernel relies on its absence.
//!
//! A CPU caches translations in its TLB, and nothing in the hardware keeps the caches of
//! different CPUs coherent with the page tables (Intel SDM Vol. 3A §4.10.5 "Propagation of
//! Paging-Structure Changes to Multiple Processors"): after a PTE is downgraded — unmapped,
//! made read-only, given another protection key — a thread of the same address space on
//! another CPU may go on using the old translation until that CPU invalidates it. So the CPU
//! that changed the entry *asks* the others and *waits* until each has invalidated, before it
//! returns to the caller and before it frees any page the old entries pointed at. Linux:
//! `flush_tlb_mm_range()` → `flush_tlb_multi()` → `smp_call_function_many_cond()`.
//!
//! **Mailboxes.** Each (target CPU, initiating CPU) pair has one request slot: the range to
//! invalidate and the page-table root it belongs to (or "kernel", for kernel mappings, which
//! every CPU may cache whatever tree it has loaded). The initiator fills the slot, sets its bit
//! in the target's `PENDING` mask, and sends the shootdown IPI; the target takes the whole mask
//! in one swap, serves every request in it, and counts each initiator's `OUTSTANDING` down. An
//! initiator has at most one shootdown in flight (it waits for it), so its slots are free
//! whenever it starts a new one — no lock is needed anywhere.
//!
//! **Why waiting cannot deadlock.** The kernel runs with interrupts off, so a target may not
//! take the IPI for a long time: it may be spinning on a lock the initiator holds (CPU 0 in
//! `munmap` holds the address space's write lock and waits; CPU 1 faulted and waits for that
//! lock). Therefore every place a CPU waits with interrupts off serves its mailbox while it
//! waits: every kernel lock is a [`super::sync`] lock, whose spin loop calls [`serve`], and so
//! do the initiator's own wait (two CPUs may shoot at each other at once) and the scheduler's
//! wait for a thread to leave another CPU. A target that is halted, or running user code, takes
//! the IPI at once. The IPI itself stays pending in the target's local APIC if its mailbox was
//! already served from a spin loop; the handler then finds the mask empty, which is harmless.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::paging;
use super::percpu::{self, MAX_CPUS};

/// A request slot's `root` for kernel mappings: invalidate whatever tree is loaded.
const KERNEL: u64 = u64::MAX;

/// One request from one initiator to one target: invalidate `[start, end)` if `root` is the
/// tree loaded on the target (a CPU that loaded another tree since has no entries of this one
/// left: a CR3 write flushes every non-global entry, SDM Vol. 3A §4.10.4.1 "Operations that
/// Invalidate TLBs and Paging-Structure Caches").
struct Request {
    root: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
}

/// `REQUESTS[target][initiator]`: written by the initiator only while its bit in the target's
/// `PENDING` is clear and it has not been acknowledged; read by the target after it took the bit.
static REQUESTS: [[Request; MAX_CPUS]; MAX_CPUS] = [const {
    [const { Request { root: AtomicU64::new(0), start: AtomicU64::new(0), end: AtomicU64::new(0) } }; MAX_CPUS]
}; MAX_CPUS];
/// Per target: a bit for every initiator whose request it has not taken yet.
static PENDING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per initiator: how many targets have not yet acknowledged its shootdown.
static OUTSTANDING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Set once per-CPU data (GS) works on the boot CPU: before that no CPU can have a mailbox.
static READY: AtomicBool = AtomicBool::new(false);

/// Shootdowns this CPU started that needed another CPU, and requests it served for others.
pub static SENT: percpu::Counter = percpu::Counter::new();
pub static SERVED: percpu::Counter = percpu::Counter::new();

/// Lets [`serve`] run (once per-CPU data works on the boot CPU).
pub fn init() {
    READY.store(true, Ordering::Release);
}

/// Invalidates `[start, end)` of the tree `root` (or of the kernel's mappings, with `None`) on
/// this CPU and on every CPU in `others` (a mask of CPU indices, this CPU's bit ignored), and
/// returns once all of them have. Linux: `flush_tlb_mm_range()` / `flush_tlb_kernel_range()`.
pub fn shoot(others: u64, root: Option<u64>, start: u64, end: u64) {
    paging::invalidate_range(start, end);
    if !READY.load(Ordering::Acquire) {
        return;
    }
    let me = percpu::this_cpu().cpu_id as usize;
    let targets = others & !(1 << me);
    if targets == 0 {
        return;
    }
    SENT.add(1);
    OUTSTANDING[me].store(targets.count_ones(), Ordering::Relaxed);
    for target in cpus(targets) {
        let slot = &REQUESTS[target][me];
        slot.root.store(root.unwrap_or(KERNEL), Ordering::Relaxed);
        slot.start.store(start, Ordering::Relaxed);
        slot.end.store(end, Ordering::Relaxed);
        // Release: the target that sees the bit sees the slot.
        PENDING[target].fetch_or(1 << me, Ordering::Release);
        super::ipi::send(target, super::ipi::Ipi::Shootdown);
    }
    while OUTSTANDING[me].load(Ordering::Acquire) != 0 {
        serve();
        core::hint::spin_loop();
    }
}

/// Serves every request waiting in this CPU's mailbox. Called by the shootdown IPI's handler
/// and from every wait loop of the kernel (see the module doc). Takes no lock, so it may run
/// anywhere, even inside another lock's spin loop or inside itself.
pub fn serve() {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    let me = percpu::this_cpu().cpu_id as usize;
    if PENDING[me].load(Ordering::Relaxed) == 0 {
        return;
    }
    let initiators = PENDING[me].swap(0, Ordering::Acquire);
    let loaded = paging::active_root_frame().start_address().as_u64();
    for from in cpus(initiators) {
        let slot = &REQUESTS[me][from];
        let root = slot.root.load(Ordering::Relaxed);
        if root == KERNEL || root == loaded {
            paging::invalidate_range(slot.start.load(Ordering::Relaxed), slot.end.load(Ordering::Relaxed));
        }
        SERVED.add(1);
        // Release: the initiator may reuse the slot (and free the pages) once it sees this.
        OUTSTANDING[from].fetch_sub(1, Ordering::Release);
    }
}

/// The CPU indices whose bits are set in `mask`, lowest first.
fn cpus(mut mask: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (mask != 0).then(|| {
            let cpu = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            cpu
        })
    })
}
