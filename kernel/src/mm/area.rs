//! Memory areas of an address space: `mmap`, `munmap`, `mprotect`/`pkey_mprotect`, `brk`, and
//! the page-fault path that fills them on demand.
//!
//! The areas ([`vma::VmaMap`]) are the truth; the page tables are filled lazily from them.
//! A page gets its protection *and its protection key* from its area the moment it is first
//! touched (Linux: `vm_get_page_prot()` puts the key bits into `vm_page_prot`, from which every
//! PTE is made); `mprotect`/`pkey_mprotect` rewrite both the areas and every present PTE of the
//! range (Linux: `change_protection()`).

use pkeys::{Errno, Pkey, Pkru, Support};
use vma::{Backing, Hole, Prot, Vma, PAGE_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags};
use x86_64::VirtAddr;

use super::address_space::Mm;
use super::frame;
use crate::arch::x86_64::paging::{self, PROT_NONE_BIT};
use crate::fs::RamFile;

/// Lowest address `mmap` hands out without `MAP_FIXED` (Linux: `mmap_min_addr` is 64 KiB; the
/// program's own segments usually sit above 4 MiB).
pub const MMAP_FLOOR: u64 = 0x1000_0000;
/// Top of the stack area; the stack grows down from here.
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// Size of the main thread's stack area (Linux's default `RLIMIT_STACK`, 8 MiB).
pub const STACK_SIZE: u64 = 8 << 20;
/// Top of the `mmap` region: below the stack, with a gap (as Linux's `mmap_base`).
pub const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (1 << 30);

/// One memory area as pikku stores it.
pub type Area = Vma<RamFile>;

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

impl SegvCode {
    /// The Linux `si_code` value.
    pub fn si_code(self) -> i32 {
        match self {
            SegvCode::MapErr => 1,
            SegvCode::AccErr | SegvCode::OutOfMemory => 2,
            SegvCode::PkuErr(_) => 4,
        }
    }
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

impl Mm {
    /// Adds an area where nothing is mapped (`EEXIST` if something is, `ENOMEM` outside user
    /// space).
    pub fn add_area(&mut self, area: Area) -> Result<(), Errno> {
        if area.end > paging::USER_END || area.start >= area.end || area.start % PAGE_SIZE != 0 || area.end % PAGE_SIZE != 0 {
            return Err(Errno::ENOMEM);
        }
        if self.vmas.insert(area) {
            Ok(())
        } else {
            Err(Errno::EEXIST)
        }
    }

    /// Removes `[start, end)` from the areas and frees every page that was mapped there.
    /// Linux: `do_vmi_munmap()`.
    pub fn unmap_range(&mut self, start: u64, end: u64) {
        for piece in self.vmas.remove_range(start, end) {
            let mut addr = piece.start;
            while addr < piece.end {
                if let Some(frame) = self.root().unmap_leaf(page(addr)) {
                    frame::free(frame);
                }
                addr += PAGE_SIZE;
            }
        }
    }

    /// `mmap` placement: the highest free range of `len` bytes below [`MMAP_TOP`], or `hint`
    /// if it is free. Linux: `get_unmapped_area()` with the top-down layout.
    pub fn find_free_range(&self, hint: u64, len: u64) -> Option<u64> {
        if hint != 0 && hint % PAGE_SIZE == 0 && hint >= MMAP_FLOOR {
            if let Some(end) = hint.checked_add(len) {
                if end <= MMAP_TOP && !self.vmas.overlaps(hint, end) {
                    return Some(hint);
                }
            }
        }
        self.vmas.find_free(len, MMAP_FLOOR, MMAP_TOP)
    }

    /// Linux `do_mprotect_pkey()` after its argument checks (done by the caller with
    /// `pkeys::syscall::check_mprotect_args`): validate the key, walk the areas, give each its
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
        let prot = Prot::from_bits_truncate(range.prot as u32);
        let support = self.pkeys.support();
        let pkeys = &mut self.pkeys;
        let result = self.vmas.protect(range.start, range.end, |area| {
            (prot, override_mprotect_pkey(support, pkeys, pkru, area, prot, explicit))
        });
        let done_until = match result {
            Ok(_) => range.end,
            Err(Hole { at }) => at,
        };
        self.apply_area_protection(range.start, done_until);
        result.map(|_| ()).map_err(|_| Errno::ENOMEM)
    }

    /// Rewrites every present (or `PROT_NONE`-kept) PTE in `[start, end)` from its area's
    /// protection and key, keeping the frame. Linux: `change_protection()` → `pte_modify()`.
    fn apply_area_protection(&mut self, start: u64, end: u64) {
        let mut addr = start;
        while addr < end {
            let Some(area) = self.vmas.find(addr) else {
                addr += PAGE_SIZE;
                continue;
            };
            let bits = pte_bits(area.prot, area.pkey);
            let area_end = area.end.min(end);
            while addr < area_end {
                self.root().update_leaf(page(addr), |old| (old & 0x000f_ffff_ffff_f000) | bits);
                addr += PAGE_SIZE;
            }
        }
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
    ///    and key.
    pub fn handle_fault(&mut self, addr: u64, access: Access, present: bool, pk: bool, pkru: Pkru) -> Result<(), SegvCode> {
        let Some(area) = self.vmas.find(addr).cloned() else { return Err(SegvCode::MapErr) };
        if pk {
            return Err(SegvCode::PkuErr(area.pkey));
        }
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
        if present || self.root().leaf_entry(page(addr)).is_some() {
            // The page exists and the area allows the access, yet the CPU refused it: nothing
            // pikku could change would help (there is no copy-on-write yet).
            return Err(SegvCode::AccErr);
        }
        let page_start = addr & !(PAGE_SIZE - 1);
        let frame = frame::alloc().ok_or(SegvCode::OutOfMemory)?;
        paging::zero_frame(frame);
        if let Backing::File { file, offset, file_len } = &area.backing {
            let within = page_start - area.start;
            if within < *file_len {
                let from = (offset + within) as usize;
                let len = (file_len - within).min(PAGE_SIZE) as usize;
                let bytes = file.data.get(from..from + len).unwrap_or(&[]);
                paging::write_frame(frame, 0, bytes);
            }
        }
        let flags = PageTableFlags::from_bits_retain(pte_bits(area.prot, area.pkey));
        if self.root().map(page(page_start), frame, flags, frame::alloc).is_err() {
            frame::free(frame);
            return Err(SegvCode::OutOfMemory);
        }
        Ok(())
    }
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
