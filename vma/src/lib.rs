//! # vma — the virtual memory areas of one address space
//!
//! Linux describes a process's memory as a sorted set of *VMAs* (`struct vm_area_struct`):
//! page-aligned, non-overlapping ranges `[start, end)`, each with one protection (`PROT_*`), one
//! protection key, and one backing (anonymous memory, or a file). The page tables are only a
//! cache of what the VMAs say: a page fault inside a VMA maps a page with the VMA's protection
//! and key; a fault outside any VMA, or against its protection, is the program's fault.
//!
//! [`VmaMap`] keeps the areas in a `BTreeMap` keyed by start address, so finding the area of an
//! address is O(log n). Its operations follow Linux's rules:
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

extern crate alloc;

use alloc::collections::BTreeMap;
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

/// What [`VmaMap::protect`] did.
#[derive(Debug)]
#[must_use = "the changed areas need their page-table entries rewritten, and a hole is an error"]
pub struct Protected<F> {
    /// The parts of the range that changed, with their new protection and key (their pages
    /// need new PTEs), before any merge with their neighbours.
    pub changed: Vec<Vma<F>>,
    /// The first unmapped address that stopped the change, if any (Linux: ENOMEM).
    pub hole: Option<Hole>,
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

    /// The area containing `addr`, in O(log n). Linux: `vma_lookup()`.
    pub fn find(&self, addr: u64) -> Option<&Vma<F>> {
        self.areas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// The first area that ends above `addr` (it may start above it). Linux: `find_vma()`.
    pub fn find_from(&self, addr: u64) -> Option<&Vma<F>> {
        if let Some(v) = self.find(addr) {
            return Some(v);
        }
        self.areas.range(addr..).next().map(|(_, v)| v)
    }

    /// Does any area overlap `[start, end)`?
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.find_from(start).is_some_and(|v| v.start < end)
    }

    /// Do areas cover all of `[start, end)`, without a hole? One lookup per area in the
    /// range, however long the range is (Linux's VMA walk in `madvise_walk_vmas()` reports a
    /// hole as `ENOMEM`).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut cursor = start;
        while cursor < end {
            match self.find(cursor) {
                Some(v) => cursor = v.end,
                None => return false,
            }
        }
        true
    }

    /// Adds an area where nothing is mapped, then merges it with equal neighbours.
    /// Returns `false` (and changes nothing) if it would overlap an existing area.
    pub fn insert(&mut self, vma: Vma<F>) -> bool {
        if vma.is_empty() || self.overlaps(vma.start, vma.end) {
            return false;
        }
        let (start, end) = (vma.start, vma.end);
        self.areas.insert(start, vma);
        self.merge_around(start, end);
        true
    }

    /// Splits the area containing `at` so that an area boundary falls on `at`.
    fn split_at(&mut self, at: u64) {
        let Some(start) = self.find(at).filter(|v| v.start != at).map(|v| v.start) else { return };
        let vma = self.areas.remove(&start).expect("found above");
        let (left, right) = vma.split(at);
        self.areas.insert(left.start, left);
        self.areas.insert(right.start, right);
    }

    /// Removes everything in `[start, end)`, splitting the areas at the ends; returns the
    /// removed pieces (whose pages the caller unmaps). Linux: `do_vmi_munmap()`.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma<F>> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.areas.range(start..end).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| self.areas.remove(&k)).collect()
    }

    /// Changes the protection and key of `[start, end)`, area by area, as `mprotect` does:
    /// `new(vma)` gives each area's new `(prot, pkey)`; an area that already has them is left
    /// alone — not split, not reported (Linux `mprotect_fixup()`: `newflags == oldflags`);
    /// the others are split at the ends of the range, changed, and equal neighbours merged
    /// afterwards. If part of the range is unmapped, everything before the first hole has been
    /// changed and [`Protected::hole`] says where it is (Linux: ENOMEM; a hole at `start`
    /// changes nothing).
    ///
    /// Each tree lookup costs a walk from the root, so the loop does one per area: an area
    /// that changes as a whole is changed in place, through that walk (its key, its start,
    /// stays); only an area cut at an end of the range is taken out, split and put back. The
    /// merge afterwards walks the neighbourhood once.
    pub fn protect(&mut self, start: u64, end: u64, new: impl FnMut(&Vma<F>) -> (Prot, Pkey)) -> Protected<F> {
        self.change(start, end, new, |v| (v.prot, v.pkey), |v, (prot, pkey)| {
            v.prot = prot;
            v.pkey = pkey;
        })
    }

    /// Gives `[start, end)` the memory policy `policy`, area by area, exactly as
    /// [`Self::protect`] changes protections: areas that already have it are left alone, the
    /// others are split at the ends of the range, and equal neighbours merged. A hole stops it
    /// ([`Protected::hole`]; `mbind` checks for holes before it changes anything). Linux:
    /// `mbind_range()` → `vma_modify_policy()`.
    pub fn set_policy(&mut self, start: u64, end: u64, policy: Option<Policy>) -> Protected<F> {
        self.change(start, end, |_| policy, |v| v.policy, |v, p| v.policy = p)
    }

    /// The walk of [`Self::protect`] and [`Self::set_policy`]: `new(vma)` is the attribute an
    /// area should have, `get` reads it, `set` writes it.
    fn change<A: PartialEq>(&mut self, start: u64, end: u64, mut new: impl FnMut(&Vma<F>) -> A, get: impl Fn(&Vma<F>) -> A, set: impl Fn(&mut Vma<F>, A)) -> Protected<F> {
        let mut changed = Vec::new();
        let mut cursor = start;
        let mut hole = None;
        // Area by area, splitting only the areas that change and only when they are reached
        // (as `mprotect_fixup` does), so that areas beyond a hole are not touched at all.
        while cursor < end {
            // One walk down the tree per area, for the look and (when the whole area changes)
            // the change itself.
            let Some((_, vma)) = self.areas.range_mut(..=cursor).next_back().filter(|(_, v)| v.contains(cursor)) else {
                hole = Some(Hole { at: cursor });
                break;
            };
            let wanted = new(vma);
            if wanted == get(vma) {
                cursor = vma.end;
                continue;
            }
            if vma.start == cursor && vma.end <= end {
                // The whole area changes: in place, its key in the tree stays.
                set(vma, wanted);
                cursor = vma.end;
                changed.push(vma.clone());
                continue;
            }
            let (vma_start, vma_end) = (vma.start, vma.end);
            // Cut the part in the range out of the area: [vma_start, cursor) and [end, vma_end)
            // keep the old attribute.
            let mut middle = self.areas.remove(&vma_start).expect("found above");
            if vma_start < cursor {
                let (left, right) = middle.split(cursor);
                self.areas.insert(left.start, left);
                middle = right;
            }
            if vma_end > end {
                let (inside, right) = middle.split(end);
                self.areas.insert(right.start, right);
                middle = inside;
            }
            set(&mut middle, wanted);
            cursor = middle.end;
            changed.push(middle.clone());
            self.areas.insert(middle.start, middle);
        }
        if !changed.is_empty() {
            self.merge_around(start, cursor.min(end));
        }
        Protected { changed, hole }
    }

    /// Merges every mergeable pair among the areas touching `[start, end]`: one walk from the
    /// area before `start` to the first area at or after `end` finds the pairs; only the
    /// merges themselves touch the tree again.
    fn merge_around(&mut self, start: u64, end: u64) {
        let from = self.areas.range(..start).next_back().map_or(start, |(k, _)| *k);
        // (the area that absorbs, the area absorbed), in address order.
        let mut merges = Vec::new();
        let mut walk = self.areas.range(from..);
        let Some((mut head, mut previous)) = walk.next().map(|(k, v)| (*k, v)) else { return };
        for (key, vma) in walk {
            if previous.start > end {
                break;
            }
            if previous.can_merge(vma) {
                merges.push((head, *key));
            } else {
                head = *key;
            }
            previous = vma;
        }
        for (head, key) in merges {
            let next = self.areas.remove(&key).expect("walked above");
            self.areas.get_mut(&head).expect("walked above").absorb(next);
        }
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

#[cfg(test)]
mod tests;
