//! Memory areas of an address space: `mmap`, `munmap`, `mprotect`/`pkey_mprotect`, `brk`, and
//! the page-fault path that fills them on demand.
//!
//! The areas ([`vma::VmaMap`]) are the truth; the page tables are filled lazily from them.
//! A page gets its protection *and its protection key* from its area the moment it is first
//! touched (Linux: `vm_get_page_prot()` puts the key bits into `vm_page_prot`, from which every
//! PTE is made); `mprotect`/`pkey_mprotect` rewrite both the areas and every present PTE of the
//! range (Linux: `change_protection()`).

use pkeys::{Errno, Pkey, Pkru, Support};
use vma::{Backing, Prot, Vma, PAGE_SIZE, TASK_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use alloc::sync::Arc;

use super::address_space::Mm;
use super::frame;
use super::shmem::ShmObject;
use crate::arch::x86_64::paging::{self, TlbBatch, PROT_NONE_BIT};

/// Lowest address `mmap` hands out without `MAP_FIXED` (Linux: `mmap_min_addr` is 64 KiB; the
/// program's own segments usually sit above 4 MiB).
pub const MMAP_FLOOR: u64 = 0x1000_0000;
/// Top of the stack area; the stack grows down from here: the top of user space (Linux:
/// `STACK_TOP` = `TASK_SIZE_LOW`, before randomisation).
pub const STACK_TOP: u64 = TASK_SIZE;
/// Size of the main thread's stack area (Linux's default `RLIMIT_STACK`, 8 MiB).
pub const STACK_SIZE: u64 = 8 << 20;
/// Top of the `mmap` region: below the stack, with a gap (as Linux's `mmap_base`).
pub const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (1 << 30);

/// The file a file-backed area maps, as `mm` sees it: the file's bytes, and its identity (the
/// inode number) so that two adjacent areas of one file can merge. The ramdisk's files are
/// exactly this (`fs::ramdisk::RamFile` is this type), so `mm` needs nothing of `fs`: the arrow
/// points from `fs` down to `mm` (Linux's `vma->vm_file`, reduced to what a read-only file needs).
#[derive(Debug, Clone, Copy)]
pub struct FilePages {
    pub ino: u64,
    pub data: &'static [u8],
}

impl PartialEq for FilePages {
    /// The same file, whatever the bytes: same inode number.
    fn eq(&self, other: &Self) -> bool {
        self.ino == other.ino
    }
}

/// Heap bytes one memory area may take (the area and its share of the map's tree nodes),
/// asked for (`heap::reserve`) before a call that may add areas: `vm.max_map_count` bounds
/// one address space, the heap bounds them all — running out is `ENOMEM`, not a panic.
pub const AREA_HEAP_BYTES: usize = 128;

/// What a file-backed area maps (Linux: `vma->vm_file`): a ramdisk file, privately (the
/// area's pages are copies of its bytes), or a shared anonymous memory object, whose pages
/// every process mapping it sees (`MAP_SHARED | MAP_ANONYMOUS`: Linux backs it with a shmem
/// file, so it is a file mapping there too — with a page offset, split and merged as one).
#[derive(Debug, Clone)]
pub enum MappedFile {
    Ramdisk(FilePages),
    Shmem(Arc<ShmObject>),
}

impl PartialEq for MappedFile {
    /// The same file: the same ramdisk inode, or the very same shared object.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MappedFile::Ramdisk(a), MappedFile::Ramdisk(b)) => a == b,
            (MappedFile::Shmem(a), MappedFile::Shmem(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One memory area as pikku stores it.
pub type Area = Vma<MappedFile>;

/// What kind of access faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// Why a fault cannot be resolved: the `si_code` of the SIGSEGV it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegvCode {
    /// No area at the address (`SEGV_MAPERR`, 1).
    MapErr,
    /// The area forbids this access (`SEGV_ACCERR`, 2).
    AccErr,
    /// The area's protection key forbids it (`SEGV_PKUERR`, 4), with the key.
    PkuErr(Pkey),
    /// No memory for the page (Linux would OOM-kill; pikku reports SIGBUS).
    OutOfMemory,
}

/// The raw PTE bits for a page with protection `prot` and key `pkey`. An inaccessible
/// (`PROT_NONE`) page is not present but keeps its frame ([`PROT_NONE_BIT`]).
pub fn pte_bits(prot: Prot, pkey: Pkey) -> u64 {
    let mut f = PageTableFlags::USER_ACCESSIBLE;
    if prot.is_empty() {
        return pkeys::pte::with_pkey(f.bits() | PROT_NONE_BIT, pkey);
    }
    f |= PageTableFlags::PRESENT;
    if prot.contains(Prot::WRITE) {
        f |= PageTableFlags::WRITABLE;
    }
    if !prot.contains(Prot::EXEC) {
        f |= PageTableFlags::NO_EXECUTE;
    }
    pkeys::pte::with_pkey(f.bits(), pkey)
}

fn page(addr: u64) -> Page {
    Page::containing_address(VirtAddr::new(addr))
}

/// The start of the page holding `addr`.
fn page_start(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

impl Mm {
    /// Adds an area where nothing is mapped (`EEXIST` if something is, `ENOMEM` outside user
    /// space, which ends at [`TASK_SIZE`]).
    pub fn add_area(&mut self, area: Area) -> Result<(), Errno> {
        if area.end > TASK_SIZE || area.start >= area.end || !area.start.is_multiple_of(PAGE_SIZE) || !area.end.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::ENOMEM);
        }
        if self.vmas.insert(area) {
            Ok(())
        } else {
            Err(Errno::EEXIST)
        }
    }

    /// Removes `[start, end)` from the areas and frees every page that was mapped there: a
    /// walk of the page tables that skips what was never mapped, then one TLB invalidation.
    /// Linux: `do_vmi_munmap()`.
    pub fn unmap_range(&mut self, start: u64, end: u64) {
        // Freed space above the placement cache is found again by searching from the cache's
        // new, higher position (as Linux reset `free_area_cache` on unmap).
        if end > self.free_area_cache {
            self.free_area_cache = end.min(MMAP_TOP);
        }
        let mut tlb = self.tlb_batch();
        for piece in self.vmas.remove_range(start, end) {
            self.zap_area_pages(piece.start, piece.end, &piece.backing, false, &mut tlb);
        }
        tlb.flush();
    }

    /// `mmap` placement: `hint` if it is free, else the highest free range of `len` bytes below
    /// [`MMAP_TOP`] — searched first below the last placement ([`Mm::free_area_cache`]), then
    /// from the top. Linux: `get_unmapped_area()` with the top-down layout.
    pub fn find_free_range(&mut self, hint: u64, len: u64) -> Option<u64> {
        if hint != 0 && hint.is_multiple_of(PAGE_SIZE) && hint >= MMAP_FLOOR {
            if let Some(end) = hint.checked_add(len) {
                if end <= MMAP_TOP && !self.vmas.overlaps(hint, end) {
                    return Some(hint);
                }
            }
        }
        let cache = self.free_area_cache;
        let found = (cache > MMAP_FLOOR && cache <= MMAP_TOP)
            .then(|| self.vmas.find_free(len, MMAP_FLOOR, cache))
            .flatten()
            .or_else(|| self.vmas.find_free(len, MMAP_FLOOR, MMAP_TOP))?;
        self.free_area_cache = found;
        Some(found)
    }

    /// Linux `do_mprotect_pkey()` after its argument checks (done by the caller with
    /// [`pkeys::syscall::check_mprotect_args`]): validate the key, walk the areas, give each its
    /// new protection and key (`arch_override_mprotect_pkey()` decides the key when `pkey` is
    /// -1), rewrite the present PTEs. Changes before a hole stay; the hole gives `ENOMEM`.
    pub fn mprotect(&mut self, range: pkeys::syscall::MprotectRange, pkey: i32, pkru: &mut impl pkeys::PkruRegister) -> Result<(), Errno> {
        // Step 8: an explicit key must be allocated (not the execute-only key, not ≥ 16, …);
        // this comes before the ENOMEM of an unmapped range.
        let explicit = if pkey == -1 { None } else { Some(self.pkeys.allocated(pkey).ok_or(Errno::EINVAL)?) };
        // Step 9: the first area overlapping the range.
        let first = self.vmas.find_from(range.start).filter(|v| v.start < range.end).ok_or(Errno::ENOMEM)?;
        // Step 10a: no pikku area grows (no VM_GROWSDOWN/UP), so the GROWS flags are EINVAL.
        if range.grows_down || range.grows_up {
            return Err(Errno::EINVAL);
        }
        // Step 10: a hole at the start.
        if first.start > range.start {
            return Err(Errno::ENOMEM);
        }
        // A huge-page area is cut only at 2-MiB boundaries (`hugetlb_vm_op_split()`). `first`
        // holds `start`, and `end` too unless the range reaches past it: only then is the
        // area at `end` looked up.
        let last = if range.end <= first.end { Some(first) } else { self.vmas.find(range.end) };
        if super::hugetlb::cuts_huge_page(first, range.start) || last.is_some_and(|v| super::hugetlb::cuts_huge_page(v, range.end)) {
            return Err(Errno::EINVAL);
        }
        let prot = Prot::from_bits_truncate(range.prot as u32);
        let support = self.pkeys.support();
        // Each area that changes gets new PTEs as the walk changes it (an unchanged one costs
        // nothing, as in Linux's `mprotect_fixup()` → `change_protection()`); the TLB is
        // invalidated once for them all.
        let mut tlb = self.tlb_batch();
        let (vmas, pkeys, root) = self.areas_keys_and_tables();
        let done = vmas.protect(
            range.start,
            range.end,
            |area| (prot, override_mprotect_pkey(support, pkeys, pkru, area, prot, explicit)),
            |area| Self::rewrite_ptes(root, area.start, area.end, pte_bits(area.prot, area.pkey), &mut tlb),
        );
        tlb.flush();
        // A hole after the start: the areas before it keep their change (Linux's `mprotect`
        // is not atomic either).
        done.map_err(|_| Errno::ENOMEM)
    }

    /// Rewrites every present (or `PROT_NONE`-kept) PTE in `[start, end)` — one area's pages —
    /// with the protection and key `bits`, keeping the frame; the pages go into `tlb`, which
    /// the caller flushes. Linux: `change_protection()` → `pte_modify()`, then
    /// `flush_tlb_range()`.
    fn rewrite_ptes(root: &mut paging::PageTableRoot, start: u64, end: u64, bits: u64, tlb: &mut TlbBatch) {
        root.update_leaves(start, end, tlb, |_, old| {
            let new = (old & paging::FRAME_MASK) | bits;
            // A page shared copy-on-write stays read-only whatever the area allows.
            if old & paging::COW_BIT != 0 {
                (new & !PageTableFlags::WRITABLE.bits()) | paging::COW_BIT
            } else {
                new
            }
        });
    }

    /// `madvise(MADV_DONTNEED)` over `[start, end)`: drops every page; the next touch faults in
    /// zeros for anonymous memory, or the file's bytes again for a private file mapping (as on
    /// Linux). Returns `Err(ENOMEM)` if part of the range is unmapped (after dropping the rest).
    /// Area by area, each one walk of the page tables that skips what was never mapped: the
    /// cost follows what is mapped. In a huge-page area the range must start at a 2-MiB
    /// boundary (`EINVAL`, the areas before it already dropped) and its end is rounded *down*
    /// to one, so a 4-KiB length drops nothing rather than 2 MiB (Linux:
    /// `madvise_dontneed_free_valid_vma()`). Linux: `madvise_dontneed_free()` →
    /// `zap_page_range_single()`, per area.
    pub fn drop_pages(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        let mut tlb = self.tlb_batch();
        let mut cursor = start;
        let mut misaligned = false;
        while let Some(area) = self.vmas.find_from(cursor).filter(|a| a.start < end).cloned() {
            let (from, mut to) = (cursor.max(area.start), end.min(area.end));
            if matches!(area.backing, Backing::Hugetlb { .. }) {
                if !from.is_multiple_of(super::hugetlb::HPAGE_SIZE) {
                    misaligned = true;
                    break;
                }
                to &= !(super::hugetlb::HPAGE_SIZE - 1);
            }
            if from < to {
                self.zap_area_pages(from, to, &area.backing, true, &mut tlb);
            }
            cursor = area.end;
        }
        tlb.flush();
        if misaligned {
            Err(Errno::EINVAL)
        } else if self.vmas.covers(start, end) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// One chunk of `mincore` (Linux: `do_mincore()`): fills `status` from `addr` on, one byte
    /// per page, up to the end of the area holding `addr` at most, and returns how many it
    /// filled; no area at `addr` is `ENOMEM`. A page is in memory if it is mapped here — the
    /// shared zero frame too, and a `PROT_NONE` page that kept its frame (Linux:
    /// `pte_present()`) — or else, without swap, if the area's file or shared object holds it
    /// (Linux: `mincore_unmapped_range()` → `mincore_page()` on the page cache; the ramdisk is
    /// all in memory, up to the file's end). An anonymous page not mapped is not.
    pub fn mincore(&mut self, addr: u64, status: &mut [u8]) -> Result<usize, Errno> {
        let area = self.vmas.find(addr).cloned().ok_or(Errno::ENOMEM)?;
        // `addr` and the chunk lie in user space (the caller checked the range): no overflow.
        let end = area.end.min(addr + status.len() as u64 * PAGE_SIZE);
        let pages = ((end - addr) / PAGE_SIZE) as usize;
        for (i, byte) in status[..pages].iter_mut().enumerate() {
            let at = addr + i as u64 * PAGE_SIZE;
            let mapped = self.root().leaf_entry(page(at)).is_some() || self.root().translate(VirtAddr::new(at)).is_some();
            let held = match &area.backing {
                Backing::File { file: MappedFile::Ramdisk(file), offset, .. } => offset + (at - area.start) < file.data.len() as u64,
                Backing::File { file: MappedFile::Shmem(object), .. } => super::shmem::page_offset(&area, at).is_some_and(|index| object.has_page(index)),
                Backing::Anonymous | Backing::Hugetlb { .. } => false,
            };
            *byte = u8::from(mapped || held);
        }
        Ok(pages)
    }

    /// Resolves a page fault at `addr` — Linux's `do_user_addr_fault()` → `access_error()` →
    /// `handle_mm_fault()`, in that order:
    ///
    /// 1. no area → `SEGV_MAPERR`;
    /// 2. the CPU said PK (error bit 5) → `SEGV_PKUERR` with the area's key;
    /// 3. the area's protection forbids the access → `SEGV_ACCERR` (a read needs any of R/W/X:
    ///    x86 pages without keys cannot be execute-only);
    /// 4. a data access the thread's PKRU forbids for the area's key → `SEGV_PKUERR`, *before*
    ///    any page is mapped (Linux: `arch_vma_access_permitted()`); instruction fetches are
    ///    never checked against keys;
    /// 5. otherwise map a fresh page — zeros, or the file's bytes — with the area's protection
    ///    and key (in a huge-page area: [`Mm::handle_huge_fault`], a whole 2-MiB page).
    pub fn handle_fault(&mut self, addr: u64, access: Access, present: bool, pk: bool, pkru: Pkru) -> Result<(), SegvCode> {
        let Some(area) = self.vmas.find(addr) else { return Err(SegvCode::MapErr) };
        if pk {
            return Err(SegvCode::PkuErr(area.pkey));
        }
        self.permits(area, access, pkru)?;
        // A copy of the area from here on (the page tables need `&mut self`); the refusals
        // above, the path of every key fault, make none.
        let area = area.clone();
        if let Backing::Hugetlb { .. } = area.backing {
            return self.handle_huge_fault(addr, access, present, &area);
        }
        if access == Access::Write {
            if let Some(entry) = self.root().leaf_entry(page(addr)) {
                let bits = entry.flags().bits();
                if bits & paging::COW_BIT != 0 && bits & PageTableFlags::PRESENT.bits() != 0 {
                    return self.break_cow(addr);
                }
            }
        }
        if let Some(entry) = self.root().leaf_entry(page(addr)) {
            // The entry as it is *now* already allows the access: the CPU faulted on an older
            // one — another thread, on another CPU, mapped the page or broke its copy-on-write
            // between the access and this lock (Linux: the "spurious fault" of
            // `handle_pte_fault()`, which flushes the local entry and returns). Any stale
            // entry of this CPU goes, and the access is retried.
            let bits = entry.flags().bits();
            let usable = bits & PageTableFlags::PRESENT.bits() != 0
                && (access != Access::Write || bits & PageTableFlags::WRITABLE.bits() != 0)
                && (access != Access::Execute || bits & PageTableFlags::NO_EXECUTE.bits() == 0);
            if usable {
                paging::invalidate_range(page_start(addr), page_start(addr) + PAGE_SIZE);
                return Ok(());
            }
        }
        if present || self.root().leaf_entry(page(addr)).is_some() {
            // The page exists and the area allows the access, yet the CPU refused it — and it is
            // not a copy-on-write page (broken above): nothing pikku could change would help.
            return Err(SegvCode::AccErr);
        }
        self.map_fresh_page(&area, addr, access)
    }

    /// Step 5 of [`Self::handle_fault`]: maps a page at `addr` in `area`, where nothing is
    /// mapped, with the area's protection and key (Linux: `do_anonymous_page()`,
    /// `do_read_fault()`/`do_cow_fault()`, `do_shared_fault()`):
    /// * private anonymous memory *read* (or executed) before it was written: the shared zero
    ///   frame, read-only and copy-on-write, so that a later write gets a fresh page;
    /// * private anonymous memory written: a fresh zeroed frame;
    /// * a private file mapping: a fresh frame holding the file's bytes (zeros past them);
    /// * shared anonymous memory: the object's page at this offset, made on first touch by any
    ///   of the processes that share it, mapped with the area's rights (no copy-on-write).
    fn map_fresh_page(&mut self, area: &Area, addr: u64, access: Access) -> Result<(), SegvCode> {
        let page_start = page_start(addr);
        let mut bits = pte_bits(area.prot, area.pkey);
        let frame = match &area.backing {
            Backing::File { file: MappedFile::Shmem(object), .. } => {
                let index = super::shmem::page_offset(area, page_start).ok_or(SegvCode::AccErr)?;
                object.page(index, area, page_start).ok_or(SegvCode::OutOfMemory)?
            }
            Backing::Anonymous if access != Access::Write => {
                bits = (bits & !PageTableFlags::WRITABLE.bits()) | paging::COW_BIT;
                frame::zero_frame()
            }
            _ => {
                let frame = super::policy::alloc_for_fault(area, page_start, None).ok_or(SegvCode::OutOfMemory)?;
                paging::zero_frame(frame);
                if let Backing::File { file: MappedFile::Ramdisk(file), offset, file_len } = &area.backing {
                    let within = page_start - area.start;
                    if within < *file_len {
                        let from = (offset + within) as usize;
                        let len = (file_len - within).min(PAGE_SIZE) as usize;
                        let bytes = file.data.get(from..from + len).unwrap_or(&[]);
                        paging::write_frame(frame, 0, bytes);
                    }
                }
                frame
            }
        };
        let flags = PageTableFlags::from_bits_retain(bits);
        if self.root().map(page(page_start), frame, flags, frame::alloc_user_table).is_err() {
            frame::put(frame);
            return Err(SegvCode::OutOfMemory);
        }
        Ok(())
    }

    /// A tracer's access to this address space (Linux: `access_remote_vm()` with `FOLL_FORCE`,
    /// the path of `PTRACE_PEEKDATA`/`POKEDATA`): copies between `buf` and user memory at
    /// `addr`, page by page, and returns how many bytes it did before the first address
    /// without an area. A foreign access is not subject to protection keys, nor (forced) to
    /// the area's protection: a page never touched is filled first, and a write to a page
    /// shared copy-on-write gets this address space its own copy, whatever the protection
    /// (the entry keeps its flags: a read-only page stays read-only to its owner).
    pub fn access_foreign(&mut self, addr: u64, buf: &mut [u8], write: bool) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let Some(at) = addr.checked_add(done as u64).filter(|&a| a < TASK_SIZE) else { break };
            let Some(frame) = self.foreign_page(at, write) else { break };
            let offset = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - offset).min(buf.len() - done);
            if write {
                paging::write_frame(frame, offset, &buf[done..done + n]);
            } else {
                paging::read_frame(frame, offset, &mut buf[done..done + n]);
            }
            done += n;
        }
        done
    }

    /// The frame behind `addr` for a foreign access (see [`Self::access_foreign`]), made
    /// present — and private, for a write — first.
    fn foreign_page(&mut self, addr: u64, write: bool) -> Option<PhysFrame> {
        let area = self.vmas.find(addr).cloned()?;
        if self.root().leaf_entry(page(addr)).is_none() {
            self.map_fresh_page(&area, addr, if write { Access::Write } else { Access::Read }).ok()?;
        }
        let entry = self.root().leaf_entry(page(addr))?;
        let frame = PhysFrame::containing_address(entry.addr());
        // Only a copy-on-write entry needs a private copy (a shared object's page is written
        // where it is, for every process that maps it), and only while it is shared.
        let cow = entry.flags().bits() & paging::COW_BIT != 0;
        if !write || !cow || (!frame::is_zero_frame(frame) && frame::references(frame) == 1) {
            return Some(frame);
        }
        let copy = private_copy(frame, &area, addr)?;
        let new_addr = copy.start_address().as_u64();
        let mut tlb = self.tlb_batch();
        self.root().update_leaf(page(addr), &mut tlb, |old| (old & !paging::FRAME_MASK) | new_addr);
        // The tracee's threads may cache the old frame on other CPUs (see `break_cow`).
        tlb.flush();
        frame::put(frame);
        Some(copy)
    }

    /// Steps 3 and 4 of [`Self::handle_fault`]: may this thread, with `pkru`, make `access`
    /// to `area`? The area's protection first (`SEGV_ACCERR`; a read needs any of R/W/X — x86
    /// pages without keys cannot be execute-only), then, for data accesses, the key
    /// (`SEGV_PKUERR`; Linux `arch_vma_access_permitted()`, which GUP asks too).
    pub(super) fn permits(&self, area: &Area, access: Access, pkru: Pkru) -> Result<(), SegvCode> {
        let allowed = match access {
            Access::Write => area.prot.contains(Prot::WRITE),
            Access::Execute => area.prot.contains(Prot::EXEC),
            Access::Read => !area.prot.is_empty(),
        };
        if !allowed {
            return Err(SegvCode::AccErr);
        }
        if access != Access::Execute && self.pkeys.support() == Support::Enabled {
            let ok = match access {
                Access::Write => pkru.allows_write(area.pkey),
                _ => pkru.allows_read(area.pkey),
            };
            if !ok {
                return Err(SegvCode::PkuErr(area.pkey));
            }
        }
        Ok(())
    }

    /// Can a *shared* futex (no `FUTEX_PRIVATE_FLAG`) use the word at `addr`? Linux's
    /// `get_futex_key()` pins the page with `get_user_pages_fast(FOLL_WRITE)` and, for an
    /// operation that only reads the word (all pikku has: WAIT, WAKE), retries read-only — and
    /// GUP honours protection keys (reference §5.7). A page pinned read-only is refused if it
    /// is anonymous ("a read-only anonymous page will never change"). So under a key's WD bit
    /// a shared FUTEX_WAIT on anonymous memory is `EFAULT`, while a private one only reads the
    /// word and gets `EAGAIN` or sleeps. (pikku's file mappings are private copies of the
    /// ramdisk; all of their pages count as file pages here.)
    pub fn shared_futex_allowed(&self, addr: u64, pkru: Pkru) -> Result<(), Errno> {
        let area = self.vmas.find(addr).ok_or(Errno::EFAULT)?;
        if self.permits(area, Access::Write, pkru).is_ok() {
            return Ok(());
        }
        match (self.permits(area, Access::Read, pkru), &area.backing) {
            (Ok(()), Backing::File { .. }) => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// A write to a page shared copy-on-write (Linux: `do_wp_page()`): the last sharer just gets
    /// the write bit back; otherwise the writer gets a private copy — a fresh zeroed frame if
    /// the page was the shared zero frame (Linux: `wp_page_copy()` with `is_zero_pfn()`).
    /// Flags, key bits included, stay as they were.
    fn break_cow(&mut self, addr: u64) -> Result<(), SegvCode> {
        let p = page(addr);
        let (frame, _) = self.root().translate(p.start_address()).ok_or(SegvCode::AccErr)?;
        let writable = |bits: u64| (bits & !paging::COW_BIT) | PageTableFlags::WRITABLE.bits();
        let mut tlb = self.tlb_batch();
        if !frame::is_zero_frame(frame) && frame::references(frame) == 1 {
            self.root().update_leaf(p, &mut tlb, writable);
            tlb.flush();
            return Ok(());
        }
        // The private copy is a new page of the area: placed by its policy, as a fresh one.
        let area = self.vmas.find(addr).ok_or(SegvCode::AccErr)?;
        let copy = private_copy(frame, area, addr).ok_or(SegvCode::OutOfMemory)?;
        let new_addr = copy.start_address().as_u64();
        self.root().update_leaf(p, &mut tlb, |old| writable((old & !paging::FRAME_MASK) | new_addr));
        // Another thread of this address space on another CPU may still read the shared frame
        // through its old entry: it must forget it before this thread's writes to the copy
        // start, or the two would see different memory at one address.
        tlb.flush();
        frame::put(frame);
        Ok(())
    }
}

/// A frame of this address space's own with the bytes of `frame` (a page shared
/// copy-on-write) at `addr` of `area`: zeroed if `frame` is the shared zero frame (nothing to
/// copy), copied otherwise; placed by the area's memory policy like a fresh page. `None` when
/// memory is out. Linux: `wp_page_copy()`.
fn private_copy(frame: PhysFrame, area: &Area, addr: u64) -> Option<PhysFrame> {
    let copy = super::policy::alloc_for_fault(area, page_start(addr), None)?;
    if frame::is_zero_frame(frame) {
        paging::zero_frame(copy);
    } else {
        paging::copy_frame(frame, copy);
    }
    Some(copy)
}

/// Linux `arch_override_mprotect_pkey()` → `__arch_override_mprotect_pkey()`: which key an area
/// gets from `mprotect`. Without pkeys: 0. An explicit `pkey_mprotect` key: that key. Plain
/// `mprotect(PROT_EXEC)`: the execute-only key (allocated on first use, AD set in the caller's
/// PKRU). Leaving execute-only memory: back to key 0. Otherwise the area keeps its key.
fn override_mprotect_pkey(
    support: Support,
    pkeys: &mut pkeys::PkeyState,
    pkru: &mut impl pkeys::PkruRegister,
    area: &Area,
    prot: Prot,
    explicit: Option<Pkey>,
) -> Pkey {
    if support == Support::Absent {
        return Pkey::DEFAULT;
    }
    if let Some(key) = explicit {
        return key;
    }
    if prot == Prot::EXEC {
        if let Some(key) = pkeys.execute_only_pkey_for(pkru) {
            if key.index() > 0 {
                return key;
            }
        }
    } else if area.prot == Prot::EXEC && Some(area.pkey) == pkeys.execute_only_pkey() {
        return Pkey::DEFAULT;
    }
    area.pkey
}

#[cfg(test)]
mod tests {
    //! Through the syscall table, on a fresh program each time; user memory is touched through
    //! the same copy functions syscalls use, so demand paging and every check run for real.
    use super::*;
    use crate::ktest::as_fresh_program;
    use crate::mm::user::{copy_from_user, copy_to_user};
    use crate::syscall::{decode, dispatch, nr};
    use ktest_macros::ktest;

    const RW: u64 = 3;
    const PRIVATE_ANON: u64 = 0x22;
    const P: u64 = PAGE_SIZE;

    fn call(n: u64, args: &[u64]) -> Result<u64, Errno> {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        decode(dispatch(n, a))
    }

    fn mmap(len: u64, prot: u64) -> u64 {
        call(nr::MMAP, &[0, len, prot, PRIVATE_ANON, u64::MAX, 0]).expect("mmap")
    }

    fn areas(t: &alloc::sync::Arc<crate::task::Thread>) -> usize {
        t.mm.read().vmas.len()
    }

    #[ktest]
    fn mmap_is_lazy_and_munmap_splits_and_frees() {
        as_fresh_program(|t| {
            let before = frame::free_count();
            let p = mmap(3 * P, RW);
            assert!(p.is_multiple_of(P) && (MMAP_FLOOR..MMAP_TOP).contains(&p), "{p:#x}");
            assert_eq!(areas(t), 1);
            assert_eq!(t.mm.write().user_frame_count(), 0, "nothing is mapped before it is touched");
            copy_to_user(p + P + 5, b"x").unwrap();
            assert_eq!(t.mm.write().user_frame_count(), 1, "one page faulted in");
            assert_eq!(call(nr::MUNMAP, &[p + P, P]), Ok(0));
            assert_eq!(areas(t), 2, "a hole splits the area");
            assert_eq!(copy_to_user(p + P, b"x"), Err(Errno::EFAULT));
            copy_to_user(p, b"y").unwrap();
            assert_eq!(call(nr::MUNMAP, &[p, 3 * P]), Ok(0));
            assert_eq!(areas(t), 0);
            // Page tables may stay allocated (as on Linux); the data pages are all back.
            assert_eq!(t.mm.write().user_frame_count(), 0);
            assert!(frame::free_count() + 4 >= before);
            // Bad arguments.
            assert_eq!(call(nr::MUNMAP, &[p + 1, P]), Err(Errno::EINVAL));
            assert_eq!(call(nr::MUNMAP, &[p, 0]), Err(Errno::EINVAL));
            assert_eq!(call(nr::MMAP, &[0, 0, RW, PRIVATE_ANON, u64::MAX, 0]), Err(Errno::EINVAL));
            assert_eq!(call(nr::MMAP, &[0, P, RW, 0x20, u64::MAX, 0]), Err(Errno::EINVAL), "neither shared nor private");
            assert_eq!(call(nr::MMAP, &[0, P, RW, 0x02, 99, 0]), Err(Errno::EBADF), "file mapping of a bad fd");
            assert_eq!(call(nr::MMAP, &[0, P, RW, PRIVATE_ANON, u64::MAX, 1]), Err(Errno::EINVAL), "misaligned offset");
        });
    }

    #[ktest]
    fn the_top_of_user_space_is_task_size() {
        as_fresh_program(|_| {
            const FIXED: u64 = 0x10;
            let map = |addr: u64, len: u64| call(nr::MMAP, &[addr, len, RW, PRIVATE_ANON | FIXED, u64::MAX, 0]);
            assert_eq!(map(TASK_SIZE, P), Err(Errno::ENOMEM), "the page below 2^47 is not user space");
            assert_eq!(map(TASK_SIZE - P, 2 * P), Err(Errno::ENOMEM));
            assert_eq!(map(TASK_SIZE + 1, P), Err(Errno::ENOMEM), "beyond TASK_SIZE comes before misalignment");
            assert_eq!(map(!(P - 1), P), Err(Errno::ENOMEM), "wraps");
            let last = map(TASK_SIZE - P, P).expect("the last user page");
            copy_to_user(last + P - 1, b"z").unwrap();
            assert_eq!(call(nr::MPROTECT, &[last, P, 1]), Ok(0), "the last page's PTE is rewritten, no end address is built");
            assert_eq!(call(nr::MPROTECT, &[last, 2 * P, 1]), Err(Errno::ENOMEM), "nothing above it");
            assert_eq!(call(nr::MUNMAP, &[last, 2 * P]), Err(Errno::EINVAL));
            assert_eq!(call(nr::MUNMAP, &[last, P]), Ok(0));
        });
    }

    #[ktest]
    fn a_64_tib_reservation_is_dropped_and_unmapped_at_the_cost_of_its_few_pages() {
        as_fresh_program(|t| {
            const NORESERVE: u64 = 0x4000;
            const MADV_DONTNEED: u64 = 4;
            let big = 64u64 << 40;
            let r = call(nr::MMAP, &[0, big, 0, PRIVATE_ANON | NORESERVE, u64::MAX, 0]).expect("64 TiB of PROT_NONE");
            // Pages in different PML4, PDPT and PD slots, so the walk meets tables at every level.
            let touched = [0, P, (1 << 39) + 2 * P, 3 << 30, big / 2, big - P];
            for off in touched {
                assert_eq!(call(nr::MPROTECT, &[r + off, P, RW]), Ok(0));
                copy_to_user(r + off, b"x").unwrap();
            }
            assert_eq!(t.mm.write().user_frame_count(), touched.len());
            let free = frame::free_count();
            let started = crate::arch::x86_64::time::micros_since_boot();
            assert_eq!(call(nr::MADVISE, &[r, big, MADV_DONTNEED]), Ok(0));
            assert_eq!(frame::free_count(), free + touched.len(), "exactly the data pages come back (tables stay)");
            assert_eq!(call(nr::MPROTECT, &[r, big, 1]), Ok(0));
            assert_eq!(call(nr::MADVISE, &[r, big, 0]), Ok(0), "a hint over the whole range");
            copy_to_user(r + big / 2, b"y").expect_err("read-only now");
            let mut b = [1u8];
            copy_from_user(&mut b, r + big - P).unwrap();
            assert_eq!(b, [0], "dropped: zeros again");
            assert_eq!(call(nr::MUNMAP, &[r, big]), Ok(0));
            assert_eq!(frame::free_count(), free + touched.len(), "the page read back is freed too");
            let elapsed = crate::arch::x86_64::time::micros_since_boot() - started;
            assert!(elapsed < 200_000, "64 TiB took {elapsed} µs: the walk must skip what is not mapped");
            assert_eq!(call(nr::MADVISE, &[r, big, MADV_DONTNEED]), Err(Errno::ENOMEM), "a hole now");
        });
    }

    #[ktest]
    fn mprotect_splits_merges_and_prot_none_keeps_the_data() {
        as_fresh_program(|t| {
            let p = mmap(3 * P, RW);
            copy_to_user(p + P, b"kept").unwrap();
            assert_eq!(call(nr::MPROTECT, &[p + P, P, 0]), Ok(0));
            assert_eq!(areas(t), 3);
            let mut buf = [0u8; 4];
            assert_eq!(copy_from_user(&mut buf, p + P), Err(Errno::EFAULT), "PROT_NONE: no access");
            assert_eq!(call(nr::MPROTECT, &[p + P, P, RW]), Ok(0));
            assert_eq!(areas(t), 1, "equal neighbours merge back");
            copy_from_user(&mut buf, p + P).unwrap();
            assert_eq!(&buf, b"kept");
            // Read-only: the kernel's write into it fails like a user write would.
            assert_eq!(call(nr::MPROTECT, &[p, 3 * P, 1]), Ok(0));
            assert_eq!(copy_to_user(p + P, b"nope"), Err(Errno::EFAULT));
            copy_from_user(&mut buf, p + P).unwrap();
            assert_eq!(&buf, b"kept");
        });
    }

    #[ktest]
    fn mprotect_checks_come_in_linuxs_order() {
        as_fresh_program(|t| {
            let p = mmap(3 * P, RW);
            call(nr::MUNMAP, &[p + P, P]).unwrap(); // a hole in the middle
            let q = p + 2 * P;
            assert_eq!(call(nr::MPROTECT, &[p + 1, P, 1]), Err(Errno::EINVAL), "misaligned start");
            assert_eq!(call(nr::MPROTECT, &[p, 0, 0xff]), Ok(0), "len 0 succeeds before prot is checked");
            assert_eq!(call(nr::MPROTECT, &[p, u64::MAX, 1]), Err(Errno::ENOMEM), "length wraps");
            assert_eq!(call(nr::MPROTECT, &[p, P, 0x10]), Err(Errno::EINVAL), "unknown prot bit");
            assert_eq!(call(nr::MPROTECT, &[p, P, 0x0300_0001]), Err(Errno::EINVAL), "GROWSDOWN|GROWSUP");
            assert_eq!(call(nr::MPROTECT, &[p, P, 0x0100_0001]), Err(Errno::EINVAL), "no area grows down");
            assert_eq!(call(nr::PKEY_MPROTECT, &[p, P, 1, 9]), Err(Errno::EINVAL), "unallocated key");
            assert_eq!(call(nr::PKEY_MPROTECT, &[0x1000, P, 1, 9]), Err(Errno::EINVAL), "the key is checked before the range");
            assert_eq!(call(nr::PKEY_MPROTECT, &[p, 0, 1, 9]), Ok(0), "len 0 succeeds before the key is checked");
            assert_eq!(call(nr::MPROTECT, &[0x1000, P, 1]), Err(Errno::ENOMEM), "nothing mapped there");
            // A hole in the middle: what lies before it changes, the call fails.
            assert_eq!(call(nr::MPROTECT, &[p, 3 * P, 1]), Err(Errno::ENOMEM));
            assert_eq!(t.mm.read().vmas.find(p).unwrap().prot, Prot::READ);
            assert_eq!(t.mm.read().vmas.find(q).unwrap().prot, Prot::READ | Prot::WRITE);
        });
    }

    #[ktest(needs = pku)]
    fn pkey_mprotect_writes_the_key_into_exactly_the_ranges_ptes() {
        as_fresh_program(|t| {
            let k = call(nr::PKEY_ALLOC, &[0, 0]).unwrap();
            let key = Pkey::new(k as u32).unwrap();
            let p = mmap(5 * P, RW);
            for i in [0, 1, 2, 4] {
                copy_to_user(p + i * P, b"z").unwrap(); // page 3 stays untouched
            }
            assert_eq!(call(nr::PKEY_MPROTECT, &[p + P, 3 * P, RW, k]), Ok(0));
            assert_eq!(areas(t), 3);
            let keys: alloc::vec::Vec<Option<Pkey>> = (0..5).map(|i| t.mm.write().page_pkey(VirtAddr::new(p + i * P))).collect();
            assert_eq!(keys, [Some(Pkey::DEFAULT), Some(key), Some(key), None, Some(Pkey::DEFAULT)]);
            // The untouched page gets the key when it is faulted in (key opened by pkey_alloc).
            copy_to_user(p + 3 * P, b"z").unwrap();
            assert_eq!(t.mm.write().page_pkey(VirtAddr::new(p + 3 * P)), Some(key));
            // Back to key 0: the areas merge again.
            assert_eq!(call(nr::PKEY_MPROTECT, &[p + P, 3 * P, RW, 0]), Ok(0));
            assert_eq!(areas(t), 1);
            assert_eq!(t.mm.write().page_pkey(VirtAddr::new(p + 2 * P)), Some(Pkey::DEFAULT));
        });
    }

    #[ktest(needs = pku)]
    fn a_key_the_thread_denies_is_refused_before_any_page_is_mapped() {
        as_fresh_program(|t| {
            let k = call(nr::PKEY_ALLOC, &[0, 1]).unwrap(); // PKEY_DISABLE_ACCESS
            let p = mmap(P, RW);
            assert_eq!(call(nr::PKEY_MPROTECT, &[p, P, RW, k]), Ok(0));
            assert_eq!(copy_to_user(p, b"x"), Err(Errno::EFAULT), "AD: no kernel write either");
            assert_eq!(t.mm.write().user_frame_count(), 0, "refused at the area, not at the page");
            let mut f = t.mm.write();
            let r = f.handle_fault(p, Access::Read, false, false, crate::arch::x86_64::pkru::read());
            assert_eq!(r, Err(SegvCode::PkuErr(Pkey::new(k as u32).unwrap())));
            // Instruction fetches are never checked against keys.
            assert_eq!(f.handle_fault(p, Access::Execute, false, false, Pkru::from_bits(u32::MAX)), Err(SegvCode::AccErr), "not exec: ACCERR, not PKUERR");
        });
    }

    #[ktest(needs = pku)]
    fn prot_exec_alone_gets_the_execute_only_key_and_leaving_it_returns_to_key_0() {
        as_fresh_program(|t| {
            let p = mmap(P, 4); // PROT_EXEC
            let xo = t.mm.read().pkeys.execute_only_pkey().expect("allocated lazily");
            assert_eq!(xo.index(), 1);
            assert_eq!(t.mm.read().vmas.find(p).unwrap().pkey, xo);
            assert!(!crate::arch::x86_64::pkru::read().allows_read(xo), "AD set in this thread's PKRU");
            let q = mmap(P, RW);
            assert_eq!(call(nr::MPROTECT, &[q, P, 4]), Ok(0));
            assert_eq!(t.mm.read().vmas.find(q).unwrap().pkey, xo, "mprotect(PROT_EXEC) too");
            assert_eq!(call(nr::MPROTECT, &[q, P, 5]), Ok(0));
            assert_eq!(t.mm.read().vmas.find(q).unwrap().pkey, Pkey::DEFAULT, "PROT_READ|PROT_EXEC leaves it");
            assert_eq!(call(nr::PKEY_MPROTECT, &[q, P, 1, xo.index() as u64]), Err(Errno::EINVAL), "invisible to pkey_mprotect");
            assert_eq!(call(nr::PKEY_ALLOC, &[0, 0]), Ok(2), "not handed out by pkey_alloc");
        });
    }

    #[ktest]
    fn a_read_maps_the_shared_zero_frame_and_a_write_breaks_it_without_counting_it() {
        as_fresh_program(|t| {
            let p = mmap(4 * P, RW);
            let mut b = [1u8];
            copy_from_user(&mut b, p).unwrap(); // the page tables of the range come now
            let free = frame::free_count();
            for i in 1..4 {
                copy_from_user(&mut b, p + i * P + 7).unwrap();
                assert_eq!(b, [0]);
            }
            assert_eq!(frame::free_count(), free, "reads take no frame");
            for i in 0..4 {
                assert_eq!(t.mm.write().page_frame(VirtAddr::new(p + i * P)), Some(frame::zero_frame()));
            }
            // A fork maps it once more on the child's side; neither side counts it.
            let child = t.mm.write().fork().unwrap();
            drop(child);
            copy_to_user(p + P, b"w").unwrap();
            assert_eq!(frame::free_count(), free - 1, "a write takes one fresh frame");
            let own = t.mm.write().page_frame(VirtAddr::new(p + P)).unwrap();
            assert!(!frame::is_zero_frame(own));
            assert_eq!(frame::references(own), 1);
            let mut four = [9u8; 4];
            copy_from_user(&mut four, p + P - 2).unwrap();
            assert_eq!(four, [0, 0, b'w', 0], "the fresh frame is zeros but for the write");
            // A tracer's write into a page only read gets the tracee its own copy.
            assert_eq!(t.mm.write().access_foreign(p + 2 * P, &mut { *b"x" }, true), 1);
            assert!(!frame::is_zero_frame(t.mm.write().page_frame(VirtAddr::new(p + 2 * P)).unwrap()));
            assert_eq!(frame::free_count(), free - 2);
            // mprotect keeps it read-only and copy-on-write, whatever the area allows.
            assert_eq!(call(nr::MPROTECT, &[p, 4 * P, 1]), Ok(0));
            assert_eq!(call(nr::MPROTECT, &[p, 4 * P, RW]), Ok(0));
            copy_to_user(p + 3 * P, b"v").unwrap();
            assert_eq!(frame::free_count(), free - 3);
            assert_eq!(t.mm.write().page_frame(VirtAddr::new(p)), Some(frame::zero_frame()), "page 0 only read");
            assert_eq!(call(nr::MUNMAP, &[p, 4 * P]), Ok(0));
            assert_eq!(frame::free_count(), free, "exactly the three written pages come back");
        });
    }

    #[ktest]
    fn shared_anonymous_memory_is_one_object_across_fork_and_splits() {
        const SHARED_ANON: u64 = 0x21;
        const MADV_DONTNEED: u64 = 4;
        as_fresh_program(|t| {
            let before = frame::free_count();
            let s = call(nr::MMAP, &[0, 4 * P, RW, SHARED_ANON, u64::MAX, 0]).expect("mmap");
            copy_to_user(s, b"parent").unwrap();
            let mut child = t.mm.write().fork().unwrap();
            assert_eq!(child.page_frame(VirtAddr::new(s)), None, "shared pages are not copied at fork");
            // The child (reached as a tracer reaches it: its faults are its own) reads page 0,
            // writes it (mapping the object's page) and page 2 (making it).
            let mut buf = [0u8; 6];
            assert_eq!(child.access_foreign(s, &mut buf, false), 6);
            assert_eq!(&buf, b"parent");
            assert_eq!(child.access_foreign(s, &mut { *b"child!" }, true), 6);
            assert_eq!(child.access_foreign(s + 2 * P, &mut { *b"two" }, true), 3);
            copy_from_user(&mut buf, s).unwrap();
            assert_eq!(&buf, b"child!", "the parent sees the child's write");
            let page0 = t.mm.write().page_frame(VirtAddr::new(s)).unwrap();
            assert_eq!(child.page_frame(VirtAddr::new(s)), Some(page0), "one frame, mapped twice");
            assert_eq!(frame::references(page0), 3, "the object's reference and two mappings");
            // A split keeps the object; the right piece's offset makes page 2 the same page.
            assert_eq!(call(nr::MPROTECT, &[s + P, P, 1]), Ok(0));
            assert_eq!(areas(t), 3);
            let mut three = [0u8; 3];
            copy_from_user(&mut three, s + 2 * P).unwrap();
            assert_eq!(&three, b"two");
            let index = |mm: &crate::mm::address_space::Mm, addr: u64| crate::mm::shmem::page_offset(mm.vmas.find(addr).unwrap(), addr);
            assert_eq!(index(&t.mm.read(), s + 3 * P + 5), Some(3));
            // DONTNEED drops the mapping, not the data.
            assert_eq!(call(nr::MADVISE, &[s, P, MADV_DONTNEED]), Ok(0));
            assert_eq!(frame::references(page0), 2);
            copy_from_user(&mut buf, s).unwrap();
            assert_eq!(&buf, b"child!");
            // The parent unmaps everything: the child's areas keep the object and its pages.
            assert_eq!(call(nr::MUNMAP, &[s, 4 * P]), Ok(0));
            assert_eq!(frame::references(page0), 2);
            drop(child);
            // Page tables of the range may stay (as on Linux); every data page is back.
            assert!(frame::free_count() + 4 >= before && frame::free_count() <= before, "{} vs {before}", frame::free_count());
            assert_eq!(t.mm.write().user_frame_count(), 0);
        });
    }

    #[ktest]
    fn brk_grows_shrinks_and_refuses_to_go_below_its_start() {
        as_fresh_program(|t| {
            {
                let mut mm = t.mm.write();
                mm.brk_start = 0x0060_0000;
                mm.brk = 0x0060_0000;
            }
            assert_eq!(call(nr::BRK, &[0]), Ok(0x0060_0000), "brk(0) reports the break");
            assert_eq!(call(nr::BRK, &[0x0060_2800]), Ok(0x0060_2800));
            copy_to_user(0x0060_27ff, b"e").unwrap();
            assert_eq!(call(nr::BRK, &[0x0050_0000]), Ok(0x0060_2800), "below the start: unchanged");
            assert_eq!(call(nr::BRK, &[0x0060_1000]), Ok(0x0060_1000));
            assert_eq!(copy_to_user(0x0060_2000, b"x"), Err(Errno::EFAULT), "shrunk away");
            // Growing into another mapping fails and keeps the old break.
            call(nr::MMAP, &[0x0060_4000, P, RW, PRIVATE_ANON | 0x10, u64::MAX, 0]).unwrap();
            assert_eq!(call(nr::BRK, &[0x0060_8000]), Ok(0x0060_1000));
        });
    }
}
