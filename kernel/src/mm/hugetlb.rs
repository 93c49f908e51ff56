//! The 2 MiB huge-page pool behind `/proc/sys/vm/nr_hugepages` — a placeholder.
//!
//! This is the interface `/proc` and `/sys` read and write through (`crate::fs::proc`); the
//! pool itself (2 MiB-aligned contiguous frames, `MAP_HUGETLB`) is another piece of work that
//! replaces this module. Until then there is no pool: asking for N pages reaches 0, which is
//! what Linux reports when it can find no huge page (the write succeeds, the count read back
//! says how many it got). Linux: `mm/hugetlb.c`.

use core::sync::atomic::{AtomicU64, Ordering};

/// Pages in the pool. Atomic: any CPU may read it; this placeholder never changes it.
static NR_HUGEPAGES: AtomicU64 = AtomicU64::new(0);

/// Pages in the pool (`/proc/sys/vm/nr_hugepages`).
pub fn nr_hugepages() -> u64 {
    NR_HUGEPAGES.load(Ordering::Relaxed)
}

/// Asks for a pool of `n` pages; returns the count actually reached (always 0 here: no pool).
/// Linux: `set_max_huge_pages()`.
pub fn set_nr_hugepages(_n: u64) -> u64 {
    // No pool to grow: however many pages were asked for, the pool keeps what it has.
    NR_HUGEPAGES.load(Ordering::Relaxed)
}

/// Pages in the pool not mapped by anyone (`free_hugepages`).
pub fn free_hugepages() -> u64 {
    nr_hugepages()
}
