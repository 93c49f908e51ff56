//! The physical frame allocator: one bit per 4-KiB frame.
//!
//! At boot the bootloader's memory map says which physical ranges are usable RAM; every frame
//! in them starts free, everything else (firmware, the kernel image, the bootloader's page
//! tables, the ramdisk, MMIO) is never handed out. The bitmap is a fixed array covering the
//! first 4 GiB of physical memory (128 KiB of bits), so the allocator needs no memory of its
//! own before the heap exists; RAM above 4 GiB is left unused (pikku runs in QEMU with 512 MiB).
//!
//! Allocation is next-fit: the search continues where the last one stopped, so consecutive
//! allocations are cheap. [`free_count`] lets tests check that whatever was taken is returned.
//!
//! User pages can be shared — `fork` maps the same frame into parent and child, copy-on-write —
//! so each frame also has a **reference count** (a `u16` per frame, on the heap, sized to the
//! highest usable frame): [`alloc()`] starts it at 1, [`share`] adds a reference, [`put`] drops
//! one and frees the frame with the last. Page-table frames are never shared and use
//! [`alloc()`]/[`free`] directly.
//!
//! One user frame is never counted: the **shared zero frame** ([`zero_frame`], Linux's
//! `ZERO_PAGE`), zero-filled once at boot and mapped read-only, copy-on-write, wherever a program
//! reads an anonymous page it never wrote. A `u16` count could not hold its sharers (every
//! such page of every process), and it is never freed, so [`share`], [`put`] and
//! [`drop_reference`] pass it by: every walker that shares or puts frames (fork, munmap,
//! `MADV_DONTNEED`, teardown) stays correct without knowing it. What must know it asks
//! [`is_zero_frame`]: a write fault breaks it into a fresh zeroed frame (there is nothing to
//! copy), and `/proc/self/smaps` does not count it as resident (Linux: `vm_normal_page()` is
//! `NULL` for the zero page).

use alloc::vec::Vec;
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::sync::atomic::{AtomicU16, Ordering};
use crate::sync::Mutex;
use spin::Once;
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

const FRAME_SIZE: u64 = 4096;
/// Frames the bitmap can describe: 4 GiB / 4 KiB.
pub const MAX_FRAMES: usize = 1 << 20;
const WORDS: usize = MAX_FRAMES / 64;

struct Bitmap {
    /// Bit set = frame free.
    free: [u64; WORDS],
    free_count: usize,
    total_usable: usize,
    next: usize,
}

static FRAMES: Mutex<Bitmap> = Mutex::new(Bitmap { free: [0; WORDS], free_count: 0, total_usable: 0, next: 0 });

/// Marks every frame of every usable region free. Frame 0 stays reserved (a null physical
/// address is never a valid allocation).
pub fn init(regions: &MemoryRegions) {
    let mut bm = FRAMES.lock();
    for region in regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
        let first = region.start.div_ceil(FRAME_SIZE).max(1);
        let end = (region.end / FRAME_SIZE).min(MAX_FRAMES as u64);
        for index in first..end {
            bm.free[index as usize / 64] |= 1 << (index % 64);
            bm.free_count += 1;
            bm.total_usable += 1;
        }
    }
}

/// Takes a free frame whose address lies below `limit`, or `None`. For the one frame that
/// must be low: the code other CPUs start in (real mode reaches only the first MiB; below
/// 0xA0000 is RAM on every PC). Called right after [`init`], before the heap takes frames.
pub fn alloc_below(limit: u64) -> Option<PhysFrame> {
    let mut bm = FRAMES.lock();
    let frames = ((limit / FRAME_SIZE) as usize).min(MAX_FRAMES);
    let index = (1..frames).find(|&i| bm.free[i / 64] & (1 << (i % 64)) != 0)?;
    bm.free[index / 64] &= !(1 << (index % 64));
    bm.free_count -= 1;
    Some(PhysFrame::containing_address(PhysAddr::new(index as u64 * FRAME_SIZE)))
}

/// Takes a free frame, or `None` when memory is exhausted. The contents are whatever was there.
pub fn alloc() -> Option<PhysFrame> {
    let mut bm = FRAMES.lock();
    let start_word = bm.next / 64;
    for step in 0..WORDS {
        let w = (start_word + step) % WORDS;
        if bm.free[w] != 0 {
            let bit = bm.free[w].trailing_zeros() as usize;
            bm.free[w] &= !(1 << bit);
            bm.free_count -= 1;
            let index = w * 64 + bit;
            bm.next = index;
            return Some(PhysFrame::containing_address(PhysAddr::new(index as u64 * FRAME_SIZE)));
        }
    }
    None
}

/// Frames in one run that [`alloc_contiguous`] hands out: 512, one 2-MiB page.
pub const CONTIGUOUS_FRAMES: usize = 512;

/// Takes 512 free frames that are physically contiguous and start at a 2-MiB boundary — the
/// memory of one huge page (a 2-MiB PDE maps a 2-MiB-aligned physical address: SDM Vol. 3A
/// Table 4-17 "Format of an IA-32e Page-Directory Entry that Maps a 2-MByte Page", bits
/// 51:21) — or `None` if no such run is free, or if taking it would leave fewer than
/// [`user_reserve`] frames (the pool's pages are user memory). In the bitmap such a run is 8
/// whole words at a word index that is a multiple of 8, so the search looks at each aligned
/// run once: bounded by the size of the bitmap, whatever memory holds. Linux:
/// `alloc_pool_huge_folio()` → `alloc_pages()` of order 9.
pub fn alloc_contiguous() -> Option<PhysFrame> {
    const RUN_WORDS: usize = CONTIGUOUS_FRAMES / 64;
    let mut bm = FRAMES.lock();
    if bm.free_count < CONTIGUOUS_FRAMES + user_reserve_of(bm.total_usable) {
        return None;
    }
    let first = (0..WORDS).step_by(RUN_WORDS).find(|&w| bm.free[w..w + RUN_WORDS].iter().all(|&word| word == u64::MAX))?;
    bm.free[first..first + RUN_WORDS].fill(0);
    bm.free_count -= CONTIGUOUS_FRAMES;
    Some(PhysFrame::containing_address(PhysAddr::new((first * 64) as u64 * FRAME_SIZE)))
}

/// Gives back a run [`alloc_contiguous`] handed out. Freeing a frame of it twice panics.
pub fn free_contiguous(first: PhysFrame) {
    let start = first.start_address().as_u64();
    assert!(start.is_multiple_of(CONTIGUOUS_FRAMES as u64 * FRAME_SIZE), "run at {start:#x} is not 2-MiB aligned");
    for i in 0..CONTIGUOUS_FRAMES as u64 {
        free(PhysFrame::containing_address(PhysAddr::new(start + i * FRAME_SIZE)));
    }
}

/// Gives a frame back. Freeing a frame twice is a kernel bug and panics.
pub fn free(frame: PhysFrame) {
    let index = (frame.start_address().as_u64() / FRAME_SIZE) as usize;
    let mut bm = FRAMES.lock();
    assert!(index < MAX_FRAMES, "freeing frame {index:#x} beyond the bitmap");
    let mask = 1u64 << (index % 64);
    assert!(bm.free[index / 64] & mask == 0, "double free of frame {:#x}", frame.start_address().as_u64());
    bm.free[index / 64] |= mask;
    bm.free_count += 1;
}

/// Reference counts of user frames, indexed by frame number (set up after the heap).
static REFS: Once<Vec<AtomicU16>> = Once::new();

/// Sizes the reference-count table to the highest usable frame (call once the heap works).
pub fn init_refcounts(regions: &MemoryRegions) {
    let top = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| (r.end / FRAME_SIZE).min(MAX_FRAMES as u64))
        .max()
        .unwrap_or(0) as usize;
    REFS.call_once(|| (0..top).map(|_| AtomicU16::new(0)).collect());
}

/// The shared zero frame (set once by [`init_zero_frame`], never freed).
static ZERO_FRAME: Once<PhysFrame> = Once::new();

/// Takes and zero-fills the shared zero frame (call once, at boot, after [`init`]; on a NUMA
/// machine it comes from node 0, where the boot allocations are — as Linux's `empty_zero_page`,
/// which lives in the kernel image). Linux: `ZERO_PAGE(0)`.
pub fn init_zero_frame() {
    ZERO_FRAME.call_once(|| {
        let frame = alloc().expect("no frame for the shared zero frame");
        crate::arch::x86_64::paging::zero_frame(frame);
        frame
    });
}

/// The shared zero frame: read-only zeros behind every anonymous page read before it was
/// written (Linux: `ZERO_PAGE()`, `my_zero_pfn()`).
pub fn zero_frame() -> PhysFrame {
    *ZERO_FRAME.get().expect("frame::init_zero_frame not called")
}

/// Is `frame` the shared zero frame? (Linux: `is_zero_pfn()`.)
pub fn is_zero_frame(frame: PhysFrame) -> bool {
    ZERO_FRAME.get() == Some(&frame)
}

fn refcount(frame: PhysFrame) -> &'static AtomicU16 {
    let index = (frame.start_address().as_u64() / FRAME_SIZE) as usize;
    &REFS.get().expect("frame::init_refcounts not called")[index]
}

/// Frames user pages may not take: Linux's `min_free_kbytes` watermark, √(usable KiB × 16) KiB
/// (Linux: `calculate_min_free_kbytes()`, clamped to 128 KiB .. 256 MiB) — about 2.9 MiB at
/// 512 MiB. The kernel's own allocations (heap growth, kernel stacks, page tables) may dip
/// below it, so a program that takes every page it can is refused a page (and killed, as
/// Linux's OOM killer would) before the kernel is refused one.
pub fn user_reserve() -> usize {
    user_reserve_of(total_usable())
}

/// [`user_reserve`] for `usable` frames (for callers that hold the bitmap's lock already).
fn user_reserve_of(usable: usize) -> usize {
    let kib = (usable as u64) * (FRAME_SIZE / 1024);
    let min_free_kib = isqrt(kib * 16).clamp(128, 256 * 1024);
    (min_free_kib / (FRAME_SIZE / 1024)) as usize
}

/// ⌊√n⌋, by Newton's method.
fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// A frame, unless that would go below [`user_reserve`].
fn alloc_above_reserve() -> Option<PhysFrame> {
    if free_count() <= user_reserve() {
        return None;
    }
    alloc()
}

/// A fresh user frame with one reference, unless that would go below [`user_reserve`].
pub fn alloc_user() -> Option<PhysFrame> {
    let frame = alloc_above_reserve()?;
    set_one_reference(frame);
    Some(frame)
}

/// A fresh user frame with one reference from node `preferred`, or — when it has none free —
/// from the nearest other node that has (Linux: `alloc_pages_node()` with the zonelist in
/// distance order). Stops at [`user_reserve`] like [`alloc_user`].
#[allow(dead_code)] // the placement of issue #17 calls it
pub fn alloc_user_on(preferred: mempolicy::Node) -> Option<PhysFrame> {
    alloc_user_in(preferred, mempolicy::NodeMask::from_bits(u64::MAX))
}

/// [`alloc_user_on`] restricted to the nodes of `allowed` (`MPOL_BIND`: no fallback outside
/// the mask; Linux: `__alloc_pages()` with a nodemask). `preferred` need not be in `allowed`
/// (then the nearest node of `allowed` to it is tried first). `None` when none of them has a
/// free frame above the reserve.
pub fn alloc_user_in(_preferred: mempolicy::Node, allowed: mempolicy::NodeMask) -> Option<PhysFrame> {
    // One node today (see `numa`): every frame is on node 0.
    if !allowed.contains(mempolicy::Node::ZERO) {
        return None;
    }
    alloc_user()
}

/// A frame for a page table of a user address space. Tables are the program's memory too, so
/// they stop at [`user_reserve`] like its pages (else a `fork` of a large address space could
/// take the frames the kernel keeps for itself).
pub fn alloc_user_table() -> Option<PhysFrame> {
    alloc_above_reserve()
}

/// Adds a reference to a user frame (it is now mapped once more). Panics past 65535 sharers.
/// The shared zero frame is not counted (see the module's doc).
pub fn share(frame: PhysFrame) {
    if is_zero_frame(frame) {
        return;
    }
    let old = refcount(frame).fetch_add(1, Ordering::Relaxed);
    assert!(old != 0 && old != u16::MAX, "sharing frame {:#x} with refcount {old}", frame.start_address().as_u64());
}

/// Drops a reference to a user frame; the last one frees it (never the shared zero frame).
pub fn put(frame: PhysFrame) {
    if drop_reference(frame) {
        free(frame);
    }
}

/// Starts the reference count of a frame just handed to user space at 1. For a 2-MiB page
/// from the huge-page pool, the count of its first frame stands for the whole page.
pub fn set_one_reference(frame: PhysFrame) {
    refcount(frame).store(1, Ordering::Relaxed);
}

/// Drops a reference to a user frame without freeing it; `true` if that was the last one
/// (the caller then gives the memory back where it came from: [`free`], or the huge-page
/// pool). The shared zero frame is not counted and never the last: `false`.
pub fn drop_reference(frame: PhysFrame) -> bool {
    if is_zero_frame(frame) {
        return false;
    }
    let old = refcount(frame).fetch_sub(1, Ordering::Relaxed);
    assert!(old != 0, "put of unreferenced frame {:#x}", frame.start_address().as_u64());
    old == 1
}

/// How many mappings share a user frame (meaningless for the shared zero frame: ask
/// [`is_zero_frame`] first).
pub fn references(frame: PhysFrame) -> u16 {
    refcount(frame).load(Ordering::Relaxed)
}

/// Free frames right now.
pub fn free_count() -> usize {
    FRAMES.lock().free_count
}

/// Usable frames in total (free or not).
pub fn total_usable() -> usize {
    FRAMES.lock().total_usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn frames_are_distinct_aligned_and_come_back() {
        let before = free_count();
        let frames: alloc::vec::Vec<PhysFrame> = (0..1000).map(|_| alloc().expect("frame")).collect();
        assert_eq!(free_count(), before - 1000);
        let mut addrs: alloc::vec::Vec<u64> = frames.iter().map(|f| f.start_address().as_u64()).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 1000, "no frame handed out twice");
        assert!(addrs.iter().all(|a| a % 4096 == 0 && *a != 0));
        for f in frames {
            free(f);
        }
        assert_eq!(free_count(), before);
        assert!(total_usable() >= free_count());
    }
}
