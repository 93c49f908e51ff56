//! Huge pages: the pool of 2-MiB pages and the `MAP_HUGETLB` areas that use it.
//!
//! Linux keeps huge pages in a pool of their own (`mm/hugetlb.c`, one `struct hstate` per
//! size): the administrator sizes it (`vm.nr_hugepages`, or `hugepages=` on the kernel command
//! line), and `mmap(MAP_HUGETLB)` takes its pages from there, never from the ordinary page
//! allocator. pikku has the one size x86-64 maps with a page-directory entry, 2 MiB (SDM Vol. 3A
//! Table 4-17 "Format of an IA-32e Page-Directory Entry that Maps a 2-MByte Page"), and models
//! what a program can observe of the pool:
//!
//! * **Size.** [`set_nr_hugepages`] grows the pool with 2-MiB-aligned runs of 512 contiguous
//!   frames ([`frame::alloc_contiguous`]) as far as memory allows — Linux does not fail the
//!   write when fewer fit, it stops — and shrinks it by giving free, unreserved pages back to
//!   the frame allocator; pages in use or reserved beyond the new size become *surplus* and go
//!   back when they are released (Linux: `set_max_huge_pages()`, `adjust_pool_surplus()`).
//! * **Reservations.** A private mapping without `MAP_NORESERVE` reserves one page per 2 MiB
//!   when it is made, so `mmap` — not a later page fault — fails with `ENOMEM` when the pool
//!   cannot promise them (Linux: `hugetlb_reserve_pages()`). In pikku, every page of such an
//!   area that is not mapped holds one reservation: the first touch uses it, `munmap` gives
//!   back those of the pages never touched, and `MADV_DONTNEED` returns a page to the pool
//!   still reserved for the area. (Linux remembers instead that the page's reservation was
//!   used, so after `MADV_DONTNEED` the next touch needs an unreserved free page; only a
//!   program that runs the pool dry in between can tell.) A fault that finds no page it may
//!   take is `SIGBUS`, as on Linux.
//! * **Pages.** A fault maps the whole 2-MiB page, zeroed, with a PDE that carries the area's
//!   protection and its protection key in bits 62:59, so keys work on huge pages exactly as on
//!   4-KiB ones. `fork` shares the page copy-on-write; the first write copies all 2 MiB into a
//!   page from the pool (Linux: `copy_hugetlb_page_range()`, `hugetlb_wp()`). The frame
//!   reference count of a huge page's first frame counts its sharers.
//!
//! Locking: [`POOL`] is one spin lock for the whole pool. It is taken under an `Mm` write lock
//! (faults, `mmap`, `munmap`) and takes `frame::FRAMES` (2-MiB runs come and go), so its place in
//! the lock order is after `Mm` and before `FRAMES` (`docs/ARCHITECTURE.md`, "Locks"). Its free
//! list is a fixed bitmap, not a heap object: the pool never allocates, so resizing it cannot
//! fail for want of heap, nor leave heap bytes behind in the memory report. Nothing is logged
//! and no user memory is touched while it is held.

use pkeys::Errno;
use crate::sync::Mutex;
use vma::{Backing, PAGE_SIZE};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::address_space::Mm;
use super::area::{pte_bits, Access, Area, SegvCode};
use super::frame;
use crate::arch::x86_64::paging::{self, LeafSize, TlbBatch, HUGE_PAGE_SIZE};

/// Bytes in one huge page: 2 MiB (Linux: `HPAGE_SIZE`, `huge_page_size(h)`).
pub const HPAGE_SIZE: u64 = HUGE_PAGE_SIZE;

/// 2-MiB runs in the physical memory the frame allocator covers (4 GiB / 2 MiB = 2,048).
const RUNS: usize = frame::MAX_FRAMES / frame::CONTIGUOUS_FRAMES;

/// The pool. Linux: `struct hstate`'s counters.
struct Pool {
    /// Pages not mapped anywhere, ready to hand out (Linux: `hugepage_freelists`): one bit per
    /// 2-MiB run of physical memory, set = a free page of the pool.
    free: [u64; RUNS / 64],
    /// Bits set in `free` (Linux: `free_huge_pages`).
    free_count: u64,
    /// Pages the pool holds, free or in use (Linux: `nr_huge_pages`).
    total: u64,
    /// Free pages promised to mappings (Linux: `resv_huge_pages`); never more than `free`.
    reserved: u64,
    /// Pages beyond the size last asked for, given back to the frame allocator as soon as they
    /// are free and unreserved (Linux: `surplus_huge_pages`).
    surplus: u64,
}

/// The one pool, for 2-MiB pages. Lock order: after `Mm`, before the heap (module docs).
static POOL: Mutex<Pool> = Mutex::new(Pool { free: [0; RUNS / 64], free_count: 0, total: 0, reserved: 0, surplus: 0 });

impl Pool {
    /// Puts a page on the free list.
    fn push(&mut self, page: PhysFrame) {
        let run = (page.start_address().as_u64() / HPAGE_SIZE) as usize;
        assert!(self.free[run / 64] & (1 << (run % 64)) == 0, "huge page {:#x} freed twice", page.start_address().as_u64());
        self.free[run / 64] |= 1 << (run % 64);
        self.free_count += 1;
    }

    /// Takes a page off the free list, the lowest first.
    fn pop(&mut self) -> Option<PhysFrame> {
        let word = self.free.iter().position(|&w| w != 0)?;
        let bit = self.free[word].trailing_zeros() as usize;
        self.free[word] &= !(1 << bit);
        self.free_count -= 1;
        Some(PhysFrame::containing_address(PhysAddr::new((word * 64 + bit) as u64 * HPAGE_SIZE)))
    }

    /// Gives free, unreserved surplus pages back to the frame allocator. Linux:
    /// `return_unused_surplus_pages()`.
    fn return_surplus(&mut self) {
        while self.surplus > 0 && self.free_count > self.reserved {
            let page = self.pop().expect("more free pages than reserved ones");
            frame::free_contiguous(page);
            self.total -= 1;
            self.surplus -= 1;
        }
    }
}

/// The pool's size as `/proc/sys/vm/nr_hugepages` and
/// `/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages` show it: its pages, not counting
/// surplus ones. Linux: `persistent_huge_pages()`.
#[allow(dead_code)] // read by the in-kernel tests, and by /proc once it exists (the selftest work)
pub fn nr_hugepages() -> u64 {
    let pool = POOL.lock();
    pool.total - pool.surplus
}

/// Pages in the pool that no mapping uses (reserved ones included), as
/// `/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages` shows them. Linux:
/// `free_huge_pages`.
pub fn free_hugepages() -> u64 {
    POOL.lock().free_count
}

/// Free pages that are promised to mappings (`resv_hugepages`). Linux: `resv_huge_pages`.
#[cfg(test)] // /proc/meminfo's HugePages_Rsvd would show it; the tests read it meanwhile
pub fn resv_hugepages() -> u64 {
    POOL.lock().reserved
}

/// Asks for a pool of `n` pages (a write of `n` to `nr_hugepages`, or the boot option
/// `hugepages=n`) and returns the size reached: growing stops where memory runs out of
/// 2-MiB-aligned free runs, without an error, as in Linux; shrinking frees free, unreserved
/// pages and marks the rest of the excess surplus. Linux: `set_max_huge_pages()`.
pub fn set_nr_hugepages(n: u64) -> u64 {
    let mut pool = POOL.lock();
    // Surplus pages count again first (Linux: `adjust_pool_surplus(h, …, -1)`).
    while pool.surplus > 0 && pool.total - pool.surplus < n {
        pool.surplus -= 1;
    }
    while pool.total < n {
        let Some(page) = frame::alloc_contiguous() else { break };
        pool.push(page);
        pool.total += 1;
    }
    if pool.total - pool.surplus > n {
        pool.surplus = pool.total - n;
        pool.return_surplus();
    }
    pool.total - pool.surplus
}

/// Reserves `pages` free pages for a new mapping, or `ENOMEM` if fewer are free and
/// unpromised. Linux: `hugetlb_reserve_pages()` → `hugetlb_acct_memory()`.
fn reserve(pages: u64) -> Result<(), Errno> {
    let mut pool = POOL.lock();
    if pool.free_count - pool.reserved < pages {
        return Err(Errno::ENOMEM);
    }
    pool.reserved += pages;
    Ok(())
}

/// Gives back `pages` reservations that will not be used. Linux: `hugetlb_unreserve_pages()`,
/// `hugetlb_vm_op_close()`.
fn unreserve(pages: u64) {
    let mut pool = POOL.lock();
    // At most what is reserved: an area that lost a reservation (see `take_page`) gives
    // back fewer than its untouched pages.
    pool.reserved -= pages.min(pool.reserved);
    pool.return_surplus();
}

/// A free page for a fault: one of the reserved ones if `reserved` (always there), otherwise
/// one nobody was promised. Its reference count starts at 1; its contents are whatever they
/// were. Linux: `alloc_hugetlb_folio()`.
fn take_page(reserved: bool) -> Option<PhysFrame> {
    let mut pool = POOL.lock();
    if reserved && pool.reserved > 0 {
        pool.reserved -= 1;
    } else if pool.free_count <= pool.reserved {
        // (A reserving area's page without a reservation: one dropped while a child of fork
        // still shared it, when the pool had no page to reserve in its place.)
        return None;
    }
    let page = pool.pop()?;
    frame::set_one_reference(page);
    Some(page)
}

/// A huge page nobody maps any more goes back to the pool — reserved again for its area if
/// `keep_reservation` — or, if it is surplus, to the frame allocator. Linux:
/// `free_huge_folio()`.
fn give_back(page: PhysFrame, keep_reservation: bool) {
    let mut pool = POOL.lock();
    pool.push(page);
    if keep_reservation {
        pool.reserved += 1;
    } else {
        pool.return_surplus();
    }
}

/// Drops one mapping's reference to a user leaf: a 4-KiB page through [`frame::put`], a huge
/// page back to the pool with the last reference. The one `put` every walker that removes user
/// leaves hands its frames to (teardown, `munmap`, `MADV_DONTNEED`).
pub fn put_user_leaf(first: PhysFrame, size: LeafSize) {
    match size {
        LeafSize::Page => frame::put(first),
        LeafSize::Huge => {
            if frame::drop_reference(first) {
                give_back(first, false);
            }
        }
    }
}

/// Fills all 512 frames of a huge page with zeros.
fn zero_huge_page(first: PhysFrame) {
    for i in 0..frame::CONTIGUOUS_FRAMES as u64 {
        paging::zero_frame(first + i);
    }
}

/// Copies all 512 frames of one huge page into another.
fn copy_huge_page(from: PhysFrame, to: PhysFrame) {
    for i in 0..frame::CONTIGUOUS_FRAMES as u64 {
        paging::copy_frame(from + i, to + i);
    }
}

/// `mmap`'s length for a huge-page area: rounded up to 2 MiB (Linux's `ksys_mmap_pgoff()`:
/// `ALIGN(len, huge_page_size(hs))`), `ENOMEM` if that wraps.
pub fn align_len(len: u64) -> Result<u64, Errno> {
    len.checked_add(HPAGE_SIZE - 1).map(|l| l & !(HPAGE_SIZE - 1)).filter(|&l| l != 0).ok_or(Errno::ENOMEM)
}

/// Would cutting the areas at `at` cut a huge-page area somewhere other than at a 2-MiB
/// boundary? Then `munmap`, `mprotect` and `pkey_mprotect` fail with `EINVAL` (Linux:
/// `__split_vma()` → `hugetlb_vm_op_split()`).
fn cuts_a_huge_page(mm: &Mm, at: u64) -> bool {
    mm.vmas.find(at).is_some_and(|v| cuts_huge_page(v, at))
}

/// Would cutting `area` at `at` cut it inside a huge page? (False when `at` is not strictly
/// inside the area: nothing is cut there.)
pub fn cuts_huge_page(area: &Area, at: u64) -> bool {
    matches!(area.backing, Backing::Hugetlb { .. }) && area.start < at && at < area.end && !at.is_multiple_of(HPAGE_SIZE)
}

/// `EINVAL` if a change of `[start, end)` would cut a huge-page area inside a huge page.
pub fn check_cuts(mm: &Mm, start: u64, end: u64) -> Result<(), Errno> {
    if cuts_a_huge_page(mm, start) || cuts_a_huge_page(mm, end) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// What `MAP_HUGE_*` asks for (`flags >> 26 & 0x3f`, log2 of the page size; 0 = the default
/// size): the 2-MiB pool (0 or 21), a size the CPU has but the pool does not (1 GiB, 30: Linux
/// registers it on a CPU with 1-GiB pages and, with no such pages set aside, its `mmap` is
/// `ENOMEM`), or an unknown size (`EINVAL`, Linux: `hstate_sizelog()` finds no hstate).
pub fn check_page_size(log2: u64) -> Result<(), Errno> {
    match log2 {
        0 | 21 => Ok(()),
        30 => Err(Errno::ENOMEM),
        _ => Err(Errno::EINVAL),
    }
}

impl Mm {
    /// Where a new huge-page area of `len` bytes (a multiple of 2 MiB) goes without
    /// `MAP_FIXED`: the hint rounded up to 2 MiB if it is free, else the highest free
    /// 2-MiB-aligned range (Linux: `hugetlb_get_unmapped_area()`, top-down with an
    /// `align_mask`).
    pub fn find_free_huge_range(&mut self, hint: u64, len: u64) -> Option<u64> {
        let hint = hint.checked_add(HPAGE_SIZE - 1).map_or(0, |h| h & !(HPAGE_SIZE - 1));
        let slack = HPAGE_SIZE - PAGE_SIZE;
        let found = self.find_free_range(hint, len.checked_add(slack)?)?;
        if found == hint {
            return Some(hint);
        }
        // `[found, found + len + slack)` is free; its highest 2-MiB-aligned start for `len`.
        Some((found + slack) & !(HPAGE_SIZE - 1))
    }

    /// Adds a huge-page area, reserving its pages in the pool first unless `reserve` is false
    /// (`MAP_NORESERVE`). Linux: `hugetlbfs_file_mmap()` → `hugetlb_reserve_pages()`.
    pub fn add_huge_area(&mut self, mut area: Area, reserve: bool) -> Result<(), Errno> {
        let pages = (area.end - area.start) / HPAGE_SIZE;
        if reserve {
            self::reserve(pages)?;
        }
        area.backing = Backing::Hugetlb { reserved: reserve };
        self.add_area(area).inspect_err(|_| {
            if reserve {
                unreserve(pages);
            }
        })
    }

    /// Removes the leaves of `[start, end)` — one area's piece, of backing `backing` — and
    /// gives their frames back; for a huge-page area that reserved its pages, `munmap`
    /// (`keep_reservations` false) also returns the reservations of the pages never touched,
    /// and `MADV_DONTNEED` (true) keeps one reservation per page it drops. Linux:
    /// `zap_page_range_single()` / `__unmap_hugepage_range()`, and `hugetlb_vm_op_close()`.
    pub fn zap_area_pages(&mut self, start: u64, end: u64, backing: &Backing<super::area::MappedFile>, keep_reservations: bool, tlb: &mut TlbBatch) {
        let reserved = matches!(backing, Backing::Hugetlb { reserved: true });
        let mut dropped = 0;
        self.root().unmap_leaves(start, end, tlb, |first, size| match size {
            LeafSize::Huge if reserved && keep_reservations => {
                dropped += 1;
                if frame::drop_reference(first) {
                    give_back(first, true);
                } else {
                    // Still shared with a child of fork: the area's reservation comes anew
                    // from a free page, if there is one (else its next touch takes an
                    // unreserved page, or is SIGBUS).
                    let _ = self::reserve(1);
                }
            }
            _ => {
                dropped += 1;
                put_user_leaf(first, size);
            }
        });
        if reserved && !keep_reservations {
            let pages = (end - start) / HPAGE_SIZE;
            unreserve(pages - dropped.min(pages));
        }
    }

    /// Before an address space goes, its huge-page areas that reserved pages are unmapped, so
    /// that the reservations of pages never touched go back to the pool (Linux: `exit_mmap()`
    /// → `hugetlb_vm_op_close()`). Each such area holds at least one page or reservation of
    /// the pool, so there are few of them.
    pub(super) fn release_hugetlb_reservations(&mut self) {
        let reserving = |v: &Area| matches!(v.backing, Backing::Hugetlb { reserved: true });
        loop {
            let next = self.vmas.iter().find(|v| reserving(v)).map(|v| (v.start, v.end));
            let Some((start, end)) = next else { break };
            self.unmap_range(start, end);
        }
    }

    /// The page fault of a huge-page area, after [`Mm::handle_fault`]'s checks of the area and
    /// the key: a write to a page shared copy-on-write gets its own copy (or, the last sharer,
    /// the write bit back); a page not yet there is taken from the pool — one of the area's
    /// reservations if it has them — zeroed and mapped whole with a 2-MiB PDE carrying the
    /// area's protection and key (bits 62:59, SDM Vol. 3A Table 4-17). No page to take is
    /// `SIGBUS` (reported as [`SegvCode::OutOfMemory`]). Linux: `hugetlb_fault()` →
    /// `hugetlb_no_page()` / `hugetlb_wp()`.
    pub(super) fn handle_huge_fault(&mut self, addr: u64, access: Access, present: bool, area: &Area) -> Result<(), SegvCode> {
        let base = addr & !(HPAGE_SIZE - 1);
        if let Some(entry) = self.root().huge_leaf_entry(base) {
            let bits = entry.flags().bits() | entry.addr().as_u64();
            let cow = bits & paging::COW_BIT != 0 && bits & x86_64::structures::paging::PageTableFlags::PRESENT.bits() != 0;
            if access == Access::Write && cow {
                return self.break_huge_cow(base, bits);
            }
            // The page is there and the area allows the access, yet the CPU refused it.
            return Err(SegvCode::AccErr);
        }
        if present {
            return Err(SegvCode::AccErr);
        }
        let reserved = matches!(area.backing, Backing::Hugetlb { reserved: true });
        let page = take_page(reserved).ok_or(SegvCode::OutOfMemory)?;
        zero_huge_page(page);
        if self.root().map_huge(base, page, pte_bits(area.prot, area.pkey), frame::alloc_user_table, frame::free).is_err() {
            if frame::drop_reference(page) {
                give_back(page, reserved);
            }
            return Err(SegvCode::OutOfMemory);
        }
        Ok(())
    }

    /// A write to a huge page shared copy-on-write after `fork`, whose entry is `old`: the last
    /// sharer gets the write bit back; otherwise the writer copies the 2 MiB into an unreserved
    /// free page of the pool (none: `SIGBUS`, as Linux's `hugetlb_wp()` when the pool is dry).
    fn break_huge_cow(&mut self, base: u64, old: u64) -> Result<(), SegvCode> {
        let writable = |bits: u64| (bits & !paging::COW_BIT) | x86_64::structures::paging::PageTableFlags::WRITABLE.bits();
        let shared = PhysFrame::containing_address(PhysAddr::new(old & paging::FRAME_MASK));
        let mut tlb = self.tlb_batch();
        if frame::references(shared) == 1 {
            self.root().update_huge_leaf(base, &mut tlb, writable);
            tlb.flush();
            return Ok(());
        }
        let copy = take_page(false).ok_or(SegvCode::OutOfMemory)?;
        copy_huge_page(shared, copy);
        let new_addr = copy.start_address().as_u64();
        self.root().update_huge_leaf(base, &mut tlb, |old| writable((old & !paging::FRAME_MASK) | new_addr));
        // Every CPU forgets the shared page before this writer's copy is used (see `break_cow`).
        tlb.flush();
        put_user_leaf(shared, LeafSize::Huge);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::as_fresh_program;
    use crate::mm::user::{copy_from_user, copy_to_user};
    use crate::syscall::{decode, dispatch, nr};
    use alloc::vec::Vec;
    use ktest_macros::ktest;

    const RW: u64 = 3;
    const HUGETLB: u64 = 0x22 | 0x40000;

    fn call(n: u64, args: &[u64]) -> Result<u64, Errno> {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        decode(dispatch(n, a))
    }

    /// Runs `f` with a pool of `pages` pages, and puts the pool back as it was.
    fn with_pool(pages: u64, f: impl FnOnce()) {
        let before = nr_hugepages();
        assert_eq!(set_nr_hugepages(pages), pages, "room for {pages} huge pages");
        f();
        assert_eq!(set_nr_hugepages(before), before);
    }

    /// The leaves of the user half: (address, frame, size).
    fn leaves(mm: &mut Mm) -> Vec<(u64, u64, LeafSize)> {
        let mut all = Vec::new();
        mm.root().for_each_user_page(|page, frame, _, size| all.push((page.start_address().as_u64(), frame.start_address().as_u64(), size)));
        all
    }

    #[ktest]
    fn the_pool_grows_in_aligned_runs_and_shrinks_back_to_the_frame_allocator() {
        let (free, pool) = (frame::free_count(), nr_hugepages());
        assert_eq!(set_nr_hugepages(pool + 3), pool + 3);
        assert_eq!(frame::free_count(), free - 3 * 512, "three runs of 512 frames");
        assert_eq!(free_hugepages(), pool + 3);
        assert_eq!(set_nr_hugepages(pool), pool);
        assert_eq!(frame::free_count(), free, "every frame back");
        // More than memory holds: as many as fit, no error (Linux's write does not fail).
        let most = set_nr_hugepages(1 << 20);
        assert!(most > 0 && most < (frame::total_usable() / 512) as u64, "{most}");
        assert_eq!(frame::alloc_contiguous(), None, "it stopped where no aligned run was left");
        assert_eq!(set_nr_hugepages(pool), pool);
        assert_eq!(frame::free_count(), free);
    }

    #[ktest]
    fn a_fault_maps_one_zeroed_2_mib_page_with_the_areas_key_and_teardown_gives_it_back() {
        with_pool(2, || {
            let free = frame::free_count();
            as_fresh_program(|t| {
                let p = call(nr::MMAP, &[0, 4096, RW, HUGETLB, u64::MAX, 0]).expect("mmap");
                assert!(p.is_multiple_of(HPAGE_SIZE), "{p:#x}");
                assert_eq!(resv_hugepages(), 1, "reserved at mmap");
                copy_to_user(p + HPAGE_SIZE - 3, b"end").unwrap();
                let mut buf = [1u8; 8];
                copy_from_user(&mut buf, p + 4096 * 7).unwrap();
                assert_eq!(buf, [0; 8], "zeroed");
                let mut mm = t.mm.write();
                let all = leaves(&mut mm);
                assert_eq!(all.len(), 1, "one leaf for the whole 2 MiB: {all:x?}");
                assert_eq!((all[0].0, all[0].2), (p, LeafSize::Huge));
                assert!(all[0].1.is_multiple_of(HPAGE_SIZE));
                assert_eq!((free_hugepages(), resv_hugepages()), (1, 0), "the reservation was used");
                let entry = mm.root().huge_leaf_entry(p + 12345).expect("a 2-MiB leaf");
                assert_eq!(pkeys::pte::pkey_of(entry.flags().bits()), pkeys::Pkey::DEFAULT);
                // translate() finds the 4-KiB frame inside the huge page that holds an address.
                let at = |mm: &mut Mm, a: u64| mm.page_frame(x86_64::VirtAddr::new(a)).map(|f| f.start_address().as_u64());
                assert_eq!(at(&mut mm, p + 5 * 4096 + 17), Some(all[0].1 + 5 * 4096));
                assert_eq!(at(&mut mm, p + HPAGE_SIZE), None, "past the page");
            });
            // The program is gone: its page is back in the pool, not 512 frames freed as
            // "pages" of a table that was never one.
            assert_eq!((free_hugepages(), resv_hugepages()), (2, 0));
            assert_eq!(frame::free_count(), free, "tables back, pool pages stay in the pool");
        });
    }

    #[ktest(needs = pku)]
    fn pkey_mprotect_rewrites_the_key_bits_of_the_pde() {
        with_pool(2, || {
            as_fresh_program(|t| {
                let k = call(nr::PKEY_ALLOC, &[0, 0]).unwrap();
                let p = call(nr::MMAP, &[0, 2 * HPAGE_SIZE, RW, HUGETLB, u64::MAX, 0]).unwrap();
                copy_to_user(p, b"a").unwrap();
                copy_to_user(p + HPAGE_SIZE, b"b").unwrap();
                assert_eq!(call(nr::PKEY_MPROTECT, &[p, 4096, RW, k]), Err(Errno::EINVAL), "inside a huge page");
                assert_eq!(call(nr::PKEY_MPROTECT, &[p + HPAGE_SIZE, HPAGE_SIZE, 1, k]), Ok(0));
                let mut mm = t.mm.write();
                let key_of = |mm: &mut Mm, a: u64| mm.root().huge_leaf_entry(a).map(|e| (pkeys::pte::pkey_of(e.flags().bits()).index(), e.flags()));
                let (k0, f0) = key_of(&mut mm, p).unwrap();
                let (k1, f1) = key_of(&mut mm, p + HPAGE_SIZE).unwrap();
                assert_eq!((k0, k1 as u64), (0, k));
                assert!(f0.contains(x86_64::structures::paging::PageTableFlags::WRITABLE));
                assert!(!f1.contains(x86_64::structures::paging::PageTableFlags::WRITABLE), "PROT_READ");
                assert!(f1.contains(x86_64::structures::paging::PageTableFlags::HUGE_PAGE), "still a 2-MiB leaf");
                assert_eq!(leaves(&mut mm).len(), 2);
            });
        });
    }

    #[ktest]
    fn fork_shares_a_huge_page_and_the_first_write_copies_it() {
        with_pool(3, || {
            as_fresh_program(|t| {
                let p = call(nr::MMAP, &[0, HPAGE_SIZE, RW, HUGETLB, u64::MAX, 0]).unwrap();
                copy_to_user(p + 100, b"parent").unwrap();
                let mut child = t.mm.write().fork().unwrap();
                let shared = leaves(&mut child)[0].1;
                assert_eq!(leaves(&mut t.mm.write())[0].1, shared, "one page for both");
                assert_eq!(frame::references(PhysFrame::containing_address(PhysAddr::new(shared))), 2);
                assert!(matches!(child.vmas.find(p).unwrap().backing, Backing::Hugetlb { reserved: false }), "no reservations in the child");
                copy_to_user(p + 100, b"PARENT").unwrap();
                let own = leaves(&mut t.mm.write())[0].1;
                assert_ne!(own, shared, "copied on write");
                assert_eq!(free_hugepages(), 1);
                child.activate();
                let mut buf = [0u8; 6];
                copy_from_user(&mut buf, p + 100).unwrap();
                t.mm.read().activate();
                assert_eq!(&buf, b"parent");
                drop(child);
                assert_eq!(free_hugepages(), 2, "the child's page came back with the child");
            });
            assert_eq!(free_hugepages(), 3);
        });
    }

    #[ktest]
    fn a_huge_page_replaces_an_empty_page_table_and_prot_none_keeps_its_data() {
        with_pool(1, || {
            let free = frame::free_count();
            as_fresh_program(|t| {
                // 4-KiB pages first, so a page table covers the 2 MiB; munmap leaves it (empty).
                let p = call(nr::MMAP, &[0, 2 * HPAGE_SIZE, RW, 0x22, u64::MAX, 0]).unwrap();
                let base = (p + HPAGE_SIZE - 1) & !(HPAGE_SIZE - 1);
                copy_to_user(base + 8192, b"small").unwrap();
                assert_eq!(call(nr::MUNMAP, &[p, 2 * HPAGE_SIZE]), Ok(0));
                let tables = frame::free_count();
                let h = call(nr::MMAP, &[base, HPAGE_SIZE, RW, HUGETLB | 0x10, u64::MAX, 0]).unwrap();
                assert_eq!(h, base);
                copy_to_user(base + 8192, b"huge!").unwrap();
                assert_eq!(frame::free_count(), tables + 1, "the empty page table was freed");
                let all = leaves(&mut t.mm.write());
                assert_eq!((all.len(), all[0].0, all[0].2), (1, base, LeafSize::Huge));
                assert_eq!(call(nr::MPROTECT, &[base, HPAGE_SIZE, 0]), Ok(0));
                let mut buf = [0u8; 5];
                assert_eq!(copy_from_user(&mut buf, base + 8192), Err(Errno::EFAULT), "PROT_NONE");
                assert_eq!(call(nr::MPROTECT, &[base, HPAGE_SIZE, 1]), Ok(0));
                copy_from_user(&mut buf, base + 8192).unwrap();
                assert_eq!(&buf, b"huge!", "the page stayed through PROT_NONE");
                assert_eq!(copy_to_user(base, b"x"), Err(Errno::EFAULT), "read-only now");
            });
            assert_eq!(frame::free_count(), free, "every frame back");
            assert_eq!(free_hugepages(), 1);
        });
    }

    #[ktest]
    fn munmap_and_dontneed_keep_the_reservations_straight() {
        with_pool(4, || {
            as_fresh_program(|_| {
                let p = call(nr::MMAP, &[0, 4 * HPAGE_SIZE, RW, HUGETLB, u64::MAX, 0]).unwrap();
                assert_eq!(call(nr::MMAP, &[0, HPAGE_SIZE, RW, HUGETLB, u64::MAX, 0]), Err(Errno::ENOMEM), "all reserved");
                copy_to_user(p, b"x").unwrap();
                copy_to_user(p + HPAGE_SIZE, b"y").unwrap();
                assert_eq!((free_hugepages(), resv_hugepages()), (2, 2));
                assert_eq!(call(nr::MADVISE, &[p, HPAGE_SIZE, 4]), Ok(0));
                assert_eq!((free_hugepages(), resv_hugepages()), (3, 3), "dropped, still reserved for the area");
                assert_eq!(call(nr::MUNMAP, &[p + 4096, HPAGE_SIZE]), Err(Errno::EINVAL));
                assert_eq!(call(nr::MUNMAP, &[p, 2 * HPAGE_SIZE]), Ok(0));
                assert_eq!((free_hugepages(), resv_hugepages()), (4, 2), "one page and one reservation back");
                let q = call(nr::MMAP, &[0, 2 * HPAGE_SIZE, RW, HUGETLB | 0x4000, u64::MAX, 0]).expect("MAP_NORESERVE");
                assert_eq!(resv_hugepages(), 2);
                copy_to_user(q, b"z").unwrap();
                copy_to_user(q + HPAGE_SIZE, b"z").unwrap();
                assert_eq!((free_hugepages(), resv_hugepages()), (2, 2));
                // The pool shrinks only as far as the pages in use and reserved allow; the
                // rest goes when it is released.
                assert_eq!(set_nr_hugepages(1), 1);
                assert_eq!(POOL.lock().total, 4);
                assert_eq!(call(nr::MUNMAP, &[q, 2 * HPAGE_SIZE]), Ok(0));
                assert_eq!(POOL.lock().total, 2, "two surplus pages went back at once");
            });
            assert_eq!((nr_hugepages(), free_hugepages(), resv_hugepages()), (1, 1, 0));
            set_nr_hugepages(4);
        });
    }
}
