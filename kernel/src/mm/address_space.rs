//! [`Mm`] — one address space: its page tables and its protection-key state.
//!
//! Linux's `struct mm_struct`, reduced to what pikku needs so far: the page-table root
//! (`mm->pgd`) and `mm->context`'s two pkey fields ([`pkeys::PkeyState`]). Every [`Mm`] lives
//! behind a `crate::sync::RwLock` ([`MmRef`]); the threads of one process share it. The write lock is
//! Linux's `mmap_write_lock`: `pkey_alloc`, `pkey_free`, `mmap`, `munmap`, `mprotect` and
//! `pkey_mprotect` take it — and so does the page-fault path, because filling a page table needs
//! `&mut Mm` (Linux lets faults share the lock as readers and serialises them with per-table
//! locks instead; pikku keeps one lock: faults of one address space on several CPUs take turns,
//! and a fault waits for a `munmap` or `pkey_mprotect` on another CPU to finish, exactly as
//! Linux's readers wait for its writer). Pure queries (`activate`, the
//! shared-futex check) take the read lock. Because changing the key map or the page tables
//! needs `&mut Mm`, and the only way to get `&mut Mm` from an [`MmRef`] is `.write()`, forgetting
//! the lock does not compile.

use alloc::sync::Arc;
use pkeys::{Errno, PkeyState};
use crate::sync::RwLock;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use crate::arch::x86_64::{cpu, paging};
use crate::mm::frame;

/// A shared, lockable address space.
pub type MmRef = Arc<RwLock<Mm>>;

/// One address space.
///
/// Locking: every field is protected by the `RwLock` of its [`MmRef`] (write = Linux's
/// `mmap_write_lock`), taken after an open file's or a pipe's lock and before the kernel root,
/// the frame allocator and the heap. Never held across a block, a switch or a user copy (a
/// fault in the copy waits for this lock, as it must when another CPU holds it).
/// The sharing counts of the frames it maps live in `frame` (atomics, shared between address
/// spaces), not here.
#[derive(Debug)]
pub struct Mm {
    /// The page-table root. Set at creation, taken only by `Drop`; the user half of the tree
    /// changes only through `&mut Mm` (write lock), each change invalidating the TLB before the
    /// lock is released. `activate` (the CR3 load) needs only the read lock.
    root: Option<paging::PageTableRoot>,
    /// Linux: `mm->context.pkey_allocation_map` and `execute_only_pkey`.
    pub pkeys: PkeyState,
    /// The memory areas (Linux: the maple tree of VMAs).
    pub vmas: vma::VmaMap<super::area::MappedFile>,
    /// Where the heap (`brk`) starts: the end of the program's highest segment.
    pub brk_start: u64,
    /// The current program break (Linux: `mm->brk`).
    pub brk: u64,
    /// The CPUs that have this tree loaded in CR3 (bit = CPU index; Linux: `mm_cpumask()`): the
    /// CPUs a TLB flush of this address space must reach. Set by [`Mm::activate`] *before* the
    /// CR3 write, cleared by [`super::tlb::switch_mm`] after the CPU loaded another tree. A CPU
    /// joins only under the read lock (`activate`), so while a writer holds the write lock the
    /// mask can only shrink, and a snapshot taken under it ([`Mm::tlb_batch`]) is enough.
    pub cpus: core::sync::atomic::AtomicU64,
    /// Where the last top-down `mmap` placement landed: the next search starts below it
    /// (Linux's former `free_area_cache`), so placing n mappings costs O(n log n), not O(n²).
    pub free_area_cache: u64,
}

impl Mm {
    /// A fresh, empty address space. Linux: `mm_alloc()` → `mm_init()` → `init_new_context()`:
    /// the key map holds key 0 only when the system has pkeys, nothing otherwise.
    pub fn new() -> Result<Mm, Errno> {
        let root = paging::PageTableRoot::new_user(frame::alloc_user_table).ok_or(Errno::ENOMEM)?;
        Ok(Mm {
            root: Some(root),
            pkeys: PkeyState::init_new_context(cpu::pkey_support()),
            vmas: vma::VmaMap::new(),
            brk_start: 0,
            brk: 0,
            cpus: core::sync::atomic::AtomicU64::new(0),
            free_area_cache: 0,
        })
    }

    /// Wraps the address space for sharing.
    pub fn into_ref(self) -> MmRef {
        Arc::new(RwLock::new(self))
    }

    /// The child's address space at fork, copy-on-write. Linux: `dup_mm()` → `dup_mmap()` →
    /// `copy_page_range()`, and `arch_dup_mmap()` → `arch_dup_pkeys()`.
    ///
    /// * The key allocation map and the execute-only key are copied exactly, and so are the
    ///   memory areas (with their keys) and the program break.
    /// * Every private user page is *shared*: the child maps the same frame with the same
    ///   flags — protection-key bits included — and both sides lose the write bit and gain
    ///   [`paging::COW_BIT`]; the frame's reference count goes up. The first write on either
    ///   side faults, and the fault path gives the writer its own copy (or, if it is the last
    ///   sharer, just the write bit back). (The shared zero frame is mapped the same way; it
    ///   is not counted.)
    /// * Pages of shared memory (`MAP_SHARED | MAP_ANONYMOUS`) are not copied at all: the
    ///   child's area maps the same object, and its first touch of a page maps the object's
    ///   page (Linux's `vma_needs_copy()` is false for a shared mapping).
    pub fn fork(&mut self) -> Result<Mm, Errno> {
        let mut child = Mm::new()?;
        child.pkeys = self.pkeys.dup();
        child.vmas = self.vmas.clone();
        // Linux's `dup_mmap()` → `reset_vma_resv_huge_pages()`: the child's huge-page areas
        // hold no reservations (the parent's stay the parent's).
        child.vmas.forget_hugetlb_reservations();
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        child.free_area_cache = self.free_area_cache;
        // One walk of the parent's tables (skipping what is not mapped, at every level) marks
        // each page copy-on-write and lists it; the child's entries are made from the list.
        let cow = |bits: u64| (bits & !PageTableFlags::WRITABLE.bits()) | paging::COW_BIT;
        let shared: alloc::vec::Vec<(u64, u64)> = self
            .vmas
            .iter()
            .filter(|a| matches!(a.backing, vma::Backing::File { file: super::area::MappedFile::Shmem(_), .. }))
            .map(|a| (a.start, a.end))
            .collect();
        let mut pages = alloc::vec::Vec::new();
        let mut tlb = self.tlb_batch();
        // The walk goes up through the addresses, and so does `shared`: one cursor finds the
        // shared area (if any) of each page, so the cost is pages + areas, whatever the mix.
        let mut cursor = 0;
        self.root().update_leaves(0, paging::USER_END, &mut tlb, |addr, old| {
            while shared.get(cursor).is_some_and(|&(_, end)| end <= addr) {
                cursor += 1;
            }
            if shared.get(cursor).is_some_and(|&(start, _)| start <= addr) {
                return old;
            }
            pages.push((addr, old));
            cow(old)
        });
        // The parent's PTEs lost their write bit: stale writable TLB entries must go.
        tlb.flush();
        for (addr, old) in pages {
            let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(old & paging::FRAME_MASK));
            frame::share(frame);
            let bits = cow(old & !paging::FRAME_MASK);
            // A 2-MiB page is shared whole, its first frame's count standing for all 512
            // (Linux: `copy_hugetlb_page_range()`).
            let (mapped, size) = if paging::is_huge_leaf(old) {
                (child.root().map_huge(addr, frame, bits, frame::alloc_user_table, frame::free), paging::LeafSize::Huge)
            } else {
                let flags = PageTableFlags::from_bits_retain(bits);
                (child.root().map(Page::containing_address(VirtAddr::new(addr)), frame, flags, frame::alloc_user_table), paging::LeafSize::Page)
            };
            if mapped.is_err() {
                super::hugetlb::put_user_leaf(frame, size);
                return Err(Errno::ENOMEM);
            }
        }
        Ok(child)
    }

    pub(super) fn root(&mut self) -> &mut paging::PageTableRoot {
        self.root.as_mut().expect("an Mm always has a root until dropped")
    }

    /// The areas, the key state and the page tables, borrowed apart: `mprotect` walks the
    /// areas once, deciding each one's key and rewriting its page-table entries as it goes.
    pub(super) fn areas_keys_and_tables(&mut self) -> (&mut vma::VmaMap<super::area::MappedFile>, &mut PkeyState, &mut paging::PageTableRoot) {
        let root = self.root.as_mut().expect("an Mm always has a root until dropped");
        (&mut self.vmas, &mut self.pkeys, root)
    }

    /// Calls `f(address, frame, dirty)` for every page of the address space that is in memory,
    /// `dirty` from the PTE's D bit (SDM Vol. 3A §4.8, "Accessed and Dirty Flags"). For
    /// `/proc/self/smaps`; `&mut` only because the walk goes through the page-table root.
    /// Linux: `smaps_pte_entry()`.
    pub fn for_each_resident_page(&mut self, mut f: impl FnMut(u64, PhysFrame, bool)) {
        self.root().for_each_user_page(|page, frame, flags, _| {
            f(page.start_address().as_u64(), frame, flags.contains(PageTableFlags::DIRTY))
        });
    }

    /// Makes this the address space the CPU translates with (CR3), after adding this CPU to
    /// [`Mm::cpus`] — in that order, so that a writer who changes an entry after the CR3 load
    /// always finds this CPU in the mask. (The scheduler goes through [`super::tlb::switch_mm`],
    /// which also takes the CPU out of the previous tree's mask.)
    pub fn activate(&self) {
        if let Some(root) = &self.root {
            let me = 1u64 << crate::arch::x86_64::percpu::this_cpu().cpu_id;
            self.cpus.fetch_or(me, core::sync::atomic::Ordering::SeqCst);
            root.activate();
        }
    }

    /// A TLB batch for a change to this tree: it will reach every other CPU that has the tree
    /// loaded (Linux: `tlb_gather_mmu()`).
    pub fn tlb_batch(&self) -> paging::TlbBatch {
        let root = self.root.as_ref().expect("an Mm always has a root until dropped");
        paging::TlbBatch::new(root, self.cpus.load(core::sync::atomic::Ordering::SeqCst))
    }
}

impl Drop for Mm {
    /// Returns every frame: user pages (huge ones to their pool, with the reservations of
    /// huge-page areas), user page tables, the PML4.
    fn drop(&mut self) {
        if self.root.is_none() {
            return;
        }
        self.release_hugetlb_reservations();
        let Some(root) = self.root.take() else { return };
        if root.frame() == paging::active_root_frame() {
            // Never free the tree the CPU is walking.
            paging::activate_kernel_root();
        }
        root.free(super::hugetlb::put_user_leaf, frame::free);
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

#[cfg(test)]
mod tests {
    use super::*;
    use pkeys::Pkey;

    /// Inspection helpers for the in-kernel tests (here and in [`mm::area`]): they reach into the
    /// page tables directly, which no kernel path outside a test should do.
    impl Mm {
    /// Maps one fresh zeroed user page at `addr` with protection key `key`.
    /// `writable` / `executable` pick the page's R/W and NX bits.
    pub(crate) fn map_zeroed_user_page(&mut self, addr: VirtAddr, writable: bool, executable: bool, key: Pkey) -> Result<(), Errno> {
        if addr.as_u64() >= vma::TASK_SIZE {
            return Err(Errno::EFAULT);
        }
        let frame = frame::alloc_user().ok_or(Errno::ENOMEM)?;
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
        self.root().map(page, frame, flags, frame::alloc_user_table).map_err(|_| {
            frame::put(frame);
            Errno::ENOMEM
        })
    }

    /// Writes `key` into the page-table entry of the page at `addr` (PTE bits 59–62) and
    /// invalidates its TLB entry. `false` if the page is not mapped.
    pub(crate) fn set_page_pkey(&mut self, addr: VirtAddr, key: Pkey) -> bool {
        let mut tlb = self.tlb_batch();
        let done = self.root().update_leaf(Page::containing_address(addr), &mut tlb, |bits| pkeys::pte::with_pkey(bits, key));
        tlb.flush();
        done
    }

    /// The key in the page-table entry of the page at `addr`, if mapped.
    pub(crate) fn page_pkey(&mut self, addr: VirtAddr) -> Option<Pkey> {
        self.root().translate(addr).map(|(_, flags)| pkeys::pte::pkey_of(flags.bits()))
    }

    /// The frame mapped at `addr`, if any.
    pub(crate) fn page_frame(&mut self, addr: VirtAddr) -> Option<PhysFrame> {
        self.root().translate(addr).map(|(frame, _)| frame)
    }

    /// Frames this address space holds (user pages and page tables) — for leak checks.
    pub(crate) fn user_frame_count(&mut self) -> usize {
        let mut n = 0;
        self.root().for_each_user_page(|_, _, _, _| n += 1);
        n
    }
    }
    use crate::arch::x86_64::extable::Fault;
    use crate::arch::x86_64::trap::PageFaultError as E;
    use crate::arch::x86_64::uaccess::{copy_from_user, copy_to_user, UaccessError};
    use crate::ktest::as_fresh_program;
    use crate::syscall::{decode, dispatch, nr};
    use ktest_macros::ktest;
    use pkeys::Support;

    const USER_PAGE: u64 = 0x0000_0010_0000_0000;

    fn key(n: u32) -> Pkey {
        Pkey::new(n).unwrap()
    }

    #[ktest]
    fn a_new_mm_has_key_0_only_with_pkeys_and_nothing_without() {
        let mm = Mm::new().unwrap();
        match cpu::pkey_support() {
            Support::Enabled => assert_eq!(mm.pkeys.allocation_map(), 0x1),
            Support::Absent => assert_eq!(mm.pkeys.allocation_map(), 0x0),
        }
        assert_eq!(mm.pkeys.execute_only_pkey(), None);
    }

    #[ktest]
    fn pte_key_bits_read_back_and_leave_other_bits_alone() {
        let mut mm = Mm::new().unwrap();
        let addr = VirtAddr::new(USER_PAGE);
        mm.map_zeroed_user_page(addr, true, false, Pkey::DEFAULT).unwrap();
        let (_, before) = mm.root().translate(addr).unwrap();
        for k in [5, 15, 1, 0] {
            assert!(mm.set_page_pkey(addr, key(k)));
            assert_eq!(mm.page_pkey(addr), Some(key(k)));
            let (_, flags) = mm.root().translate(addr).unwrap();
            assert_eq!((flags.bits() >> 59) & 0xf, k as u64, "bits 59-62 hold the key");
            assert_eq!(flags.bits() & !(0xf << 59), before.bits() & !(0xf << 59));
        }
        assert!(!mm.set_page_pkey(VirtAddr::new(USER_PAGE + 4096), key(1)), "unmapped page");
    }

    /// The hardware honours a key on a kernel write to a user page: with CR0.WP = 1, WD blocks
    /// supervisor writes (SDM Vol. 3A §4.6.1 "Determination of Access Rights"); the fault is
    /// recovered through the extable.
    #[ktest(needs = pku)]
    fn wd_blocks_kernel_writes_to_user_pages_and_ad_blocks_reads() {
        as_fresh_program(|thread| {
            // A key whose rights are "no writes", through the real syscall path.
            let k = decode(dispatch(nr::PKEY_ALLOC, [0, 2, 0, 0, 0, 0])).unwrap() as u32;
            let addr = VirtAddr::new(USER_PAGE);
            {
                let mut mm = thread.mm.write();
                mm.map_zeroed_user_page(addr, true, false, key(k)).unwrap();
            }
            let mut buf = [0xffu8; 8];
            assert_eq!(copy_from_user(&mut buf, USER_PAGE), Ok(()), "WD allows reads");
            assert_eq!(buf, [0; 8]);

            let err = copy_to_user(USER_PAGE + 8, b"blocked!").unwrap_err();
            let UaccessError::Fault(Fault { vector, error_code, address }) = err else { panic!("{err:?}") };
            assert_eq!(vector, 14, "#PF");
            assert_eq!(address, USER_PAGE + 8, "CR2");
            // Present page, a write, from supervisor mode, refused by the key.
            assert_eq!(error_code as u64, (E::PRESENT | E::WRITE | E::PROTECTION_KEY).bits());

            // Open the key (rights 0): the same write now succeeds and reads back.
            let pkru = crate::arch::x86_64::pkru::read();
            crate::arch::x86_64::pkru::write(pkru.with_rights(key(k), pkeys::AccessRights::empty()));
            copy_to_user(USER_PAGE + 8, b"allowed!").unwrap();
            copy_from_user(&mut buf, USER_PAGE + 8).unwrap();
            assert_eq!(&buf, b"allowed!");

            // AD: even reads fault, with the PK bit and without W.
            let pkru = crate::arch::x86_64::pkru::read();
            crate::arch::x86_64::pkru::write(pkru.with_rights(key(k), pkeys::AccessRights::DISABLE_ACCESS));
            let Err(UaccessError::Fault(f)) = copy_from_user(&mut buf, USER_PAGE) else { panic!("AD must block reads") };
            assert_eq!(f.error_code as u64, (E::PRESENT | E::PROTECTION_KEY).bits());

            // Key 0 memory next door is unaffected by key k's rights.
            thread.mm.write().map_zeroed_user_page(VirtAddr::new(USER_PAGE + 4096), true, false, Pkey::DEFAULT).unwrap();
            copy_to_user(USER_PAGE + 4096, b"key 0 ok").unwrap();
        });
    }

    #[ktest]
    fn fork_shares_pages_copy_on_write_and_keeps_keys() {
        as_fresh_program(|thread| {
            let mut parent = thread.mm.write();
            if cpu::pkey_support() == Support::Enabled {
                parent.pkeys.alloc();
                parent.pkeys.alloc();
                parent.pkeys.execute_only_pkey_for(&mut crate::arch::x86_64::pkru::CurrentPkru);
            }
            // One page with data under key 0 (PKRU 0x55555554 lets us write it), one page
            // tagged with key 3 (which that PKRU denies, so we only look at its PTE).
            let addr = VirtAddr::new(USER_PAGE);
            let tagged = VirtAddr::new(USER_PAGE + 4096);
            // The areas the fault path consults (copy-on-write needs a writable area).
            for (start, k) in [(USER_PAGE, 0), (USER_PAGE + 4096, 3)] {
                let area = vma::Vma { start, end: start + 4096, prot: vma::Prot::READ | vma::Prot::WRITE, pkey: key(k), backing: vma::Backing::Anonymous, policy: None };
                parent.add_area(area).unwrap();
            }
            parent.map_zeroed_user_page(addr, true, false, Pkey::DEFAULT).unwrap();
            parent.map_zeroed_user_page(tagged, true, false, key(3)).unwrap();
            copy_to_user(USER_PAGE, b"parent data").unwrap();

            let mut child = parent.fork().unwrap();
            assert_eq!(child.pkeys, parent.pkeys, "arch_dup_pkeys: map and execute-only key");
            assert_eq!(child.page_pkey(tagged), Some(key(3)), "PTE key bits copied");
            assert_eq!(child.page_pkey(addr), Some(Pkey::DEFAULT));
            let shared = parent.page_frame(addr).unwrap();
            assert_eq!(child.page_frame(addr), Some(shared), "shared until someone writes");
            assert_eq!(frame::references(shared), 2);
            drop(parent);
            // The parent writes: it gets its own copy; the child still sees the old bytes.
            copy_to_user(USER_PAGE, b"parent NEWS").unwrap();
            assert_ne!(thread.mm.write().page_frame(addr), Some(shared), "copied on write");
            assert_eq!(frame::references(shared), 1);
            assert_eq!(thread.mm.write().page_pkey(tagged), Some(key(3)), "the key survives COW");
            child.activate();
            let mut buf = [0u8; 11];
            copy_from_user(&mut buf, USER_PAGE).unwrap();
            thread.mm.read().activate();
            assert_eq!(&buf, b"parent data");
        });
    }

    #[ktest]
    fn dropping_an_mm_returns_every_frame() {
        let before = frame::free_count();
        {
            let mut mm = Mm::new().unwrap();
            for i in 0..64 {
                // Spread over several page tables (one per 2 MiB).
                mm.map_zeroed_user_page(VirtAddr::new(USER_PAGE + i * 0x20_0000), true, false, Pkey::DEFAULT).unwrap();
            }
            assert_eq!(mm.user_frame_count(), 64);
            let copy = mm.fork().unwrap();
            assert!(frame::free_count() < before - 64, "page tables and 64 pages");
            drop(copy);
        }
        assert_eq!(frame::free_count(), before);
    }

    #[ktest]
    fn fork_under_memory_exhaustion_is_enomem_and_leaves_the_parent_intact() {
        as_fresh_program(|thread| {
            let start = frame::free_count();
            {
                let mut mm = thread.mm.write();
                let area = vma::Vma { start: USER_PAGE, end: USER_PAGE + 8 * 4096, prot: vma::Prot::READ | vma::Prot::WRITE, pkey: Pkey::DEFAULT, backing: vma::Backing::Anonymous, policy: None };
                mm.add_area(area).unwrap();
                for i in 0..8 {
                    mm.map_zeroed_user_page(VirtAddr::new(USER_PAGE + i * 4096), true, false, Pkey::DEFAULT).unwrap();
                }
            }
            for i in 0..8u64 {
                copy_to_user(USER_PAGE + i * 4096, &[i as u8 + 1; 16]).unwrap();
            }
            // Take every free frame, then give back just enough for fork to start, not finish.
            let mut hoard = alloc::vec::Vec::new();
            while let Some(f) = frame::alloc() {
                hoard.push(f);
            }
            for _ in 0..3 {
                frame::free(hoard.pop().unwrap());
            }
            let result = thread.mm.write().fork();
            assert_eq!(result.err(), Some(Errno::ENOMEM));
            for f in hoard {
                frame::free(f);
            }
            // The parent still reads its data and can write again (its pages were shared
            // copy-on-write for a moment; with the child gone it is the last sharer).
            for i in 0..8u64 {
                let mut buf = [0u8; 16];
                copy_from_user(&mut buf, USER_PAGE + i * 4096).unwrap();
                assert_eq!(buf, [i as u8 + 1; 16]);
                copy_to_user(USER_PAGE + i * 4096, b"written again").unwrap();
            }
            let mut mm = thread.mm.write();
            mm.unmap_range(USER_PAGE, USER_PAGE + 8 * 4096);
            drop(mm);
            // Page tables of the range stay until the address space goes; the pages are back.
            assert!(frame::free_count() + 4 >= start, "{} vs {start}", frame::free_count());
        });
    }

    #[ktest]
    fn kernel_addresses_are_refused() {
        let mut mm = Mm::new().unwrap();
        assert_eq!(mm.map_zeroed_user_page(VirtAddr::new(0xffff_8000_0000_0000), true, false, Pkey::DEFAULT), Err(Errno::EFAULT));
    }
}
