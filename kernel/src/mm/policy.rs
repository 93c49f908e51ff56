//! NUMA memory policy inside an address space: where a new page goes, on which node a page
//! lives, and moving pages between nodes.
//!
//! The rules themselves — modes, masks, which node an interleave picks — are pure logic in the
//! `mempolicy` crate; this module applies them to frames and page tables:
//!
//! * [`alloc_for_fault`] — the ONE place a user page's frame is chosen by policy: the area's
//!   policy, else the faulting thread's, else the local node (Linux: `get_vma_policy()` →
//!   `alloc_pages_mpol()`);
//! * [`Mm::node_of_page_for_read`] — `get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR)`'s look at a page:
//!   faulted in for reading as Linux's `get_user_pages_fast()` does (honouring the caller's PKRU);
//! * [`Mm::misplaced`] and [`Mm::move_page`] — what `mbind(MPOL_MF_STRICT/MOVE)`, `move_pages`
//!   and `migrate_pages` need: pages not on the wanted nodes, and a page copied to a frame on
//!   another node and remapped (Linux: `migrate_pages()` → `migrate_folio()`).

use alloc::vec::Vec;
use mempolicy::{Node, NodeMask, Policy};
use pkeys::{Errno, Pkru};
use vma::{Backing, PAGE_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use super::address_space::Mm;
use super::area::{Access, Area};
use super::{frame, numa};
use crate::arch::x86_64::paging::{self, LeafSize};

/// The frame for a new page at `addr` of `area` (zeroed or filled by the caller). Placement by
/// the area's policy, else the current thread's, else local; the interleave index is
/// `page_offset` for a page of a shared object (its offset in the object), else `addr >> 12`
/// (Linux: `vma->vm_pgoff` + the page's index in the area, which for anonymous memory is the
/// address's page number). `None`: no frame on any allowed node.
pub fn alloc_for_fault(area: &Area, addr: u64, page_offset: Option<u64>) -> Option<PhysFrame> {
    let policy = area.policy.or_else(|| crate::task::with_current(|me| *me.mempolicy.lock()));
    alloc_by(policy.as_ref(), page_offset.unwrap_or(addr / PAGE_SIZE))
}

/// A frame placed by `policy` (`None`: local) for interleave index `index`.
fn alloc_by(policy: Option<&Policy>, index: u64) -> Option<PhysFrame> {
    let place = mempolicy::placement(policy, index, numa::this_node());
    frame::alloc_user_in(place.preferred, place.allowed).or_else(|| if place.then_anywhere { frame::alloc_user_on(place.preferred) } else { None })
}

/// A page of `[start, end)` that sits on a node it should not.
#[derive(Debug, Clone, Copy)]
pub struct Misplaced {
    pub addr: u64,
    /// Mapped by another address space too (a page shared copy-on-write after `fork`).
    pub shared: bool,
}

impl Mm {
    /// The node of the page at `addr`, faulted in for reading first if it is not there —
    /// `get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR)`, which Linux answers with
    /// `get_user_pages_fast(addr, 1, 0)` and `page_to_nid()`. Like that GUP, it refuses
    /// (`EFAULT`) an address without an area, an area that cannot be read (`PROT_NONE`), and a
    /// page whose key the caller's PKRU denies reading — even one already mapped (local GUP
    /// honours keys: `arch_vma_access_permitted()`; reference §10.9).
    pub fn node_of_page_for_read(&mut self, addr: u64, pkru: Pkru) -> Result<Node, Errno> {
        let area = self.vmas.find(addr).cloned().ok_or(Errno::EFAULT)?;
        self.permits(&area, Access::Read, pkru).map_err(|_| Errno::EFAULT)?;
        if self.present_frame(addr).is_none() {
            self.handle_fault(addr, Access::Read, false, false, pkru).map_err(|_| Errno::EFAULT)?;
        }
        self.present_frame(addr).map(numa::frame_node).ok_or(Errno::EFAULT)
    }

    /// The frame mapped at `addr` if its entry is present (or held under `PROT_NONE`); for a
    /// 2-MiB page, the frame of the 4-KiB part holding `addr`.
    pub fn present_frame(&mut self, addr: u64) -> Option<PhysFrame> {
        let page = Page::containing_address(VirtAddr::new(addr & !(PAGE_SIZE - 1)));
        if let Some(entry) = self.root().leaf_entry(page) {
            let bits = entry.flags().bits();
            if bits & (PageTableFlags::PRESENT.bits() | paging::PROT_NONE_BIT) != 0 && !entry.is_unused() {
                return Some(PhysFrame::containing_address(entry.addr()));
            }
        }
        let entry = self.root().huge_leaf_entry(addr)?;
        Some(PhysFrame::containing_address(entry.addr() + (addr & 0x1f_f000)))
    }

    /// The 4-KiB pages in `[start, end)` whose node `wanted` rejects, in address order (huge
    /// pages are never moved: Linux's `mbind` does not split them either and counts them as
    /// placed) — nor is the shared zero frame, which is every node's and no process's (Linux's
    /// page walk skips it too). Linux: `queue_pages_range()`.
    pub fn misplaced(&mut self, start: u64, end: u64, wanted: impl Fn(Node) -> bool) -> Vec<Misplaced> {
        let mut out = Vec::new();
        self.root().for_each_leaf_in(start, end, |addr, frame, _, size| {
            if size == LeafSize::Page && !frame::is_zero_frame(frame) && !wanted(numa::frame_node(frame)) {
                out.push(Misplaced { addr, shared: frame::references(frame) > 1 });
            }
        });
        out
    }

    /// Moves the page at `addr` (mapped only here) to a frame chosen by `policy` for interleave
    /// index `addr >> 12` — `to` overrides it with one node (`move_pages`). First the entry
    /// loses its write bit on every CPU (another thread of the process may be writing to the
    /// page right now: a write after the copy would be lost; now it faults and waits for this
    /// address space's lock), then the data is copied, the entry points at the new frame with
    /// its old flags, every CPU forgets the old translation, and the old frame is freed.
    /// `Ok(node)`: where it is now; `ENOMEM`: no frame there (the page stays). Linux:
    /// `migrate_folio()`, with `try_to_migrate()`'s migration entries in the role of the
    /// cleared write bit, and `remove_migration_ptes()`.
    pub fn move_page(&mut self, addr: u64, policy: Option<&Policy>, to: Option<Node>) -> Result<Node, Errno> {
        let old = self.present_frame(addr).ok_or(Errno::ENOENT)?;
        let new = match to {
            Some(node) => frame::alloc_user_in(node, NodeMask::single(node)),
            None => alloc_by(policy, addr / PAGE_SIZE),
        }
        .ok_or(Errno::ENOMEM)?;
        let page = Page::containing_address(VirtAddr::new(addr & !(PAGE_SIZE - 1)));
        let mut flags = 0;
        let mut tlb = self.tlb_batch();
        self.root().update_leaf(page, &mut tlb, |bits| {
            flags = bits & !paging::FRAME_MASK;
            bits & !PageTableFlags::WRITABLE.bits()
        });
        tlb.flush();
        paging::copy_frame(old, new);
        let new_addr = new.start_address().as_u64();
        let mut tlb = self.tlb_batch();
        self.root().update_leaf(page, &mut tlb, |_| flags | new_addr);
        tlb.flush();
        frame::put(old);
        Ok(numa::frame_node(new))
    }

    /// The policy that places a page of the area at `addr` (the area's, else the current
    /// thread's): what a moved page is placed by when the caller names no node.
    pub fn policy_at(&self, addr: u64) -> Option<Policy> {
        self.vmas.find(addr).and_then(|a| a.policy).or_else(|| crate::task::with_current(|me| *me.mempolicy.lock()))
    }

    /// Is the area at `addr` one whose pages may move (anonymous or a private file copy; a
    /// huge-page area's pages stay put)? Linux: `vma_migratable()`.
    pub fn migratable(&self, addr: u64) -> bool {
        self.vmas.find(addr).is_some_and(|a| !matches!(a.backing, Backing::Hugetlb { .. }))
    }
}
