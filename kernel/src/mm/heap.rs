//! The kernel heap: what makes `alloc` (`Box`, `Vec`, `BTreeMap`, `Arc`) work — its policy.
//!
//! The heap is a virtual region in the upper half, PML4 slot 448 from [`HEAP_START`]. The
//! allocator itself (first-fit, `linked_list_allocator` behind `GlobalAlloc`) is
//! `arch::x86_64::allocator::GrowingHeap`; this module decides where its memory comes from.
//! [`init`] creates the slot's PDPT (so every address space, which copies the kernel's PML4
//! entries when it is made, sees everything mapped there later) and backs the first
//! [`HEAP_INITIAL`] bytes with frames.
//!
//! **Growth.** When an allocation does not fit, the heap maps the next pages of its region from
//! free frames — at least [`GROW_STEP`] at a time — and tries again, up to [`HEAP_LIMIT`]. Past
//! the limit, or when no frame is free, the allocation fails. A failed allocation through the
//! infallible APIs (`Box::new`, `Vec::push`) would be a kernel panic, so every allocation a
//! program can repeat without bound is either capped by one of the limits in the README's
//! "Limits" table (tasks, fds, pipe buffer, console queue) or asked for first with [`reserve`],
//! which answers `ENOMEM` while the kernel's own [`RESERVE`] would be touched. Pages, once
//! mapped, stay with the heap (the report after `/init` ends says how many it holds).

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};
use pkeys::Errno;
use x86_64::VirtAddr;

use crate::arch::x86_64::allocator::GrowingHeap;
use crate::arch::x86_64::paging;
use crate::mm::frame;

/// Where the heap starts: PML4 slot 448, upper half.
pub const HEAP_START: u64 = 0xffff_e000_0000_0000;
/// Backed at boot: 4 MiB.
pub const HEAP_INITIAL: usize = 4 << 20;
/// The heap grows by at least this much at a time: 1 MiB.
pub const GROW_STEP: usize = 1 << 20;
/// The most the heap may hold: 128 MiB (a quarter of the 512 MiB machine `make run` boots).
pub const HEAP_LIMIT: usize = 128 << 20;
/// Heap bytes [`reserve`] keeps for the kernel's own, infallible allocations: 2 MiB.
pub const RESERVE: usize = 2 << 20;

/// Frames taken for the page tables under the heap's region (they stay, like its pages).
static TABLE_FRAMES: AtomicUsize = AtomicUsize::new(0);

/// The allocator behind `alloc`: a first-fit heap that grows on demand through [`grow`].
#[global_allocator]
static ALLOCATOR: GrowingHeap = GrowingHeap::new(grow);

/// Maps the next pages of the region above `top` — at least `needed` bytes, rounded up to
/// [`GROW_STEP`] — and returns them; an empty (or short) slice past [`HEAP_LIMIT`] or when the
/// frames run out. Runs with the allocator's lock held, so it must not allocate.
fn grow(top: usize, needed: usize) -> &'static mut [MaybeUninit<u8>] {
    let held = top - HEAP_START as usize;
    let want = needed.div_ceil(GROW_STEP).saturating_mul(GROW_STEP);
    let by = want.min(HEAP_LIMIT - held);
    if by < needed {
        return &mut [];
    }
    map(top as u64, by)
}

/// Maps `bytes` of the region from `start`, pages and tables from free frames.
fn map(start: u64, bytes: usize) -> &'static mut [MaybeUninit<u8>] {
    let table_frame = || {
        let f = frame::alloc();
        TABLE_FRAMES.fetch_add(usize::from(f.is_some()), Ordering::Relaxed);
        f
    };
    paging::map_fresh_kernel_region(VirtAddr::new(start), bytes as u64, frame::alloc, table_frame, frame::free)
}

/// Creates the heap's PML4 slot, maps the first [`HEAP_INITIAL`] bytes and gives them to the
/// allocator. Called once at boot, before any address space is made.
pub fn init() {
    let pdpt = frame::alloc().expect("no frame for the heap's PDPT");
    paging::create_kernel_region_slot(VirtAddr::new(HEAP_START), pdpt);
    let memory = map(HEAP_START, HEAP_INITIAL);
    assert_eq!(memory.len(), HEAP_INITIAL, "out of memory while mapping the kernel heap");
    ALLOCATOR.init(memory);
}

/// Bytes of heap in use.
pub fn used() -> usize {
    ALLOCATOR.used()
}

/// Frames the heap holds: its pages and the page tables under them.
pub fn frames_held() -> usize {
    ALLOCATOR.size() / 4096 + TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Asks whether `bytes` more can be allocated without touching the kernel's [`RESERVE`]: what
/// is free in the heap now plus what it can still grow by (up to [`HEAP_LIMIT`], and no more
/// than the free frames). `ENOMEM` otherwise. Called before an allocation a program can repeat
/// (a new task, a pipe), so that running out is an error for the program, never a panic. (Free
/// space may be fragmented; `RESERVE` is the margin for that.)
pub fn reserve(bytes: usize) -> Result<(), Errno> {
    let growable = (HEAP_LIMIT - ALLOCATOR.size()).min(frame::free_count().saturating_mul(4096));
    let room = ALLOCATOR.free() + growable;
    if bytes.saturating_add(RESERVE) <= room {
        Ok(())
    } else {
        Err(Errno::ENOMEM)
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use ktest_macros::ktest;

    #[ktest]
    fn box_vec_and_btreemap_work_and_memory_is_reused() {
        let b = Box::new(41u64);
        assert_eq!(*b + 1, 42);
        let v: Vec<u64> = (0..100_000).collect();
        assert_eq!(v.iter().sum::<u64>(), 99_999 * 100_000 / 2);
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert(i.wrapping_mul(2_654_435_761), i);
        }
        assert_eq!(m.len(), 1000);
        drop((b, v, m));
        let used = super::used();
        for _ in 0..100 {
            let big: Vec<u8> = alloc::vec![7; 1 << 20];
            assert_eq!(big[12345], 7);
        }
        assert_eq!(super::used(), used, "1 MiB allocations freed 100 times leave no trace");
    }

    /// The heap grows on demand — what grew stays usable — up to its limit, where an
    /// allocation fails (`try_reserve` says so, `reserve` says `ENOMEM`) without a panic, and
    /// the heap still works afterwards. (One test: once grown, the heap keeps its pages.)
    #[ktest]
    fn the_heap_grows_on_demand_up_to_its_limit_then_allocation_fails() {
        let held = super::frames_held();
        let used = super::used();
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        // More than the heap holds now: it has to grow.
        while super::frames_held() == held {
            hoard.push(alloc::vec![0x5a; super::GROW_STEP]);
        }
        assert!(super::frames_held() > held, "the heap grew");
        loop {
            let mut block = Vec::new();
            if block.try_reserve_exact(super::GROW_STEP).is_err() {
                break;
            }
            block.resize(super::GROW_STEP, 0xa5);
            hoard.push(block);
        }
        assert!(super::frames_held() * 4096 >= super::HEAP_LIMIT - 2 * super::GROW_STEP, "stopped at the limit");
        assert_eq!(super::reserve(super::GROW_STEP), Err(pkeys::Errno::ENOMEM));
        assert!(hoard.iter().all(|b| (b[0] == 0x5a || b[0] == 0xa5) && b[super::GROW_STEP - 1] == b[0]));
        drop(hoard);
        assert_eq!(super::used(), used, "everything freed");
        assert_eq!(super::reserve(super::GROW_STEP), Ok(()));
        let again: Vec<u8> = alloc::vec![1; super::GROW_STEP];
        assert_eq!(again[super::GROW_STEP - 1], 1);
    }
}
