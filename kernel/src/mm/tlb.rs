//! TLB shootdown: what a CPU does when another CPU tells it that page tables it may cache have
//! changed (the TLB-shootdown IPI, `arch::x86_64::apic::TLB_SHOOTDOWN_VECTOR`).
//!
//! For now the whole TLB of this CPU is flushed (a CR3 reload, `paging::flush_all`), and the
//! flush is counted. The scheduler across CPUs (issue #15 items 3–4) replaces the body with the
//! ranged, per-address-space flush Linux does in `flush_tlb_func()`; the IPI's wiring stays.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::paging;

/// Shootdown requests served, on all CPUs together (each CPU's own count is in its `PerCpu`).
pub static SHOOTDOWNS_SERVED: AtomicU64 = AtomicU64::new(0);

/// Serves a TLB-shootdown IPI on this CPU (called from the IPI handler, after its EOI).
pub fn shootdown_ipi() {
    paging::flush_all();
    SHOOTDOWNS_SERVED.fetch_add(1, Ordering::Relaxed);
}
