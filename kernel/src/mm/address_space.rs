//! `Mm` — one address space: its page tables and its protection-key state.
//!
//! Linux's `struct mm_struct`, reduced to what pikku needs so far: the page-table root
//! (`mm->pgd`) and `mm->context`'s two pkey fields ([`pkeys::PkeyState`]). Every `Mm` lives
//! behind a [`spin::RwLock`] ([`MmRef`]); the threads of one process share it. The write lock is
//! Linux's `mmap_write_lock`: `pkey_alloc`, `pkey_free` and (later) `mmap`/`mprotect` take it;
//! readers (the page-fault path) take the read lock. Because changing the key map or the page
//! tables needs `&mut Mm`, and the only way to get `&mut Mm` from an `MmRef` is `.write()`,
//! forgetting the lock does not compile.

use alloc::sync::Arc;
use pkeys::{Errno, Pkey, PkeyState};
use spin::RwLock;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use crate::arch::x86_64::{cpu, paging};
use crate::mm::frame;

/// A shared, lockable address space.
pub type MmRef = Arc<RwLock<Mm>>;

/// One address space.
#[derive(Debug)]
pub struct Mm {
    root: Option<paging::PageTableRoot>,
    /// Linux: `mm->context.pkey_allocation_map` and `execute_only_pkey`.
    pub pkeys: PkeyState,
}

impl Mm {
    /// A fresh, empty address space. Linux: `mm_alloc()` → `mm_init()` → `init_new_context()`:
    /// the key map holds key 0 only when the system has pkeys, nothing otherwise.
    pub fn new() -> Result<Mm, Errno> {
        let root = paging::PageTableRoot::new_user(frame::alloc).ok_or(Errno::ENOMEM)?;
        Ok(Mm { root: Some(root), pkeys: PkeyState::init_new_context(cpu::pkey_support()) })
    }

    /// Wraps the address space for sharing.
    pub fn into_ref(self) -> MmRef {
        Arc::new(RwLock::new(self))
    }

    /// The child's address space at fork. Linux: `dup_mm()` → `dup_mmap()` →
    /// `arch_dup_mmap()` → `arch_dup_pkeys()`: the allocation map and the execute-only key are
    /// copied exactly; so is every user page, with its flags — protection-key bits included.
    /// (Pages are copied eagerly here; copy-on-write replaces this when processes arrive.)
    pub fn duplicate(&mut self) -> Result<Mm, Errno> {
        let mut child = Mm::new()?;
        child.pkeys = self.pkeys.dup();
        let mut pages = alloc::vec::Vec::new();
        self.root().for_each_user_page(|page, frame, flags| pages.push((page, frame, flags)));
        for (page, from, flags) in pages {
            let to = frame::alloc().ok_or(Errno::ENOMEM)?;
            paging::copy_frame(from, to);
            if child.root().map(page, to, flags, frame::alloc).is_err() {
                frame::free(to);
                return Err(Errno::ENOMEM);
            }
        }
        Ok(child)
    }

    fn root(&mut self) -> &mut paging::PageTableRoot {
        self.root.as_mut().expect("an Mm always has a root until dropped")
    }

    /// Makes this the address space the CPU translates with (CR3).
    pub fn activate(&self) {
        if let Some(root) = &self.root {
            root.activate();
        }
    }

    /// Is this address space the one loaded in CR3?
    pub fn is_active(&self) -> bool {
        self.root.as_ref().is_some_and(|r| r.frame() == paging::active_root_frame())
    }

    /// Maps one fresh zeroed user page at `addr` with protection key `key`.
    /// `writable` / `executable` pick the page's R/W and NX bits.
    pub fn map_zeroed_user_page(&mut self, addr: VirtAddr, writable: bool, executable: bool, key: Pkey) -> Result<(), Errno> {
        if addr.as_u64() >= paging::USER_END {
            return Err(Errno::EFAULT);
        }
        let frame = frame::alloc().ok_or(Errno::ENOMEM)?;
        paging::zero_frame(frame);
        let mut flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        if writable {
            flags |= PageTableFlags::WRITABLE;
        }
        if !executable {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        let flags = PageTableFlags::from_bits_retain(pkeys::pte::with_pkey(flags.bits(), key));
        let page = Page::containing_address(addr);
        self.root().map(page, frame, flags, frame::alloc).map_err(|_| {
            frame::free(frame);
            Errno::ENOMEM
        })
    }

    /// Writes `key` into the page-table entry of the page at `addr` (PTE bits 59–62) and
    /// invalidates its TLB entry. `false` if the page is not mapped.
    pub fn set_page_pkey(&mut self, addr: VirtAddr, key: Pkey) -> bool {
        self.root().update_flags(Page::containing_address(addr), |bits| pkeys::pte::with_pkey(bits, key))
    }

    /// The key in the page-table entry of the page at `addr`, if mapped.
    pub fn page_pkey(&mut self, addr: VirtAddr) -> Option<Pkey> {
        self.root().translate(addr).map(|(_, flags)| pkeys::pte::pkey_of(flags.bits()))
    }

    /// The frame mapped at `addr`, if any.
    pub fn page_frame(&mut self, addr: VirtAddr) -> Option<PhysFrame> {
        self.root().translate(addr).map(|(frame, _)| frame)
    }

    /// Frames this address space holds (user pages and page tables) — for leak checks.
    pub fn user_frame_count(&mut self) -> usize {
        let mut n = 0;
        self.root().for_each_user_page(|_, _, _| n += 1);
        n
    }
}

impl Drop for Mm {
    /// Returns every frame: user pages, user page tables, the PML4.
    fn drop(&mut self) {
        let Some(mut root) = self.root.take() else { return };
        if root.frame() == paging::active_root_frame() {
            // Never free the tree the CPU is walking.
            paging::activate_kernel_root();
        }
        root.free_user_half(frame::free);
        frame::free(root.into_frame());
    }
}

impl AsRef<PkeyState> for Mm {
    fn as_ref(&self) -> &PkeyState {
        &self.pkeys
    }
}

impl AsMut<PkeyState> for Mm {
    fn as_mut(&mut self) -> &mut PkeyState {
        &mut self.pkeys
    }
}
