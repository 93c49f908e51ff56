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
//! User leaves come in two sizes ([`LeafSize`]): 4-KiB pages (a PTE) and 2-MiB huge pages
//! (`MAP_HUGETLB`: a PDE with PS set, bit 7, whose layout — the key in bits 62:59 included —
//! is SDM Vol. 3A Table 4-17 "Format of an IA-32e Page-Directory Entry that Maps a 2-MByte
//! Page"). Every walker of the user half knows both: a PDE with PS is a leaf, never a table.
//!
//! TLB: every function that changes user entries gathers the pages it changed in a
//! [`TlbBatch`], which the caller flushes once per call — on this CPU and, through
//! [`super::shootdown`], on every other CPU that may cache the tree; pages the change freed
//! go back to the allocator only after that flush. A kernel stack's unmapped pages are shot
//! down on every CPU. Freeing a whole user half happens only to a tree no CPU has loaded.
//!
//! Guarded page tables ([`super::pks`]): with PKS on, every page-table frame carries
//! [`pks::PAGE_TABLE_KEY`] in its physical-map entry, which is
//! read-only outside a write window. So every function here that writes a table opens one
//! [`Window`] for the whole operation (nested calls nest into it), a new table is keyed
//! ([`new_table`]) before it is zeroed and hooked in, and a table that is freed goes back to
//! key 0 and is forgotten by every CPU's TLB before its frame is reused ([`Retired`]). The
//! physical map's 2-MiB pages are split to 4 KiB at boot wherever a page table may live
//! ([`guard_page_tables`]), so that one frame can carry a key of its own.

use super::pks::{self, Window};
use super::sync::Mutex;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, Mapper, TranslateResult, Translate};
use x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::{PhysAddr, VirtAddr};

static PHYS_OFFSET: Once<u64> = Once::new();
static KERNEL_ROOT: Once<Mutex<PageTableRoot>> = Once::new();
/// The kernel root's frame, for the lock-free walks of the kernel half ([`kernel_leaf`]): the
/// frame never changes, and the physical map's tables above its leaves never change after
/// [`guard_page_tables`].
static KERNEL_ROOT_FRAME: Once<PhysFrame> = Once::new();

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

/// How much one user leaf entry maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafSize {
    /// A 4-KiB page: an entry of a page table (SDM Vol. 3A Table 4-19).
    Page,
    /// A 2-MiB page: a page-directory entry with PS (bit 7) set (SDM Vol. 3A Table 4-17).
    Huge,
}

/// Bytes a 2-MiB page maps.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// Is the raw leaf entry `raw`, as [`PageTableRoot::update_leaves`] hands it out, a 2-MiB
/// page? Its PS bit (bit 7) says so. In a 4-KiB PTE bit 7 is PAT instead, which pikku never
/// sets (every user page is write-back, PAT entry 0: SDM Vol. 3A §11.12.3 "Selecting a Memory
/// Type from the PAT"), so the test cannot mistake one for the other.
pub fn is_huge_leaf(raw: u64) -> bool {
    raw & PageTableFlags::HUGE_PAGE.bits() != 0
}

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
        new_table(&mut self.0)
    }
}

/// Records where physical memory is mapped and adopts the bootloader's page tables as the
/// kernel's. Called once at boot.
pub fn init(physical_memory_offset: u64) {
    PHYS_OFFSET.call_once(|| physical_memory_offset);
    let (frame, _) = Cr3::read();
    KERNEL_ROOT_FRAME.call_once(|| frame);
    KERNEL_ROOT.call_once(|| Mutex::new(PageTableRoot { frame }));
}

/// A fresh page table from `alloc`: keyed as a page table (when PKS guards them) and zeroed,
/// inside a window. Every table frame pikku makes comes from here.
fn new_table(alloc: &mut dyn FnMut() -> Option<PhysFrame>) -> Option<PhysFrame> {
    let frame = alloc()?;
    adopt_table(frame);
    Some(frame)
}

/// Makes the fresh frame `frame` a page table: keyed, then zeroed (inside a window).
fn adopt_table(frame: PhysFrame) {
    let _window = Window::open();
    if pks::enabled() {
        set_frame_key(frame, pks::PAGE_TABLE_KEY);
    }
    zero_frame(frame);
}

/// The leaf entry that maps the kernel address `virt` in the kernel's tree, with its level (1:
/// a 4-KiB PTE, 2: a 2-MiB PDE, 3: a 1-GiB PDPTE; SDM Vol. 3A §4.5), as an atomic (the CPU
/// sets Accessed and Dirty in it concurrently, atomically: §4.8 "Accessed and Dirty Flags").
/// A lock-free walk: only for the physical map (whose tables are fixed after boot) and for
/// reports.
fn kernel_leaf(virt: VirtAddr) -> Option<(&'static AtomicU64, u8)> {
    let root = *KERNEL_ROOT_FRAME.get()?;
    let indexes = [virt.p4_index(), virt.p3_index(), virt.p2_index(), Page::<Size4KiB>::containing_address(virt).p1_index()];
    let mut table = root;
    for (depth, index) in indexes.into_iter().enumerate() {
        let level = 4 - depth as u8;
        let ptr = (phys_to_virt(table.start_address()).as_u64() + usize::from(index) as u64 * 8) as *const AtomicU64;
        // SAFETY: `table` is a page table of the kernel's tree (the root, or a child found
        // through a present, non-huge entry), mapped through the physical window; an entry is an
        // aligned u64, which an AtomicU64 may alias — every write to it is atomic (the CPU's
        // A/D updates, and `set_frame_key`) or made under the tree's lock by its one writer.
        let entry = unsafe { &*ptr };
        let raw = entry.load(Ordering::Relaxed);
        if raw & PageTableFlags::PRESENT.bits() == 0 {
            return None;
        }
        if level == 1 || (level <= 3 && raw & PageTableFlags::HUGE_PAGE.bits() != 0) {
            return Some((entry, level));
        }
        table = PhysFrame::containing_address(PhysAddr::new(raw & FRAME_MASK));
    }
    None
}

/// The protection key of the kernel page at `addr` (what a PKS fault's report names: the
/// error code carries no key). `None` if `addr` is not mapped in the kernel half.
pub fn kernel_key_of(addr: u64) -> Option<pkeys::Pkey> {
    let virt = VirtAddr::try_new(addr).ok()?;
    let (entry, _) = kernel_leaf(virt)?;
    Some(pkeys::pte::pkey_of(entry.load(Ordering::Relaxed)))
}

/// Gives the physical-map page of `frame` the key `key` and drops this CPU's translation of it
/// (INVLPG, SDM Vol. 2A). Other CPUs may keep the old key cached: harmless when it rises to
/// the page-table key (they could write the frame a little longer, as before), not when it
/// falls to 0 — [`Retired`] shoots those down before the frame is reused. Each frame's entry
/// is written only by the owner of the frame, atomically: no lock.
fn set_frame_key(frame: PhysFrame, key: pkeys::Pkey) {
    let virt = phys_to_virt(frame.start_address());
    let Some((entry, 1)) = kernel_leaf(virt) else {
        debug_assert!(false, "{frame:?} has no 4-KiB entry in the physical map");
        return;
    };
    let _window = Window::open();
    set_entry_key(entry, key);
    x86_64::instructions::tlb::flush(virt);
}

/// Puts `key` into bits 62:59 of the leaf entry `entry`, atomically.
fn set_entry_key(entry: &AtomicU64, key: pkeys::Pkey) {
    let _ = entry.try_update(Ordering::Relaxed, Ordering::Relaxed, |old| Some(pkeys::pte::with_pkey(old, key)));
}

/// Frames that stopped being page tables, gathered so that one shootdown covers them all: each
/// goes back to key 0 at once (on this CPU), is linked into a list through its own first word
/// (so gathering allocates nothing), and returns to the allocator only after every CPU has
/// forgotten its page-table key ([`Retired::release`]) — a CPU with the old key cached would
/// fault on an ordinary write to the frame's next owner.
struct Retired {
    /// Physical address of the first frame, or [`Retired::END`].
    head: u64,
    /// The physical-map addresses the list covers: `[low, high)`.
    low: u64,
    high: u64,
}

impl Retired {
    const END: u64 = u64::MAX;

    fn new() -> Retired {
        Retired { head: Self::END, low: u64::MAX, high: 0 }
    }

    /// Adds a table frame that no tree points at any more.
    fn push(&mut self, frame: PhysFrame) {
        let _window = Window::open();
        write_frame(frame, 0, &self.head.to_le_bytes());
        self.head = frame.start_address().as_u64();
        if pks::enabled() {
            set_frame_key(frame, pkeys::Pkey::DEFAULT);
            let virt = phys_to_virt(frame.start_address()).as_u64();
            self.low = self.low.min(virt);
            self.high = self.high.max(virt + 4096);
        }
    }

    /// Shoots the old keys down on every CPU (once), then hands every frame to `free`.
    fn release(self, free: &mut dyn FnMut(PhysFrame)) {
        if self.low < self.high {
            shoot_kernel_range(self.low, self.high);
        }
        let mut next = self.head;
        while next != Self::END {
            let frame = PhysFrame::containing_address(PhysAddr::new(next));
            let mut link = [0u8; 8];
            read_frame(frame, 0, &mut link);
            next = u64::from_le_bytes(link);
            free(frame);
        }
    }
}

/// Makes every page table a guarded one, once, on the boot CPU before CR4.PKS is set: splits
/// the physical map's 2-MiB pages over `usable` (the physical ranges page tables may later be
/// allocated from) and over every table the kernel's tree already has (the bootloader's
/// included: they lie outside `usable`), taking the new tables from `alloc`; then walks the
/// kernel's tree and gives every table frame — the new ones too — [`pks::PAGE_TABLE_KEY`].
/// Returns how many tables it keyed, or why it could not (then nothing is keyed, though some
/// 2-MiB pages may be split, which changes no translation).
pub fn guard_page_tables(usable: &mut dyn Iterator<Item = (u64, u64)>, alloc: &mut dyn FnMut() -> Option<PhysFrame>) -> Result<usize, &'static str> {
    let root = kernel_root().lock();
    let _window = Window::open();
    for (start, end) in usable {
        let mut chunk = start & !(HUGE_PAGE_SIZE - 1);
        while chunk < end {
            split_physical_map(chunk, alloc)?;
            chunk = chunk.saturating_add(HUGE_PAGE_SIZE);
        }
    }
    let mut failed = None;
    walk_tables(root.frame, 4, &mut |table| {
        if let Err(e) = split_physical_map(table.start_address().as_u64(), alloc) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut keyed = 0;
    walk_tables(root.frame, 4, &mut |table| {
        let (entry, _) = kernel_leaf(phys_to_virt(table.start_address())).expect("split above");
        set_entry_key(entry, pks::PAGE_TABLE_KEY);
        keyed += 1;
    });
    // The old 2-MiB translations and key-0 entries go (nothing in the physical map is global).
    flush_all();
    Ok(keyed)
}

/// Calls `f` for the table `frame` (at `level`: 4 = PML4 … 1 = PT) and every table below it.
fn walk_tables(frame: PhysFrame, level: u8, f: &mut dyn FnMut(PhysFrame)) {
    f(frame);
    if level == 1 {
        return;
    }
    for i in 0..512u64 {
        let ptr = (phys_to_virt(frame.start_address()).as_u64() + i * 8) as *const u64;
        // SAFETY: a table of the kernel's tree, reachable through the physical window, its lock
        // held by the caller; the read is of one aligned entry.
        let raw = unsafe { ptr.read_volatile() };
        if raw & PageTableFlags::PRESENT.bits() != 0 && raw & PageTableFlags::HUGE_PAGE.bits() == 0 {
            walk_tables(PhysFrame::containing_address(PhysAddr::new(raw & FRAME_MASK)), level - 1, f);
        }
    }
}

/// Splits the physical map's 2-MiB page over physical address `phys` into 512 4-KiB pages with
/// the same flags (a new page table from `alloc`), unless it is split already or not mapped.
/// The translation of every address stays the same. A 1-GiB page there is refused
/// (bootloader 0.11.17 maps with 2-MiB pages).
fn split_physical_map(phys: u64, alloc: &mut dyn FnMut() -> Option<PhysFrame>) -> Result<(), &'static str> {
    let virt = phys_to_virt(PhysAddr::new(phys));
    let Some((entry, level)) = kernel_leaf(virt) else { return Ok(()) };
    match level {
        1 => Ok(()),
        3 => Err("a 1-GiB page in the physical map"),
        _ => {
            let pde = entry.load(Ordering::Relaxed);
            // PAT of a 2-MiB page is bit 12 (SDM Vol. 3A Table 4-17); the bootloader sets none.
            if pde & (1 << 12) != 0 {
                return Err("a 2-MiB page with PAT in the physical map");
            }
            let table = alloc().ok_or("no frame to split the physical map")?;
            let base = pde & FRAME_MASK & !(HUGE_PAGE_SIZE - 1);
            let flags = pde & !FRAME_MASK & !PageTableFlags::HUGE_PAGE.bits() & !PageTableFlags::GLOBAL.bits();
            let dst = phys_to_virt(table.start_address()).as_mut_ptr::<u64>();
            for i in 0..512u64 {
                // SAFETY: `table` is a fresh frame, mapped in the physical window, 512 entries long.
                unsafe { dst.add(i as usize).write((base + i * 4096) | flags) };
            }
            entry.store(table.start_address().as_u64() | (PageTableFlags::PRESENT | PageTableFlags::WRITABLE).bits(), Ordering::Release);
            x86_64::instructions::tlb::flush(virt);
            Ok(())
        }
    }
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
        // One window for the whole operation: the new table's key, its zeroing, the copy.
        let _window = Window::open();
        let frame = new_table(&mut alloc)?;
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
        let _window = Window::open();
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

    /// The frame and leaf flags of the 4-KiB page containing `addr`, if mapped: in a 2-MiB
    /// page, the frame of that page that holds `addr`, with the PDE's flags (PS among them).
    pub fn translate(&mut self, addr: VirtAddr) -> Option<(PhysFrame, PageTableFlags)> {
        match self.mapper().translate(addr) {
            TranslateResult::Mapped { frame: MappedFrame::Size4KiB(frame), flags, .. } => Some((frame, flags)),
            TranslateResult::Mapped { frame: MappedFrame::Size2MiB(huge), flags, .. } => {
                let within = (addr.as_u64() & (HUGE_PAGE_SIZE - 1)) & !0xfff;
                Some((PhysFrame::containing_address(huge.start_address() + within), flags))
            }
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

    /// Frees the tree: releases every user-half page through `put_page` (pages may be shared;
    /// a 2-MiB page is handed over once, as its first frame with [`LeafSize::Huge`], and is not
    /// a table to descend into), then frees every user-half table and the PML4 through
    /// `free_table` — all tables in one [`Retired`] batch (one shootdown). The caller has made
    /// sure no CPU has it loaded. Linux: `exit_mmap()` → `unmap_vmas()`, then `free_pgtables()`.
    pub fn free(mut self, mut put_page: impl FnMut(PhysFrame, LeafSize), mut free_table: impl FnMut(PhysFrame)) {
        let _window = Window::open();
        let mut retired = Retired::new();
        self.retire_user_half(&mut put_page, &mut retired);
        retired.push(self.frame);
        retired.release(&mut free_table);
    }

    /// The walk of [`Self::free`]: pages to `put_page`, tables to `retired`.
    fn retire_user_half(&mut self, put_page: &mut dyn FnMut(PhysFrame, LeafSize), retired: &mut Retired) {
        let _window = Window::open();
        fn walk(frame: PhysFrame, level: u8, put_page: &mut dyn FnMut(PhysFrame, LeafSize), free_table: &mut Retired) {
            // SAFETY: `frame` is a page table of this tree, reachable through the physical
            // window; the caller holds `&mut PageTableRoot`, so nothing walks it concurrently.
            let table = unsafe { &mut *table(&frame) };
            for entry in table.iter_mut() {
                if entry.is_unused() {
                    continue;
                }
                let child = PhysFrame::containing_address(entry.addr());
                if level == 2 && entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    put_page(child, LeafSize::Huge);
                } else if level > 1 {
                    walk(child, level - 1, put_page, free_table);
                    free_table.push(child);
                } else {
                    put_page(child, LeafSize::Page);
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
            walk(child, 3, put_page, retired);
            retired.push(child);
            entry.set_unused();
        }
        if active_root_frame() == self.frame {
            flush_all();
        }
    }

    /// The table `depth` levels below the root that covers `addr` — 2: its page directory, 3:
    /// its last-level table, the one holding 4-KiB leaf entries — if every table above it
    /// exists (Intel SDM Vol. 3A §4.5: PML4 → PDPT → PD → PT).
    fn table_below(&mut self, addr: VirtAddr, depth: usize) -> Option<&mut PageTable> {
        let page = Page::<Size4KiB>::containing_address(addr);
        let mut table = table(&self.frame);
        for index in [page.p4_index(), page.p3_index(), page.p2_index()].into_iter().take(depth) {
            // SAFETY: `table` is a table of this tree (the root, or a child found through a
            // present, non-huge entry), reachable through the physical window; `&mut self`
            // excludes concurrent access.
            let entry = unsafe { &(&*table)[index] };
            if !entry.flags().contains(PageTableFlags::PRESENT) || entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                return None;
            }
            table = self::table(&PhysFrame::containing_address(entry.addr()));
        }
        // SAFETY: as above, for the table reached; the borrow is tied to `&mut self`.
        Some(unsafe { &mut *table })
    }

    /// The last-level table that covers `addr`, if every table above it exists.
    fn last_level_table(&mut self, addr: VirtAddr) -> Option<&mut PageTable> {
        self.table_below(addr, 3)
    }

    /// The 4-KiB leaf entry for `page`, if every table above it exists. Unlike
    /// [`Self::translate`] this also finds entries whose PRESENT bit is clear but which still
    /// hold a frame (pikku's `PROT_NONE` pages, see [`PROT_NONE_BIT`]).
    pub fn leaf_entry(&mut self, page: Page) -> Option<&mut PageTableEntry> {
        let entry = &mut self.last_level_table(page.start_address())?[page.p1_index()];
        (!entry.is_unused()).then_some(entry)
    }

    /// Rewrites the raw leaf entry of `page` with `f`, adding the page to `tlb`. Returns
    /// `false` if there is no entry.
    pub fn update_leaf(&mut self, page: Page, tlb: &mut TlbBatch, f: impl FnOnce(u64) -> u64) -> bool {
        let Some(entry) = self.leaf_entry(page) else { return false };
        let _window = Window::open();
        rewrite(entry, f);
        tlb.add(page.start_address().as_u64());
        true
    }

    /// Calls `f(address, size, entry)` for every leaf entry in use (present, or holding a frame)
    /// that overlaps `[start, end)` of the user half — 4-KiB PTEs and 2-MiB PDEs with PS (a
    /// caller that must not cut a huge page keeps its ranges 2-MiB aligned there, as the
    /// system calls do) — descending only into tables that exist: an empty
    /// entry at *any* level — PML4, PDPT, PD — skips everything it would map (512 GiB, 1 GiB,
    /// 2 MiB) in one step, so the cost follows what is mapped, not how long the range is.
    /// Linux: the `pgd_offset()` → `p4d`/`pud`/`pmd_none_or_clear_bad()` → `pte` walk with
    /// `*_addr_end()` that `zap_page_range()`, `change_protection()` and `copy_page_range()`
    /// share. Addresses outside the user half are simply not visited.
    fn walk_user_leaves(&mut self, start: u64, end: u64, f: &mut dyn FnMut(u64, LeafSize, &mut PageTableEntry)) {
        /// Bytes one entry of a table at `level` maps (level 1 = PT: 4 KiB … level 4 = PML4:
        /// 512 GiB; Intel SDM Vol. 3A §4.5, Figure 4-8).
        fn span(level: u8) -> u64 {
            1 << (12 + 9 * (level as u64 - 1))
        }
        /// `[start, end)` is non-empty and lies inside the 512 entries of the table at
        /// `level` that maps from `base`.
        fn walk(frame: PhysFrame, level: u8, base: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, LeafSize, &mut PageTableEntry)) {
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
                    f(addr, LeafSize::Page, entry);
                } else if level == 2 && entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    f(addr, LeafSize::Huge, entry);
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
    /// with [`TlbBatch::flush`]). A 2-MiB leaf keeps its PS bit whatever `f` returns (so `f`
    /// may build an entry from the same bits as for a 4-KiB page; [`is_huge_leaf`] tells
    /// them apart in `old`). Linux: `change_protection()` → `change_pte_range()` and, for
    /// huge pages, `hugetlb_change_protection()`.
    pub fn update_leaves(&mut self, start: u64, end: u64, tlb: &mut TlbBatch, mut f: impl FnMut(u64, u64) -> u64) {
        let _window = Window::open();
        self.walk_user_leaves(start, end, &mut |addr, size, entry| {
            let keep = if size == LeafSize::Huge { PageTableFlags::HUGE_PAGE.bits() } else { 0 };
            rewrite(entry, |old| f(addr, old) | keep);
            // One INVLPG of any address in a 2-MiB page drops the whole page's translation
            // (SDM Vol. 2A "INVLPG": it invalidates the entries for the page containing it).
            tlb.add(addr);
        });
    }

    /// Removes every leaf entry in `[start, end)` (present or not), handing each page to `tlb`
    /// and each frame (a 2-MiB page's first frame, with its size) to `put` — once no CPU can
    /// still reach it through a stale TLB entry: with other CPUs in the batch, the frames wait
    /// for a flush (at most [`DEFERRED_MAX`] of them). Page tables stay (as Linux keeps them
    /// until `free_pgtables()`). Linux: `zap_page_range_single()` → `zap_pte_range()`, or
    /// `__unmap_hugepage_range()` for a huge page, and `tlb_flush_mmu()` before the pages go.
    pub fn unmap_leaves(&mut self, start: u64, end: u64, tlb: &mut TlbBatch, mut put: impl FnMut(PhysFrame, LeafSize)) {
        let mut waiting: alloc::vec::Vec<(PhysFrame, LeafSize)> = alloc::vec::Vec::new();
        let _window = Window::open();
        self.walk_user_leaves(start, end, &mut |addr, size, entry| {
            let frame = PhysFrame::containing_address(entry.addr());
            entry.set_unused();
            tlb.add(addr);
            if tlb.alone() {
                put(frame, size);
                return;
            }
            if waiting.len() >= DEFERRED_MAX || waiting.try_reserve(1).is_err() {
                tlb.flush_now();
                waiting.drain(..).for_each(|(f, s)| put(f, s));
            }
            if waiting.try_reserve(1).is_ok() {
                waiting.push((frame, size));
            } else {
                tlb.flush_now();
                put(frame, size);
            }
        });
        if !waiting.is_empty() {
            tlb.flush_now();
            waiting.into_iter().for_each(|(f, s)| put(f, s));
        }
    }

    /// Removes the mapping of `page` (a kernel page: a kernel stack's) and returns the frame it
    /// mapped; the caller invalidates the page on every CPU ([`shoot_kernel_range`]) before it
    /// frees the frame. `None` if it was not mapped.
    pub(super) fn unmap_leaf(&mut self, page: Page) -> Option<PhysFrame> {
        let entry = self.leaf_entry(page)?;
        let frame = PhysFrame::containing_address(entry.addr());
        let _window = Window::open();
        entry.set_unused();
        Some(frame)
    }

    /// Calls `f(page, frame, leaf flags, size)` for every mapped leaf of the user half (a 2-MiB
    /// page once, at its first 4-KiB page and frame): the in-kernel tests, and
    /// `/proc/self/smaps`' resident counts.
    pub fn for_each_user_page(&mut self, mut f: impl FnMut(Page, PhysFrame, PageTableFlags, LeafSize)) {
        self.for_each_leaf_in(0, USER_END, |addr, frame, flags, size| f(Page::containing_address(VirtAddr::new(addr)), frame, flags, size));
    }

    /// [`Self::for_each_user_page`] for the leaves in `[start, end)` only, with their address
    /// (`mbind`'s and `migrate_pages`' look at where the pages of a range live).
    pub fn for_each_leaf_in(&mut self, start: u64, end: u64, mut f: impl FnMut(u64, PhysFrame, PageTableFlags, LeafSize)) {
        self.walk_user_leaves(start, end, &mut |addr, size, entry| {
            f(addr, PhysFrame::containing_address(entry.addr()), entry.flags(), size);
        });
    }

    /// The 2-MiB leaf entry (a PDE with PS) that maps `addr`, if there is one — present, or
    /// holding its page while `PROT_NONE` ([`PROT_NONE_BIT`]). Linux: `huge_pte_offset()`.
    pub fn huge_leaf_entry(&mut self, addr: u64) -> Option<&mut PageTableEntry> {
        let addr = VirtAddr::new(addr);
        let entry = &mut self.table_below(addr, 2)?[addr.p2_index()];
        entry.flags().contains(PageTableFlags::HUGE_PAGE).then_some(entry)
    }

    /// Rewrites the 2-MiB leaf entry that maps `addr` with `f` (PS stays set), adding it to
    /// `tlb`. Returns `false` if there is none.
    pub fn update_huge_leaf(&mut self, addr: u64, tlb: &mut TlbBatch, f: impl FnOnce(u64) -> u64) -> bool {
        let Some(entry) = self.huge_leaf_entry(addr) else { return false };
        let _window = Window::open();
        rewrite(entry, |old| f(old) | PageTableFlags::HUGE_PAGE.bits());
        // One INVLPG of any address in a 2-MiB page drops the whole page's translation.
        tlb.add(addr);
        true
    }

    /// Maps the 2-MiB page at `addr` (2-MiB aligned, user half) to the 512 contiguous frames
    /// starting at `frame` (2-MiB aligned), with the raw leaf bits `flags` — key bits 62:59
    /// included (SDM Vol. 3A Table 4-17) — plus PS. The PML4 entry and PDPT it needs are made
    /// from `alloc` as [`Self::map`] makes them. A page table left in the slot by earlier
    /// 4-KiB mappings (pikku keeps tables after `munmap`, see [`Self::unmap_leaves`]) must be
    /// empty: it is unhooked, the paging-structure caches that may still point at it are
    /// invalidated (SDM Vol. 3A §4.10.4.1: INVLPG invalidates them all), and only then is it
    /// handed to `free_table`. Linux: `hugetlb_no_page()` → `set_huge_pte_at()`.
    pub fn map_huge(
        &mut self,
        addr: u64,
        frame: PhysFrame,
        flags: u64,
        mut alloc: impl FnMut() -> Option<PhysFrame>,
        mut free_table: impl FnMut(PhysFrame),
    ) -> Result<(), MapError> {
        assert!(addr.is_multiple_of(HUGE_PAGE_SIZE) && addr < USER_END, "huge page at {addr:#x}");
        assert!(frame.start_address().as_u64().is_multiple_of(HUGE_PAGE_SIZE), "huge frame {:?}", frame.start_address());
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
        let parent = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        let _window = Window::open();
        let mut table = table(&self.frame);
        for index in [page.p4_index(), page.p3_index()] {
            // SAFETY: `table` is a table of this tree (the root, or a child made or found
            // through a present, non-huge entry), reachable through the physical window;
            // `&mut self` excludes concurrent access.
            let entry = unsafe { &mut (&mut *table)[index] };
            if entry.is_unused() {
                let child = new_table(&mut alloc).ok_or(MapError::OutOfFrames)?;
                entry.set_frame(child, parent);
            } else if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                return Err(MapError::HugePage);
            }
            table = self::table(&PhysFrame::containing_address(entry.addr()));
        }
        // SAFETY: as above, for the page directory.
        let entry = unsafe { &mut (&mut *table)[page.p2_index()] };
        let mut empty_table = None;
        if !entry.is_unused() {
            if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                return Err(MapError::AlreadyMapped);
            }
            let pt = PhysFrame::containing_address(entry.addr());
            // SAFETY: a page table of this tree, as above.
            if unsafe { (&*self::table(&pt)).iter().any(|e| !e.is_unused()) } {
                return Err(MapError::AlreadyMapped);
            }
            empty_table = Some(pt);
        }
        entry.set_addr(frame.start_address(), PageTableFlags::from_bits_retain(flags) | PageTableFlags::HUGE_PAGE);
        if let Some(pt) = empty_table {
            // Any CPU may hold the old table in its paging-structure caches: all are asked.
            let mut tlb = TlbBatch::new(self, super::percpu::online_mask());
            tlb.add(addr);
            tlb.flush();
            let mut retired = Retired::new();
            retired.push(pt);
            retired.release(&mut free_table);
        }
        Ok(())
    }

    /// Consumes the root, returning its PML4 frame — for a tree kept for good (it stays a
    /// guarded page table); a tree that goes away is freed with [`Self::free`].
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
    adopt_table(pdpt);
    let _window = Window::open();
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

/// `len` bytes of physical memory at `phys`, through the physical window, if every page of
/// them is mapped there — for the firmware's tables (ACPI), which nothing writes while the
/// kernel runs, so a shared `'static` borrow is sound.
pub fn firmware_bytes(phys: u64, len: usize) -> Option<&'static [u8]> {
    let offset = *PHYS_OFFSET.get()?;
    let end = phys.checked_add(len as u64)?;
    let start_virt = phys.checked_add(offset)?;
    end.checked_add(offset)?;
    let mut root = kernel_root().lock();
    let mut page = phys & !0xfff;
    while page < end {
        root.mapper().translate_addr(VirtAddr::try_new(page + offset).ok()?)?;
        page += 4096;
    }
    drop(root);
    // SAFETY: every page of the range is mapped (checked above) in the physical window, which
    // is never unmapped; the firmware's tables are not written by anyone (see above).
    Some(unsafe { core::slice::from_raw_parts(start_virt as *const u8, len) })
}

/// A 32-bit word of `frame` at byte `at` (4-aligned), as an atomic, through the physical
/// window: for a word another CPU writes through another mapping (the AP trampoline's ticket).
/// `frame` must be reserved for good (the trampoline's is), as the borrow is `'static`.
pub fn frame_atomic_u32(frame: PhysFrame, at: usize) -> &'static core::sync::atomic::AtomicU32 {
    assert!(at.is_multiple_of(4) && at + 4 <= 4096, "a misplaced word");
    let ptr = (phys_to_virt(frame.start_address()).as_u64() + at as u64) as *const core::sync::atomic::AtomicU32;
    // SAFETY: aligned, inside a frame mapped in the physical window for good; an AtomicU32 has
    // the layout of a u32 and every bit pattern is valid; all accesses are atomic.
    unsafe { &*ptr }
}

/// Where device registers are mapped: PML4 slot 450 (its PML4 entry made at boot with
/// [`create_kernel_region_slot`], like the heap's and the kernel stacks'). Today it holds one
/// page, the local APIC's.
pub const DEVICE_REGION_START: u64 = 0xffff_e100_0000_0000;
const DEVICE_REGION_END: u64 = DEVICE_REGION_START + (1 << 39);

/// Maps one page of device registers — physical `phys` at `virt` in the device region —
/// present, writable, not executable and **uncached** (PCD|PWT select PAT entry 3, which is UC
/// at reset and in the PAT pikku keeps: SDM Vol. 3A §11.12.3 "Selecting a Memory Type from the
/// PAT", Table 11-11 "Selection of PAT Entries with PAT, PCD, and PWT Flags"), so that every
/// load and store reaches the device in program order (§11.3 "Methods of Caching Available").
/// Page tables come from `table_frames`. Refuses (panics) anything else: an address outside
/// the device region, an unaligned address, a page already mapped.
pub fn map_device_registers(virt: VirtAddr, phys: PhysAddr, table_frames: impl FnMut() -> Option<PhysFrame>) {
    assert!((DEVICE_REGION_START..DEVICE_REGION_END).contains(&virt.as_u64()), "{virt:?} is not in the device region");
    assert!(virt.is_aligned(4096u64) && phys.is_aligned(4096u64), "unaligned device page");
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_EXECUTE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    let mut root = kernel_root().lock();
    assert!(root.translate(virt).is_none(), "device page {virt:?} is already mapped");
    let page = Page::containing_address(virt);
    root.map(page, PhysFrame::containing_address(phys), flags, table_frames).expect("no frame for a device page table");
}

/// A page-table tree for starting another CPU: the kernel half, plus `trampoline` mapped at
/// its own physical address (identity), executable — the start-up code turns paging on while
/// running there (SDM Vol. 3A §9.8.5 "Initializing IA-32e Mode": the instruction that sets
/// CR0.PG must be identity-mapped). Its PML4 lies below 4 GiB (the 32-bit start-up code loads
/// CR3 from 32 bits), or there is no tree. Frames come from `alloc` and go back through `free`
/// ([`free_start_up_tree`]).
pub fn start_up_tree(
    trampoline: PhysFrame,
    mut alloc: impl FnMut() -> Option<PhysFrame>,
    free: &mut impl FnMut(PhysFrame),
) -> Option<PageTableRoot> {
    let mut root = PageTableRoot::new_user(&mut alloc)?;
    let page = Page::containing_address(VirtAddr::new(trampoline.start_address().as_u64()));
    let mapped = root.map(page, trampoline, PageTableFlags::PRESENT | PageTableFlags::WRITABLE, &mut alloc).is_ok();
    if !mapped || root.frame.start_address().as_u64() >= 1 << 32 {
        free_start_up_tree(root, free);
        return None;
    }
    Some(root)
}

/// Frees a tree made by [`start_up_tree`]: its tables go to `free` (the trampoline page itself
/// stays: it is reserved for good).
pub fn free_start_up_tree(root: PageTableRoot, free: &mut impl FnMut(PhysFrame)) {
    root.free(|_trampoline, _| {}, &mut *free);
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

/// The pages whose entries one call changed, gathered so that the TLB is invalidated once per
/// call — here and on every other CPU that may cache the tree (Linux: `struct mmu_gather`:
/// `tlb_gather_mmu()` … `tlb_finish_mmu()`). Frames an unmapping frees go back only after a
/// flush ([`PageTableRoot::unmap_leaves`]): a frame freed before every CPU forgot it could be
/// handed to someone else while a thread on another CPU still writes to it through its stale
/// entry. Dropping a batch without [`TlbBatch::flush`] would leave stale translations: every
/// caller flushes before it returns (`#[must_use]` only catches a batch made and never used).
///
/// A batch is also one **page-table write window** (PKS, [`super::pks::Window`]): it is open
/// from [`TlbBatch::new`] until the batch is flushed, so every table write of the operation —
/// however many areas a `pkey_mprotect` or `munmap` changes — nests inside it, and the
/// operation costs two WRMSRs to IA32_PKRS in all.
#[derive(Debug)]
#[must_use = "changed entries stay in the TLB until the batch is flushed"]
pub struct TlbBatch {
    start: u64,
    end: u64,
    /// The tree's root (physical address): a CPU with another tree loaded has nothing to do.
    root: u64,
    /// Other CPUs that may cache entries of the tree (the address space's `cpus` mask).
    others: u64,
    /// The operation's write window, closed when the batch is flushed (and dropped).
    _window: super::pks::Window,
}

/// At most this many freed frames wait for a flush in [`PageTableRoot::unmap_leaves`]; then it
/// flushes early (Linux flushes a full `mmu_gather` batch the same way), which bounds the
/// memory an `munmap` can make the kernel hold.
const DEFERRED_MAX: usize = 4096;

impl TlbBatch {
    /// An empty batch for changes to `tree`, which CPUs `others` may also have loaded (this
    /// CPU's own bit is ignored).
    pub fn new(tree: &PageTableRoot, others: u64) -> TlbBatch {
        let me = 1u64 << super::percpu::this_cpu().cpu_id;
        TlbBatch { start: 0, end: 0, root: tree.frame.start_address().as_u64(), others: others & !me, _window: super::pks::Window::open() }
    }

    /// Adds the page at `addr` (a user address: below [`USER_END`]).
    pub fn add(&mut self, addr: u64) {
        if self.start == self.end {
            self.start = addr;
        }
        self.start = self.start.min(addr);
        self.end = self.end.max(addr + 4096);
    }

    /// Is this CPU the only one that may cache the tree? (Then a freed frame may go back at
    /// once: this CPU invalidates before it returns to user code, and the kernel never uses
    /// user translations of a page it has just unmapped.)
    pub fn alone(&self) -> bool {
        self.others == 0
    }

    /// Invalidates what was gathered so far, here and on the other CPUs, and starts afresh.
    pub fn flush_now(&mut self) {
        if self.start < self.end {
            super::shootdown::shoot(self.others, Some(self.root), self.start, self.end);
        }
        self.start = 0;
        self.end = 0;
    }

    /// Invalidates every page added, on this CPU and the others.
    pub fn flush(mut self) {
        self.flush_now();
    }
}

/// Invalidates the kernel pages `[start, end)` on every online CPU (a kernel mapping is cached
/// whatever tree a CPU has loaded) and returns once all have. Linux: `flush_tlb_kernel_range()`.
pub fn shoot_kernel_range(start: u64, end: u64) {
    super::shootdown::shoot(super::percpu::online_mask(), None, start, end);
}

/// Flushes all non-global TLB entries (CR3 reload).
pub fn flush_all() {
    x86_64::instructions::tlb::flush_all();
}
