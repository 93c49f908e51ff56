//! Page tables: the only code that writes paging structures, loads CR3 or flushes the TLB.
//!
//! x86-64 4-level paging (Intel SDM Vol. 3A §4.5 "IA-32e Paging"): CR3 → PML4 → PDPT → PD → PT →
//! 4-KiB page.
//! The bootloader maps all physical memory at a fixed offset in the upper half
//! (`BootloaderConfig::mappings.physical_memory`), so any frame — including page-table frames —
//! is reachable at `phys + offset`. The `x86_64` crate's [`OffsetPageTable`] walks and edits the
//! tables through that window.
//!
//! Ownership: a [`PageTableRoot`] is a PML4 frame. It is neither `Clone` nor `Copy`, and every
//! function that changes a tree takes `&mut PageTableRoot` — so changing a user address space's
//! tables requires its `Mm` write lock, and the kernel's own tree sits behind a mutex.
//!
//! The upper half (PML4 entries 256..511) is the kernel's and is shared by every address space:
//! a new root copies those 256 entries from the kernel's root. The lower half belongs to user
//! space. Protection keys live in bits 59–62 of the leaf entries (see [`pkeys::pte`]).
//!
//! TLB: a function that changes one present entry invalidates that page (INVLPG) before it
//! returns; the range functions gather the pages they change in a [`TlbBatch`], invalidated
//! once per call; freeing a whole user half of the active tree reloads CR3. When pikku runs on
//! several CPUs, these are the places that will send shootdown IPIs.

use spin::{Mutex, Once};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, Mapper, TranslateResult, Translate};
use x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::{PhysAddr, VirtAddr};

static PHYS_OFFSET: Once<u64> = Once::new();
static KERNEL_ROOT: Once<Mutex<PageTableRoot>> = Once::new();

/// First address above user space: the lower canonical half ends here.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// A software bit (bit 9 is "Ignored" — free for software — in SDM Vol. 3A Table 4-19
/// "Format of an IA-32e Page-Table Entry that Maps a 4-KByte Page") marking a leaf
/// entry whose PRESENT bit was cleared by `mprotect(PROT_NONE)` while it keeps its frame — the
/// idea of Linux's `_PAGE_PROTNONE`. Such a page faults on every access, and becomes present
/// again, with its data, when its area becomes accessible.
pub const PROT_NONE_BIT: u64 = 1 << 9;

/// A software bit (bit 10, also "Ignored" in SDM Vol. 3A Table 4-19) marking a page shared
/// copy-on-write after `fork`: read-only in every address space that maps it, whatever its
/// area allows, until a write fault gives the writer its own copy.
pub const COW_BIT: u64 = 1 << 10;

/// The physical-address bits of a page-table entry (bits 12–51, SDM Vol. 3A Table 4-19).
pub const FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A PML4 frame: the root of one page-table tree.
#[derive(Debug)]
pub struct PageTableRoot {
    frame: PhysFrame,
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No free frame for an intermediate table.
    OutOfFrames,
    /// The page is already mapped.
    AlreadyMapped,
    /// A huge page is in the way.
    HugePage,
}

/// Hands [`OffsetPageTable`] frames for intermediate tables from any source.
struct FrameSource<'a>(&'a mut dyn FnMut() -> Option<PhysFrame>);

// SAFETY: the closure hands out frames the frame allocator marked as used; each frame is
// handed out once and is not in use elsewhere.
unsafe impl FrameAllocator<Size4KiB> for FrameSource<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = (self.0)()?;
        zero_frame(frame);
        Some(frame)
    }
}

/// Records where physical memory is mapped and adopts the bootloader's page tables as the
/// kernel's. Called once at boot.
pub fn init(physical_memory_offset: u64) {
    PHYS_OFFSET.call_once(|| physical_memory_offset);
    let (frame, _) = Cr3::read();
    KERNEL_ROOT.call_once(|| Mutex::new(PageTableRoot { frame }));
}

/// The virtual address at which physical address `phys` can be accessed.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(phys.as_u64() + PHYS_OFFSET.get().expect("paging::init not called"))
}

/// Fills a frame with zeros.
pub fn zero_frame(frame: PhysFrame) {
    let ptr = phys_to_virt(frame.start_address()).as_mut_ptr::<u8>();
    // SAFETY: the physical-memory window maps every frame; the caller owns `frame` (it was just
    // allocated), so nothing else reads or writes it concurrently.
    unsafe { core::ptr::write_bytes(ptr, 0, 4096) };
}

/// Writes `bytes` into `frame` at byte offset `at` (which with `bytes` must stay inside it).
pub fn write_frame(frame: PhysFrame, at: usize, bytes: &[u8]) {
    assert!(at + bytes.len() <= 4096, "write past the end of a frame");
    let dst = phys_to_virt(frame.start_address()).as_mut_ptr::<u8>();
    // SAFETY: the physical window maps the frame; the bounds were checked above; the caller
    // owns the frame (it is being filled before it is mapped).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(at), bytes.len()) };
}

/// Reads `out.len()` bytes of `frame` from byte offset `at` (which with `out` must stay
/// inside it).
pub fn read_frame(frame: PhysFrame, at: usize, out: &mut [u8]) {
    assert!(at + out.len() <= 4096, "read past the end of a frame");
    let src = phys_to_virt(frame.start_address()).as_ptr::<u8>();
    // SAFETY: the physical window maps the frame; the bounds were checked above; the caller
    // holds the lock of the address space that maps it, so no one frees it meanwhile (a user
    // thread may write it concurrently: bytes, no invariant to break).
    unsafe { core::ptr::copy_nonoverlapping(src.add(at), out.as_mut_ptr(), out.len()) };
}

/// Copies one frame's contents into another.
pub fn copy_frame(from: PhysFrame, to: PhysFrame) {
    let src = phys_to_virt(from.start_address()).as_ptr::<u8>();
    let dst = phys_to_virt(to.start_address()).as_mut_ptr::<u8>();
    // SAFETY: both frames are mapped through the physical window; `to` is owned by the caller
    // and distinct from `from` (a fresh allocation).
    unsafe { core::ptr::copy_nonoverlapping(src, dst, 4096) };
}

fn table(frame: &PhysFrame) -> *mut PageTable {
    phys_to_virt(frame.start_address()).as_mut_ptr()
}

impl PageTableRoot {
    /// The PML4's physical frame (what CR3 holds).
    pub fn frame(&self) -> PhysFrame {
        self.frame
    }

    /// A new tree: an empty user half and the kernel's upper half.
    pub fn new_user(mut alloc: impl FnMut() -> Option<PhysFrame>) -> Option<PageTableRoot> {
        let frame = alloc()?;
        zero_frame(frame);
        let kernel = kernel_root().lock();
        // SAFETY: both frames are PML4s reachable through the physical window; `frame` is
        // fresh and the kernel root is locked, so neither is being modified elsewhere.
        unsafe {
            let (src, dst) = (&*table(&kernel.frame), &mut *table(&frame));
            for i in 256..512 {
                dst[i] = src[i].clone();
            }
        }
        Some(PageTableRoot { frame })
    }

    fn mapper(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: `&mut self` guarantees exclusive access to this tree (see the module docs);
        // the physical window maps every table frame at PHYS_OFFSET.
        unsafe { OffsetPageTable::new(&mut *table(&self.frame), VirtAddr::new(*PHYS_OFFSET.get().unwrap())) }
    }

    /// Maps `page` to `frame` with `flags` (which may carry key bits 59–62). Intermediate tables
    /// get PRESENT | WRITABLE, plus USER_ACCESSIBLE in the lower half: a page is a user page
    /// only if U/S is set at every level (SDM Vol. 3A §4.6.1 "Determination of Access Rights").
    pub fn map(
        &mut self,
        page: Page,
        frame: PhysFrame,
        flags: PageTableFlags,
        mut alloc: impl FnMut() -> Option<PhysFrame>,
    ) -> Result<(), MapError> {
        let mut parent = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        if page.start_address().as_u64() < USER_END {
            parent |= PageTableFlags::USER_ACCESSIBLE;
        }
        let mut source = FrameSource(&mut alloc);
        // SAFETY: the caller owns `frame` and hands it to this mapping; mapping a fresh page
        // cannot break existing references (`AlreadyMapped` is refused).
        let result = unsafe { self.mapper().map_to_with_table_flags(page, frame, flags, parent, &mut source) };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::HugePage),
        }
    }

    /// The frame and leaf flags of the 4-KiB page containing `addr`, if mapped.
    pub fn translate(&mut self, addr: VirtAddr) -> Option<(PhysFrame, PageTableFlags)> {
        match self.mapper().translate(addr) {
            TranslateResult::Mapped { frame: MappedFrame::Size4KiB(frame), flags, .. } => Some((frame, flags)),
            _ => None,
        }
    }

    /// Loads this tree into CR3 (SDM Vol. 3A §4.5; a CR3 write flushes non-global TLB entries:
    /// §4.10.4.1 "Operations that Invalidate TLBs and Paging-Structure Caches").
    pub fn activate(&self) {
        // SAFETY: the tree contains the kernel's upper half (copied at creation), so the code,
        // stack and data in use stay mapped across the switch.
        unsafe { Cr3::write(self.frame, Cr3Flags::empty()) };
    }

    /// Releases every user-half page through `put_page` (pages may be shared) and frees every
    /// user-half table through `free_table`, leaving an empty user half. Huge pages do not
    /// occur in the user half (pikku maps 4-KiB pages only).
    pub fn free_user_half(&mut self, mut put_page: impl FnMut(PhysFrame), mut free_table: impl FnMut(PhysFrame)) {
        fn walk(frame: PhysFrame, level: u8, put_page: &mut dyn FnMut(PhysFrame), free_table: &mut dyn FnMut(PhysFrame)) {
            // SAFETY: `frame` is a page table of this tree, reachable through the physical
            // window; the caller holds `&mut PageTableRoot`, so nothing walks it concurrently.
            let table = unsafe { &mut *table(&frame) };
            for entry in table.iter_mut() {
                if entry.is_unused() {
                    continue;
                }
                let child = PhysFrame::containing_address(entry.addr());
                if level > 1 {
                    walk(child, level - 1, put_page, free_table);
                    free_table(child);
                } else {
                    put_page(child);
                }
                entry.set_unused();
            }
        }
        // SAFETY: as above, for the PML4 itself.
        let pml4 = unsafe { &mut *table(&self.frame) };
        for entry in pml4.iter_mut().take(256) {
            if entry.is_unused() {
                continue;
            }
            let child = PhysFrame::containing_address(entry.addr());
            walk(child, 3, &mut put_page, &mut free_table);
            free_table(child);
            entry.set_unused();
        }
        if active_root_frame() == self.frame {
            flush_all();
        }
    }

    /// The last-level table (the one holding 4-KiB leaf entries) that covers `addr`, if every
    /// table above it exists (Intel SDM Vol. 3A §4.5: PML4 → PDPT → PD → PT).
    fn last_level_table(&mut self, addr: VirtAddr) -> Option<&mut PageTable> {
        let page = Page::<Size4KiB>::containing_address(addr);
        let mut table = table(&self.frame);
        for index in [page.p4_index(), page.p3_index(), page.p2_index()] {
            // SAFETY: `table` is a table of this tree (the root, or a child found through a
            // present, non-huge entry), reachable through the physical window; `&mut self`
            // excludes concurrent access.
            let entry = unsafe { &(&*table)[index] };
            if !entry.flags().contains(PageTableFlags::PRESENT) || entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                return None;
            }
            table = self::table(&PhysFrame::containing_address(entry.addr()));
        }
        // SAFETY: as above, for the last-level table; the borrow is tied to `&mut self`.
        Some(unsafe { &mut *table })
    }

    /// The 4-KiB leaf entry for `page`, if every table above it exists. Unlike
    /// [`Self::translate`] this also finds entries whose PRESENT bit is clear but which still
    /// hold a frame (pikku's `PROT_NONE` pages, see [`PROT_NONE_BIT`]).
    pub fn leaf_entry(&mut self, page: Page) -> Option<&mut PageTableEntry> {
        let entry = &mut self.last_level_table(page.start_address())?[page.p1_index()];
        (!entry.is_unused()).then_some(entry)
    }

    /// Rewrites the raw leaf entry of `page` with `f` and invalidates its TLB entry. Returns
    /// `false` if there is no entry.
    pub fn update_leaf(&mut self, page: Page, f: impl FnOnce(u64) -> u64) -> bool {
        let Some(entry) = self.leaf_entry(page) else { return false };
        rewrite(entry, f);
        x86_64::instructions::tlb::flush(page.start_address());
        true
    }

    /// Calls `f(address, entry)` for every leaf entry in use (present, or holding a frame) in
    /// `[start, end)` of the user half, descending only into tables that exist: an empty
    /// entry at *any* level — PML4, PDPT, PD — skips everything it would map (512 GiB, 1 GiB,
    /// 2 MiB) in one step, so the cost follows what is mapped, not how long the range is.
    /// Linux: the `pgd_offset()` → `p4d`/`pud`/`pmd_none_or_clear_bad()` → `pte` walk with
    /// `*_addr_end()` that `zap_page_range()`, `change_protection()` and `copy_page_range()`
    /// share. Addresses outside the user half are simply not visited.
    fn walk_user_leaves(&mut self, start: u64, end: u64, f: &mut dyn FnMut(u64, &mut PageTableEntry)) {
        /// Bytes one entry of a table at `level` maps (level 1 = PT: 4 KiB … level 4 = PML4:
        /// 512 GiB; Intel SDM Vol. 3A §4.5, Figure 4-8).
        fn span(level: u8) -> u64 {
            1 << (12 + 9 * (level as u64 - 1))
        }
        /// `[start, end)` is non-empty and lies inside the 512 entries of the table at
        /// `level` that maps from `base`.
        fn walk(frame: PhysFrame, level: u8, base: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, &mut PageTableEntry)) {
            // SAFETY: `frame` is a table of this tree (the root, or a child found through a
            // used, non-huge entry), reachable through the physical window; the caller holds
            // `&mut PageTableRoot`, so nothing walks or edits it concurrently.
            let table = unsafe { &mut *table(&frame) };
            let span = span(level);
            let (first, last) = ((start - base) / span, (end - 1 - base) / span);
            for i in first..=last {
                let entry = &mut table[i as usize];
                if entry.is_unused() {
                    continue;
                }
                let addr = base + i * span;
                if level == 1 {
                    f(addr, entry);
                } else if !entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    let child = PhysFrame::containing_address(entry.addr());
                    walk(child, level - 1, addr, start.max(addr), end.min(addr + span), f);
                }
            }
        }
        let end = end.min(USER_END);
        if start < end {
            walk(self.frame, 4, 0, start, end, f);
        }
    }

    /// Rewrites every leaf entry in `[start, end)` that is in use (present, or holding a frame)
    /// with `f(address, old)`, adding each page to `tlb` (invalidated once, by the caller,
    /// with [`TlbBatch::flush`]). Linux: `change_protection()` → `change_pte_range()`.
    pub fn update_leaves(&mut self, start: u64, end: u64, tlb: &mut TlbBatch, mut f: impl FnMut(u64, u64) -> u64) {
        self.walk_user_leaves(start, end, &mut |addr, entry| {
            rewrite(entry, |old| f(addr, old));
            tlb.add(addr);
        });
    }

    /// Removes every leaf entry in `[start, end)` (present or not), handing each frame to
    /// `put` and each page to `tlb`. Page tables stay (as Linux keeps them until
    /// `free_pgtables()`). Linux: `zap_page_range_single()` → `zap_pte_range()`.
    pub fn unmap_leaves(&mut self, start: u64, end: u64, tlb: &mut TlbBatch, mut put: impl FnMut(PhysFrame)) {
        self.walk_user_leaves(start, end, &mut |addr, entry| {
            put(PhysFrame::containing_address(entry.addr()));
            entry.set_unused();
            tlb.add(addr);
        });
    }

    /// Removes the mapping of `page` (a kernel page: a kernel stack's) and invalidates its TLB
    /// entry; returns the frame it mapped. `None` if it was not mapped.
    pub(super) fn unmap_leaf(&mut self, page: Page) -> Option<PhysFrame> {
        let entry = self.leaf_entry(page)?;
        let frame = PhysFrame::containing_address(entry.addr());
        entry.set_unused();
        x86_64::instructions::tlb::flush(page.start_address());
        Some(frame)
    }

    /// Calls `f(page, frame, leaf flags)` for every mapped 4-KiB page of the user half.
    #[cfg(test)] // used by the in-kernel tests only
    pub fn for_each_user_page(&mut self, mut f: impl FnMut(Page, PhysFrame, PageTableFlags)) {
        self.walk_user_leaves(0, USER_END, &mut |addr, entry| {
            f(Page::containing_address(VirtAddr::new(addr)), PhysFrame::containing_address(entry.addr()), entry.flags());
        });
    }

    /// Consumes the root, returning its PML4 frame (to be freed once its user half is empty
    /// and no CPU has it loaded).
    pub fn into_frame(self) -> PhysFrame {
        self.frame
    }
}

/// Replaces a leaf entry's raw value (frame address and flags together) with `f(old)`.
fn rewrite(entry: &mut PageTableEntry, f: impl FnOnce(u64) -> u64) {
    let old = entry.flags().bits() | entry.addr().as_u64();
    let new = f(old);
    entry.set_addr(PhysAddr::new(new & FRAME_MASK), PageTableFlags::from_bits_retain(new & !FRAME_MASK));
}

/// Creates the top-level (PML4) entry of a kernel virtual region — an empty PDPT — in the
/// kernel's tree. Called at boot for every region the kernel maps into later (the growable heap,
/// the kernel stacks): a new address space copies the kernel half's PML4 entries once, when it
/// is made ([`PageTableRoot::new_user`]), so a PML4 entry created afterwards would be missing
/// from every address space made before it. Entries below the PML4 are shared, so whatever is
/// mapped under this slot later is seen by every address space. `pdpt` is a fresh frame that
/// becomes the region's PDPT. Panics if the slot is in use (the bootloader put something there).
pub fn create_kernel_region_slot(start: VirtAddr, pdpt: PhysFrame) {
    assert!(start.as_u64() >= 0xffff_8000_0000_0000, "{start:?} is not in the kernel half");
    let root = kernel_root().lock();
    let index = usize::from(start.p4_index());
    zero_frame(pdpt);
    // SAFETY: the kernel's PML4 is reachable through the physical window and its lock is held;
    // the entry is checked to be unused, so no existing mapping changes.
    let pml4 = unsafe { &mut *table(&root.frame) };
    assert!(pml4[index].is_unused(), "PML4 slot {index} ({start:?}) is already in use");
    pml4[index].set_frame(pdpt, PageTableFlags::PRESENT | PageTableFlags::WRITABLE);
}

/// The kernel's own tree (the bootloader's, adopted at boot).
pub(super) fn kernel_root() -> &'static Mutex<PageTableRoot> {
    KERNEL_ROOT.get().expect("paging::init not called")
}

/// Backs the unused kernel range `start .. start + len` (page-aligned) with fresh frames,
/// mapped writable and not executable, and hands out what it mapped as memory nobody else can
/// reach — the one way kernel code outside `arch` gets a new region of its own (the heap's
/// memory comes from here). Pages take their frames from `page_frames`, any page table the range
/// needs from `table_frames`; when either runs dry the mapping stops (a page's frame that found
/// no table goes back through `unused`), and the slice covers the pages mapped so far (possibly
/// none). Panics if a page of the range is already mapped: two owners of one region would break
/// the exclusive borrow this returns.
pub fn map_fresh_kernel_region(
    start: VirtAddr,
    len: u64,
    mut page_frames: impl FnMut() -> Option<PhysFrame>,
    mut table_frames: impl FnMut() -> Option<PhysFrame>,
    mut unused: impl FnMut(PhysFrame),
) -> &'static mut [core::mem::MaybeUninit<u8>] {
    assert!(start.is_aligned(4096u64) && len.is_multiple_of(4096), "unaligned kernel region");
    assert!(start.as_u64() >= 0xffff_8000_0000_0000, "{start:?} is not in the kernel half");
    let stacks = VirtAddr::new(super::context::KERNEL_STACKS_START).p4_index();
    assert!(start.p4_index() != stacks && (start + len.saturating_sub(1)).p4_index() != stacks, "not in the kernel-stack region");
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    let mut root = kernel_root().lock();
    let mut mapped = 0;
    while mapped < len {
        let page = Page::containing_address(start + mapped);
        assert!(root.translate(page.start_address()).is_none(), "kernel region {start:?} is already mapped");
        let Some(frame) = page_frames() else { break };
        if root.map(page, frame, flags, &mut table_frames).is_err() {
            // No frame for a page table: the page's own frame goes back where it came from.
            unused(frame);
            break;
        }
        mapped += 4096;
    }
    // SAFETY: every page of `start .. start + mapped` was unmapped a moment ago (checked above,
    // under the kernel root's lock) and is now backed by a frame that nothing else owns. The only
    // kernel mapping ever removed is a kernel stack's page, by that stack's own `Drop`, inside the
    // kernel-stack region — which this function refuses (asserted above) — and the kernel root
    // and `unmap_leaf` are reachable from `arch` alone. So the range is valid, writable memory for
    // `'static`, and this is the only reference to it. `MaybeUninit` makes no claim about its
    // contents.
    unsafe { core::slice::from_raw_parts_mut(start.as_mut_ptr(), mapped as usize) }
}

/// The PML4 frame CR3 holds now.
pub fn active_root_frame() -> PhysFrame {
    Cr3::read().0
}

/// Loads the kernel's own tree into CR3.
pub fn activate_kernel_root() {
    kernel_root().lock().activate();
}

/// Beyond this many pages, [`invalidate_range`] reloads CR3 instead of one INVLPG per page: a
/// full flush plus the refills it causes is cheaper than dozens of INVLPGs. Linux uses 33
/// (`tlb_single_page_flush_ceiling`); so does pikku.
pub const FLUSH_ALL_THRESHOLD: u64 = 33;

/// Invalidates the TLB entries of the pages in `[start, end)`: INVLPG each (SDM Vol. 2A
/// "INVLPG—Invalidate TLB Entries"; Vol. 3A §4.10.4 "Invalidation of TLBs and Paging-Structure
/// Caches"), or a full flush past [`FLUSH_ALL_THRESHOLD`] pages, so the cost never follows the
/// length of the range. Linux: `flush_tlb_mm_range()`. The one place that will send
/// shootdown IPIs when pikku runs on several CPUs.
pub fn invalidate_range(start: u64, end: u64) {
    let pages = end.saturating_sub(start) / 4096;
    if pages > FLUSH_ALL_THRESHOLD {
        flush_all();
    } else {
        for i in 0..pages {
            x86_64::instructions::tlb::flush(VirtAddr::new(start + i * 4096));
        }
    }
}

/// The span of pages whose entries one call changed, gathered so the TLB is invalidated once
/// per call with [`invalidate_range`], not once per page (Linux: `struct mmu_gather`'s
/// `start`/`end`, flushed by `tlb_finish_mmu()`). Dropping it without [`TlbBatch::flush`]
/// would leave stale translations: every caller flushes before it returns (`#[must_use]` only
/// catches a batch made and never used).
#[derive(Debug, Default)]
#[must_use = "changed entries stay in the TLB until the batch is flushed"]
pub struct TlbBatch {
    start: u64,
    end: u64,
}

impl TlbBatch {
    /// Adds the page at `addr` (a user address: below [`USER_END`]).
    pub fn add(&mut self, addr: u64) {
        if self.start == self.end {
            self.start = addr;
        }
        self.start = self.start.min(addr);
        self.end = self.end.max(addr + 4096);
    }

    /// Invalidates every page added (nothing if none was).
    pub fn flush(self) {
        if self.start < self.end {
            invalidate_range(self.start, self.end);
        }
    }
}

/// Flushes all non-global TLB entries (CR3 reload).
pub fn flush_all() {
    x86_64::instructions::tlb::flush_all();
}
