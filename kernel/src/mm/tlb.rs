//! Which address space each CPU has loaded — so that a TLB flush reaches exactly the CPUs that
//! may cache its entries, and no address space is freed while a CPU still translates with it.
//!
//! Each CPU remembers the address space whose tree is in its CR3 ([`switch_mm`] keeps a
//! reference in a per-CPU slot, Linux's `cpu_tlbstate.loaded_mm` / `active_mm`), and each
//! [`Mm`] knows the CPUs that have it loaded ([`Mm::cpus`], Linux's `mm_cpumask()`). A
//! kernel-only thread (the idle loop) keeps whatever tree was loaded — switching a user thread
//! out to idle and back in costs no CR3 write (Linux's "lazy TLB" mode) — but a CPU that is about
//! to halt lets go of it ([`leave_mm`]): otherwise every flush of that address space would wake a
//! sleeping CPU, and a single-threaded program that moved to another CPU would pay a shootdown
//! IPI for nothing. The reference in the slot is what keeps an exited program's tree alive
//! until no CPU translates with it any more.
//!
//! The flush itself: [`Mm::tlb_batch`] → `paging::TlbBatch` → `arch::x86_64::shootdown`.

use core::sync::atomic::Ordering;

use super::address_space::{Mm, MmRef};
use crate::arch::x86_64::{paging, percpu};

/// Each CPU's loaded address space (none: the kernel's own tree).
static LOADED: percpu::CpuLocalArc<crate::sync::RwLock<Mm>> = percpu::CpuLocalArc::new();

/// Loads `next`'s tree on this CPU unless it is loaded already, and takes this CPU out of the
/// previous address space's mask. Linux: `switch_mm_irqs_off()`.
pub fn switch_mm(next: &MmRef) {
    if LOADED.get().is_some_and(|loaded| alloc::sync::Arc::ptr_eq(&loaded, next)) {
        return;
    }
    next.read().activate();
    if let Some(prev) = LOADED.replace(next.clone()) {
        leave(&prev);
    }
}

/// Loads the kernel's own tree and lets go of the user address space this CPU had loaded (a
/// CPU about to halt in the idle loop). Linux: `leave_mm()`.
pub fn leave_mm() {
    if let Some(prev) = LOADED.take() {
        paging::activate_kernel_root();
        leave(&prev);
    }
}

/// Takes this CPU out of `prev`'s mask (its CR3 no longer holds `prev`'s tree, so it caches no
/// entry of it: a CR3 write flushes every non-global entry).
fn leave(prev: &MmRef) {
    let me = 1u64 << percpu::this_cpu().cpu_id;
    prev.read().cpus.fetch_and(!me, Ordering::SeqCst);
}
