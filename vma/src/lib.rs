//! # vma — the virtual memory areas of one address space
//!
//! Linux describes a process's memory as a sorted set of *VMAs* (`struct vm_area_struct`):
//! page-aligned, non-overlapping ranges `[start, end)`, each with one protection (`PROT_*`), one
//! protection key, and one backing (anonymous memory, or a file). The page tables are only a
//! cache of what the VMAs say: a page fault inside a VMA maps a page with the VMA's protection
//! and key; a fault outside any VMA, or against its protection, is the program's fault.
//!
//! ## The structure: a B-tree, walked once per operation
//!
//! [`VmaMap`] keeps the areas in a `BTreeMap` keyed by start address: a B-tree whose nodes
//! hold 5 to 11 areas (their start addresses sorted side by side, searched in order), and
//! whose height grows with log(n): 5 to 7 levels at 50,000 areas, as full as the nodes are. Every question a system call
//! asks ("which area holds this address?", "which areas lie in this range?") is one walk from
//! the root to a leaf, and every change (split, merge, insert, remove) happens next to where
//! that walk ended. So each operation makes exactly *one* walk, with a **cursor**: the walk
//! stops in the gap between two areas (`BTreeMap::upper_bound`), and from there the cursor
//! reads and changes the area before and the area after the gap, steps to the next area, takes
//! an area out or puts one in — each step O(1) (amortised), none of them a new walk from the
//! root. `pkey_mprotect` of one whole area is thus two walks — the kernel's [`VmaMap::find_from`]
//! for its argument checks, then [`VmaMap::protect`]'s — a change in place, and one look at each
//! neighbour for a merge: at 50,000 areas about 300 instructions more than at one (`make
//! bench`, "Many areas").
//!
//! **Linux** keeps a process's VMAs in the **maple tree** (`mm->mm_mt`, since 6.1): a B-tree of
//! ranges with 16-way nodes, whose lookups run under RCU — without the mmap lock — so that
//! page faults can find their VMA while another thread changes the tree (per-VMA locks); it
//! pays for that with nodes that are copied, not changed in place, and freed after an RCU grace
//! period. Its `struct ma_state` is the same idea as the cursor here: one walk, then work at
//! the spot where it ended. pikku needs no RCU: every reader of the areas holds the address
//! space's lock (`Mm` behind its `RwLock`; the page-fault path takes it too), so a plain B-tree
//! that is changed in place is enough.
//!
//! Its operations follow Linux's rules:
//!
//! * **split** — changing or unmapping part of an area splits it at the range's ends
//!   (Linux: `split_vma`);
//! * **merge** — two adjacent areas with the same protection, the same key, the same memory
//!   policy and compatible backing become one (Linux: `vma_merge`, which compares `vm_flags` —
//!   the key is part of them — and `mpol_equal()`);
//! * **protect** — `mprotect` walks the range area by area; a hole stops it with an error, and
//!   the areas before the hole keep their new protection (Linux's `mprotect` is not atomic);
//! * **set_policy** — `mbind` does the same with the area's NUMA memory policy.
//!
//! This crate is pure logic; the kernel supplies the page tables and frames.

#![cfg_attr(not(test), no_std)]
// Pure logic, compiled for the host and the kernel alike: the compiler guarantees there is no
// `unsafe` here (the house rule: `unsafe` lives only in the kernel's `arch` layer).
#![forbid(unsafe_code)]
// `BTreeMap`'s cursors (unstable, `btree_cursors`; the workspace is pinned to a nightly, see
// `rust-toolchain.toml`): a cursor stands in a gap between two areas after one walk from the
// root, and then reads, changes, splits and merges the areas on both sides of it without
// walking down again — what Linux's maple state (`struct ma_state`) does for the maple tree.
#![feature(btree_cursors)]

extern crate alloc;

use alloc::collections::btree_map::{BTreeMap, Cursor, CursorMut};
use core::ops::Bound;
use alloc::vec::Vec;
use mempolicy::Policy;
use pkeys::Pkey;

pub mod user;
pub use user::{UserRange, TASK_SIZE};

/// The size of a page.
pub const PAGE_SIZE: u64 = 4096;

bitflags::bitflags! {
    /// Access rights of an area, with Linux's `PROT_*` values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        const READ = 0x1;
        const WRITE = 0x2;
        const EXEC = 0x4;
    }
}

/// What fills a page of an area the first time it is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing<F> {
    /// Zeros (anonymous private memory).
    Anonymous,
    /// A private mapping of a file: the page at `vaddr` starts as the file's bytes from
    /// `offset + (vaddr - start)`, for the first `file_len` bytes of the area; zeros after that
    /// (the `.bss` tail of an ELF segment).
    File { file: F, offset: u64, file_len: u64 },
    /// Zeros in 2-MiB pages from the huge-page pool (`MAP_HUGETLB`; Linux: an anonymous
    /// hugetlbfs file of its own, `VM_HUGETLB`). `reserved`: the area's pages not yet
    /// faulted in were reserved in the pool when it was mapped (no `MAP_NORESERVE`; and not in
    /// a child of `fork`, whose areas Linux leaves without reservations). Such an area is
    /// never merged with another (Linux sets `VM_DONTEXPAND`, one of `VM_SPECIAL`), and is cut
    /// only at 2-MiB boundaries (the kernel refuses other cuts first).
    Hugetlb { reserved: bool },
}

/// One virtual memory area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma<F> {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    /// The protection key of every page in the area (Linux: `vma_pkey()`).
    pub pkey: Pkey,
    pub backing: Backing<F>,
    /// The area's NUMA memory policy (`mbind`; Linux: `vma->vm_policy`); `None`: the thread's
    /// policy applies.
    pub policy: Option<Policy>,
}

impl<F: Clone + PartialEq> Vma<F> {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: an area is never empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Does the area contain `addr`?
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Splits the area at `at` (strictly inside, page-aligned) into `[start, at)` and
    /// `[at, end)`. Linux: `split_vma()`.
    pub fn split(self, at: u64) -> (Vma<F>, Vma<F>) {
        debug_assert!(self.start < at && at < self.end && at.is_multiple_of(PAGE_SIZE));
        let left_len = at - self.start;
        let (left_backing, right_backing) = match self.backing {
            Backing::Anonymous => (Backing::Anonymous, Backing::Anonymous),
            Backing::Hugetlb { reserved } => (Backing::Hugetlb { reserved }, Backing::Hugetlb { reserved }),
            Backing::File { file, offset, file_len } => (
                Backing::File { file: file.clone(), offset, file_len: file_len.min(left_len) },
                Backing::File { file, offset: offset + left_len, file_len: file_len.saturating_sub(left_len) },
            ),
        };
        (
            Vma { start: self.start, end: at, prot: self.prot, pkey: self.pkey, backing: left_backing, policy: self.policy },
            Vma { start: at, end: self.end, prot: self.prot, pkey: self.pkey, backing: right_backing, policy: self.policy },
        )
    }

    /// Can `next`, which starts where `self` ends, be merged into `self`? Same protection, same
    /// key, same policy, and backing that continues: both anonymous, or the same file at the
    /// following offset with `self` wholly file-backed (no zero tail in the middle).
    pub fn can_merge(&self, next: &Vma<F>) -> bool {
        if self.end != next.start || self.prot != next.prot || self.pkey != next.pkey || self.policy != next.policy {
            return false;
        }
        match (&self.backing, &next.backing) {
            (Backing::Anonymous, Backing::Anonymous) => true,
            (
                Backing::File { file: f1, offset: o1, file_len: l1 },
                Backing::File { file: f2, offset: o2, .. },
            ) => f1 == f2 && *l1 == self.len() && o1 + self.len() == *o2,
            _ => false,
        }
    }

    fn absorb(&mut self, next: Vma<F>) {
        if let (Backing::File { file_len, .. }, Backing::File { file_len: next_len, .. }) = (&mut self.backing, &next.backing) {
            *file_len += *next_len;
        }
        self.end = next.end;
    }
}

/// `mprotect` ran into a hole: part of the range is not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// The first unmapped address.
    pub at: u64,
}

/// The areas of one address space, sorted by start address.
#[derive(Debug, Clone)]
pub struct VmaMap<F> {
    areas: BTreeMap<u64, Vma<F>>,
}

impl<F> Default for VmaMap<F> {
    fn default() -> Self {
        VmaMap { areas: BTreeMap::new() }
    }
}

impl<F: Clone + PartialEq> VmaMap<F> {
    /// No areas.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    /// No areas at all?
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// All areas in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma<F>> {
        self.areas.values()
    }

    /// A cursor just before the area holding `addr` — or, if no area holds it, in the gap
    /// where `addr` lies: either way the area after the cursor is the first one that ends
    /// above `addr`. One walk from the root (Linux: `vma_iter_init()`, then `vma_find()`).
    fn cursor_at(&self, addr: u64) -> Cursor<'_, u64, Vma<F>> {
        let mut cursor = self.areas.upper_bound(Bound::Included(&addr));
        if cursor.peek_prev().is_some_and(|(_, v)| v.contains(addr)) {
            cursor.prev();
        }
        cursor
    }

    /// [`Self::cursor_at`], for a change: the areas on both sides of the cursor can be
    /// changed, taken out, and put back.
    fn cursor_mut_at(&mut self, addr: u64) -> CursorMut<'_, u64, Vma<F>> {
        let mut cursor = self.areas.upper_bound_mut(Bound::Included(&addr));
        if cursor.peek_prev().is_some_and(|(_, v)| v.contains(addr)) {
            cursor.prev();
        }
        cursor
    }

    /// The area containing `addr`, in O(log n): the last area that starts at or below `addr`,
    /// if it reaches `addr`. One walk from the root. Linux: `vma_lookup()`.
    pub fn find(&self, addr: u64) -> Option<&Vma<F>> {
        self.areas.upper_bound(Bound::Included(&addr)).peek_prev().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// The first area that ends above `addr` (it may start above it): the one [`Self::find`]
    /// finds, else the next one. One walk from the root. Linux: `find_vma()`.
    pub fn find_from(&self, addr: u64) -> Option<&Vma<F>> {
        let cursor = self.areas.upper_bound(Bound::Included(&addr));
        match cursor.peek_prev() {
            Some((_, v)) if v.contains(addr) => Some(v),
            _ => cursor.peek_next().map(|(_, v)| v),
        }
    }

    /// Does any area overlap `[start, end)`?
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.find_from(start).is_some_and(|v| v.start < end)
    }

    /// Do areas cover all of `[start, end)`, without a hole? One walk from the root, then
    /// one step per area in the range (Linux's VMA walk in `madvise_walk_vmas()` reports a
    /// hole as `ENOMEM`).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut cursor = self.cursor_at(start);
        let mut at = start;
        while at < end {
            match cursor.next() {
                Some((_, v)) if v.start <= at => at = v.end,
                _ => return false,
            }
        }
        true
    }

    /// Adds an area where nothing is mapped, merged with its neighbours when they are equal
    /// (Linux: `vma_merge_new_range()`). Returns `false` (and changes nothing) if it would
    /// overlap an existing area. One walk from the root finds the gap; the neighbours are the
    /// areas on either side of it.
    pub fn insert(&mut self, vma: Vma<F>) -> bool {
        if vma.is_empty() {
            return false;
        }
        // The area before the cursor ends at or below `vma.start`; the one after must start at
        // or above `vma.end`.
        let mut cursor = self.cursor_mut_at(vma.start);
        if cursor.peek_next().is_some_and(|(_, after)| after.start < vma.end) {
            return false;
        }
        match cursor.peek_prev() {
            Some((_, before)) if before.can_merge(&vma) => before.absorb(vma),
            _ => cursor.insert_before(vma.start, vma).expect("the gap holds the new area's start"),
        }
        // The area now before the cursor (the new one, or its neighbour that took it in) may
        // take in the area after it.
        merge_across(&mut cursor);
        true
    }

    /// Removes everything in `[start, end)`, splitting the areas at the ends; returns the
    /// removed pieces (whose pages the caller unmaps). One walk from the root, then one step
    /// per area removed. Linux: `do_vmi_munmap()`.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma<F>> {
        let mut removed = Vec::new();
        let mut cursor = self.cursor_mut_at(start);
        while cursor.peek_next().is_some_and(|(_, v)| v.start < end) {
            removed.push(cut_out(&mut cursor, start, end));
        }
        removed
    }

    /// Changes the protection and key of `[start, end)`, area by area, as `mprotect` does:
    /// `new(vma)` gives each area's new `(prot, pkey)`; an area that already has them is left
    /// alone — not split, not reported (Linux `mprotect_fixup()`: `newflags == oldflags`);
    /// the others are split at the ends of the range, changed, handed to `changed` (whose
    /// pages need new page-table entries; Linux calls `change_protection()` there, area by
    /// area), and then merged with equal neighbours. If part of the range is unmapped,
    /// everything before the first hole has been changed and the [`Hole`] says where it is
    /// (Linux: ENOMEM; a hole at `start` changes nothing).
    pub fn protect(&mut self, start: u64, end: u64, new: impl FnMut(&Vma<F>) -> (Prot, Pkey), changed: impl FnMut(&Vma<F>)) -> Result<(), Hole> {
        self.change(start, end, new, |v| (v.prot, v.pkey), |v, (prot, pkey)| {
            v.prot = prot;
            v.pkey = pkey;
        }, changed)
    }

    /// Gives `[start, end)` the memory policy `policy`, area by area, exactly as
    /// [`Self::protect`] changes protections: areas that already have it are left alone, the
    /// others are split at the ends of the range, and equal neighbours merged. A hole stops it
    /// (`mbind` checks for holes before it changes anything). Linux: `mbind_range()` →
    /// `vma_modify_policy()`.
    pub fn set_policy(&mut self, start: u64, end: u64, policy: Option<Policy>) -> Result<(), Hole> {
        self.change(start, end, |_| policy, |v| v.policy, |v, p| v.policy = p, |_| {})
    }

    /// The walk of [`Self::protect`] and [`Self::set_policy`]: `new(vma)` is the attribute an
    /// area should have, `get` reads it, `set` writes it, `changed` hears of every changed
    /// piece before it merges with anything.
    ///
    /// One walk from the root puts a cursor before the area holding `start`; from there the
    /// walk steps from area to area. An area that changes as a whole is changed where it
    /// lies (its key in the tree, its start, stays); only an area cut at an end of the range is
    /// taken out, split, and its pieces put back at the cursor. Each visited area, once the
    /// first change is made, is merged into the area before it when they are now equal; the
    /// last one also with the area after it.
    fn change<A: PartialEq>(
        &mut self,
        start: u64,
        end: u64,
        mut new: impl FnMut(&Vma<F>) -> A,
        get: impl Fn(&Vma<F>) -> A,
        set: impl Fn(&mut Vma<F>, A),
        mut changed: impl FnMut(&Vma<F>),
    ) -> Result<(), Hole> {
        // From here on the area being visited is the one after the cursor.
        let mut cursor = self.cursor_mut_at(start);
        let mut at = start;
        let mut hole = None;
        let mut touched = false;
        while at < end {
            let Some((_, vma)) = cursor.peek_next().filter(|(_, v)| v.start <= at) else {
                hole = Some(Hole { at });
                break;
            };
            let wanted = new(vma);
            if wanted == get(vma) {
                // Already right: not split, not reported (Linux `mprotect_fixup()`).
                at = vma.end;
            } else if vma.start == at && vma.end <= end {
                // The whole area changes: where it lies.
                set(vma, wanted);
                at = vma.end;
                changed(vma);
                touched = true;
            } else {
                // Cut the part in the range out of the area; its parts outside keep the old
                // attribute.
                let mut middle = cut_out(&mut cursor, at, end);
                set(&mut middle, wanted);
                at = middle.end;
                changed(&middle);
                cursor.insert_after(middle.start, middle).expect("the changed part takes the gap");
                touched = true;
            }
            // Step over the visited area — or let the area before it take it in.
            if !(touched && merge_across(&mut cursor)) {
                cursor.next();
            }
        }
        if touched {
            // The last visited area and the one after it (Linux's merge with `next`).
            merge_across(&mut cursor);
        }
        hole.map_or(Ok(()), Err)
    }

    /// Marks every huge-page area as holding no reservations (a child's copy of the map at
    /// `fork`; Linux: `reset_vma_resv_huge_pages()` in `dup_mmap()`).
    pub fn forget_hugetlb_reservations(&mut self) {
        for vma in self.areas.values_mut() {
            if let Backing::Hugetlb { reserved } = &mut vma.backing {
                *reserved = false;
            }
        }
    }

    /// The highest free, page-aligned range of `len` bytes inside `[floor, ceiling)`
    /// (top-down, as Linux's default mmap layout). Linux: `get_unmapped_area()`.
    pub fn find_free(&self, len: u64, floor: u64, ceiling: u64) -> Option<u64> {
        if len == 0 || len > ceiling.saturating_sub(floor) {
            return None;
        }
        let mut top = ceiling;
        // An area that straddles the ceiling lowers it first.
        if let Some(v) = self.find(ceiling.saturating_sub(1)) {
            top = top.min(v.start);
        }
        for vma in self.areas.range(..top).rev().map(|(_, v)| v) {
            if vma.end <= top && top - vma.end >= len {
                return Some(top - len);
            }
            top = top.min(vma.start);
            if top < floor + len {
                return None;
            }
        }
        (top >= floor + len).then(|| top - len)
    }
}

/// Takes the area after `cursor` out of the map and returns its part inside `[from, to)`; its
/// parts before `from` and after `to`, if any, stay in the map, before and after the cursor
/// (Linux: `split_vma()` at each end).
fn cut_out<F: Clone + PartialEq>(cursor: &mut CursorMut<'_, u64, Vma<F>>, from: u64, to: u64) -> Vma<F> {
    let (_, mut inside) = cursor.remove_next().expect("an area after the cursor");
    if inside.start < from {
        let (head, rest) = inside.split(from);
        cursor.insert_before(head.start, head).expect("the head keeps its place");
        inside = rest;
    }
    if inside.end > to {
        let (rest, tail) = inside.split(to);
        cursor.insert_after(tail.start, tail).expect("the tail takes the gap");
        inside = rest;
    }
    inside
}

/// Merges the area after `cursor` into the area before it, if they can merge (Linux:
/// `vma_merge()`'s "extend prev" case); the cursor stays after the (grown) area. Returns whether
/// it merged. Both neighbours of a gap are read without a walk from the root.
fn merge_across<F: Clone + PartialEq>(cursor: &mut CursorMut<'_, u64, Vma<F>>) -> bool {
    let view = cursor.as_cursor();
    let mergeable = matches!((view.peek_prev(), view.peek_next()), (Some((_, before)), Some((_, after))) if before.can_merge(after));
    if mergeable {
        let (_, after) = cursor.remove_next().expect("peeked above");
        cursor.peek_prev().expect("peeked above").1.absorb(after);
    }
    mergeable
}

#[cfg(test)]
mod tests;
