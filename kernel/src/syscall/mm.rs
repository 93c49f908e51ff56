//! Memory system calls: `mmap` (with `MAP_HUGETLB`: 2-MiB pages, see [`crate::mm::hugetlb`]),
//! `munmap`, `mprotect`, `pkey_mprotect`, `brk`, `madvise`, `mincore`.

use pkeys::{Errno, Pkey};
use vma::user::page_align_up;
use vma::{Backing, Prot, UserRange, PAGE_SIZE, TASK_SIZE};

use crate::arch::x86_64::pkru::CurrentPkru;
use crate::fs::OpenFile;
use crate::mm::area::{Area, MappedFile, AREA_HEAP_BYTES};
use crate::mm::shmem::ShmObject;
use crate::mm::hugetlb;
use crate::task;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_HUGETLB: u64 = 0x4_0000;
/// `MAP_HUGE_*`: log2 of the huge-page size in bits 26..32 of the flags (0: the default size).
const MAP_HUGE_SHIFT: u64 = 26;
const MAP_HUGE_MASK: u64 = 0x3f;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
/// Flags `MAP_SHARED_VALIDATE` accepts (Linux: `LEGACY_MAP_MASK` and friends, the ones pikku
/// knows): every other flag is only checked with `MAP_SHARED_VALIDATE`.
const MAP_KNOWN: u64 = 0x03 | MAP_FIXED | MAP_ANONYMOUS | 0x100 /*GROWSDOWN*/ | 0x800 /*DENYWRITE*/ | 0x1000 /*EXECUTABLE*/
    | 0x2000 /*LOCKED*/ | 0x4000 /*NORESERVE*/ | 0x8000 /*POPULATE*/ | 0x10000 /*NONBLOCK*/ | 0x20000 /*STACK*/
    | 0x40000 /*HUGETLB*/ | MAP_FIXED_NOREPLACE;

/// Most memory areas an address space may have: Linux's `vm.max_map_count` default
/// (`DEFAULT_MAX_MAP_COUNT` = 65,530). Each area is a kernel object, so without a limit a
/// program could fill the kernel heap with them, one `mprotect` of every other page at a time.
/// Past it `mmap`, an `mprotect` that would split an area, and a `munmap` that would punch a hole
/// in one, fail with `ENOMEM`.
pub const MAX_MAP_COUNT: usize = 65_530;

/// `ENOMEM` if cutting the areas at `start` and `end` would split one while the address space
/// is at [`MAX_MAP_COUNT`] (Linux: the `map_count >= sysctl_max_map_count` check in
/// `split_vma()`), or if the heap has no room for the two areas a split can add.
pub(crate) fn check_split(mm: &crate::mm::address_space::Mm, start: u64, end: u64) -> Result<(), Errno> {
    let splits = |at: u64| mm.vmas.find(at).is_some_and(|v| v.start != at);
    if mm.vmas.len() >= MAX_MAP_COUNT && (splits(start) || splits(end)) {
        return Err(Errno::ENOMEM);
    }
    crate::mm::heap::reserve(2 * AREA_HEAP_BYTES)
}

/// `munmap`'s version of [`check_split`] (Linux: `vms_gather_munmap_vmas()`): only a hole
/// punched in the middle of one area adds an area, so only that is refused at the limit —
/// trimming an area's head or tail leaves the count as it is, and lets a program at the limit
/// give memory back.
fn check_munmap_split(mm: &crate::mm::address_space::Mm, start: u64, end: u64) -> Result<(), Errno> {
    let punches_hole = mm.vmas.find(start).is_some_and(|v| v.start < start && end < v.end);
    if mm.vmas.len() >= MAX_MAP_COUNT && punches_hole {
        return Err(Errno::ENOMEM);
    }
    crate::mm::heap::reserve(2 * AREA_HEAP_BYTES)
}
/// `mmap(addr, len, prot, flags, fd, offset)`. Linux: `ksys_mmap_pgoff()` → `do_mmap()`.
///
/// Anonymous memory, private or shared (`MAP_SHARED | MAP_ANONYMOUS`: one
/// [`ShmObject`] that forked children share, Linux's
/// `shmem_zero_setup()`; its offset is ignored, as Linux sets `pgoff` to 0), and private
/// mappings of ramdisk files (`MAP_SHARED` of a file behaves as private: the ramdisk's files
/// cannot be written, so nobody could see the difference). `MAP_SHARED | MAP_HUGETLB` stays
/// private to the process too (its pool pages are not shared across fork).
pub fn sys_mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> Result<u64, Errno> {
    if offset & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    let thread = task::current();
    let huge = flags & MAP_HUGETLB != 0;
    let file = if flags & MAP_ANONYMOUS == 0 {
        let f = thread.process.files.lock().get(fd)?;
        if huge {
            // No file system of huge pages (hugetlbfs) here: any file is the wrong kind.
            return Err(Errno::EINVAL);
        }
        match &*f {
            OpenFile::File { file, .. } => Some(*file),
            _ => return Err(Errno::ENODEV),
        }
    } else {
        None
    };
    if huge {
        hugetlb::check_page_size((flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK)?;
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = if huge { hugetlb::align_len(len)? } else { page_align_up(len).filter(|&l| l != 0).ok_or(Errno::ENOMEM)? };
    match flags & MAP_SHARED_VALIDATE {
        MAP_PRIVATE | MAP_SHARED => {}
        MAP_SHARED_VALIDATE if flags & !MAP_KNOWN == 0 => {}
        MAP_SHARED_VALIDATE => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    }
    if offset.checked_add(len).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    let prot = Prot::from_bits_truncate(prot as u32);

    let mut mm = thread.mm.write();
    // Linux do_mmap(): too many areas already (and here: no heap for more).
    if mm.vmas.len() > MAX_MAP_COUNT {
        return Err(Errno::ENOMEM);
    }
    crate::mm::heap::reserve(3 * AREA_HEAP_BYTES)?;
    // Linux's overcommit heuristic (`vm.overcommit_memory` = 0, `__vm_enough_memory()`): a
    // mapping that reserves its memory (no MAP_NORESERVE) may not be larger than all of RAM —
    // a private writable one (`accountable_mapping()`), and shared anonymous memory whatever
    // its protection (its shmem file's `shmem_acct_size()`). Nothing is reserved otherwise —
    // pages come at the first touch. (Huge pages are not counted here: the pool's
    // reservation below stands for it.)
    let private = flags & MAP_SHARED_VALIDATE == MAP_PRIVATE;
    let accountable = !huge
        && flags & MAP_NORESERVE == 0
        && ((private && prot.contains(Prot::WRITE)) || (!private && file.is_none()));
    if accountable && len / PAGE_SIZE > crate::mm::frame::total_usable() as u64 {
        return Err(Errno::ENOMEM);
    }
    // Linux do_mmap(): PROT_EXEC alone gets the execute-only key (if one can be had).
    let pkey = if prot == Prot::EXEC {
        mm.pkeys.execute_only_pkey_for(&mut CurrentPkru).unwrap_or(Pkey::DEFAULT)
    } else {
        Pkey::DEFAULT
    };
    let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
        // Linux `__get_unmapped_area()`: beyond TASK_SIZE is ENOMEM, checked before alignment.
        let end = UserRange::new(addr, len).ok_or(Errno::ENOMEM)?.end();
        // (A huge page must start at a 2-MiB boundary: Linux's `prepare_hugepage_range()`.)
        let align = if huge { hugetlb::HPAGE_SIZE } else { PAGE_SIZE };
        if addr & (align - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_FIXED_NOREPLACE != 0 && mm.vmas.overlaps(addr, end) {
            return Err(Errno::EEXIST);
        }
        // What it replaces is unmapped as munmap would, so it may not cut a huge page either.
        hugetlb::check_cuts(&mm, addr, end)?;
        mm.unmap_range(addr, end);
        addr
    } else if huge {
        mm.find_free_huge_range(addr, len).ok_or(Errno::ENOMEM)?
    } else {
        mm.find_free_range(addr & !(PAGE_SIZE - 1), len).ok_or(Errno::ENOMEM)?
    };
    let backing = match file {
        None if !private && !huge => Backing::File { file: MappedFile::Shmem(ShmObject::new()), offset: 0, file_len: len },
        None => Backing::Anonymous,
        Some(file) => Backing::File { file: MappedFile::Ramdisk(file), offset, file_len: (file.data.len() as u64).saturating_sub(offset).min(len) },
    };
    let area = Area { start, end: start + len, prot, pkey, backing, policy: None };
    if huge {
        // The pool reserves the pages now, so a shortage is this call's ENOMEM, not a
        // SIGBUS later (unless MAP_NORESERVE).
        mm.add_huge_area(area, flags & MAP_NORESERVE == 0)?;
    } else {
        mm.add_area(area)?;
    }
    Ok(start)
}

/// `munmap(addr, len)`. Linux: `__vm_munmap()` → `do_vmi_munmap()`: misaligned, empty, or
/// reaching past `TASK_SIZE` → `EINVAL`.
pub fn sys_munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    let range = UserRange::pages(addr, len).filter(|r| !r.is_empty()).ok_or(Errno::EINVAL)?;
    let thread = task::current();
    let mut mm = thread.mm.write();
    check_munmap_split(&mm, range.start(), range.end())?;
    hugetlb::check_cuts(&mm, range.start(), range.end())?;
    mm.unmap_range(range.start(), range.end());
    Ok(0)
}

/// `mprotect(addr, len, prot)` = `do_mprotect_pkey(addr, len, prot, -1)`.
pub fn sys_mprotect(start: u64, len: u64, prot: u64) -> Result<u64, Errno> {
    do_mprotect_pkey(start, len, prot, -1)
}

/// `pkey_mprotect(addr, len, prot, pkey)`; `pkey` is a C `int`.
pub fn sys_pkey_mprotect(start: u64, len: u64, prot: u64, pkey: u64) -> Result<u64, Errno> {
    do_mprotect_pkey(start, len, prot, Pkey::syscall_int(pkey))
}

/// Linux `do_mprotect_pkey()`: the argument checks (pure, in [`pkeys::syscall`]), then the
/// write lock, then the key and the areas (`Mm::mprotect`).
fn do_mprotect_pkey(start: u64, len: u64, prot: u64, pkey: i32) -> Result<u64, Errno> {
    let Some(range) = pkeys::syscall::check_mprotect_args(start, len, prot)? else { return Ok(0) };
    let thread = task::current();
    let mut mm = thread.mm.write(); // mmap_write_lock_killable
    check_split(&mm, range.start, range.end)?;
    mm.mprotect(range, pkey, &mut CurrentPkru).map(|()| 0)
}

/// `brk(addr)`: moves the program break; returns the new break, or the old one if it cannot
/// move (Linux returns the current break on failure, never an error).
pub fn sys_brk(addr: u64) -> Result<u64, Errno> {
    let thread = task::current();
    let mut mm = thread.mm.write();
    let old = mm.brk;
    if addr < mm.brk_start || addr >= TASK_SIZE {
        return Ok(old);
    }
    let (old_end, new_end) = (page_align_up(old).unwrap_or(old), page_align_up(addr).unwrap_or(addr));
    if new_end > old_end {
        let area = Area { start: old_end, end: new_end, prot: Prot::READ | Prot::WRITE, pkey: Pkey::DEFAULT, backing: Backing::Anonymous, policy: None };
        if mm.add_area(area).is_err() {
            return Ok(old);
        }
    } else if new_end < old_end {
        if hugetlb::check_cuts(&mm, new_end, old_end).is_err() {
            return Ok(old);
        }
        mm.unmap_range(new_end, old_end);
    }
    mm.brk = addr;
    Ok(addr)
}

/// `madvise(addr, len, advice)`. Linux: `do_madvise()`: a misaligned `addr` is `EINVAL`, an
/// unknown advice `EINVAL`, `len == 0` succeeds, a range that wraps is `EINVAL`; a hole in the
/// range is `ENOMEM`. `MADV_DONTNEED` drops the pages; `MADV_NORMAL`, `RANDOM`, `SEQUENTIAL`,
/// `WILLNEED`, `HUGEPAGE`, `NOHUGEPAGE` are hints pikku accepts and ignores.
pub fn sys_madvise(addr: u64, len: u64, advice: u64) -> Result<u64, Errno> {
    const MADV_DONTNEED: u64 = 4;
    const HINTS: [u64; 6] = [0, 1, 2, 3, 14, 15];
    if addr & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    if advice != MADV_DONTNEED && !HINTS.contains(&advice) {
        return Err(Errno::EINVAL);
    }
    let len = page_align_up(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    let thread = task::current();
    let mut mm = thread.mm.write();
    if advice == MADV_DONTNEED {
        mm.drop_pages(addr, end)?;
    } else if !mm.vmas.covers(addr, end) {
        return Err(Errno::ENOMEM);
    }
    Ok(0)
}

/// `mincore(start, len, vec)`: one byte per page of `[start, start + len)`, 1 if the page is in
/// memory. Linux: `sys_mincore()`, its checks in its order — a misaligned `start` is `EINVAL`,
/// a range outside user space `ENOMEM` (`access_ok()`), a vector outside user space `EFAULT`;
/// `len == 0` then succeeds. The range is answered in chunks of at most one page of bytes
/// (4,096 pages), each under the address-space lock and then copied out, so a hole is
/// `ENOMEM` and a vector that faults `EFAULT` only after the chunks before it were written.
/// With no swap, "in memory" is: mapped, or — for pages not mapped here — held by the file or
/// shared object behind the area ([`Mm::mincore`](crate::mm::address_space::Mm::mincore)).
pub fn sys_mincore(start: u64, len: u64, vec: u64) -> Result<u64, Errno> {
    /// Linux's bounce buffer is one page: at most this many pages per chunk.
    const CHUNK: u64 = PAGE_SIZE;
    if start & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    UserRange::new(start, len).ok_or(Errno::ENOMEM)?;
    let mut pages = len / PAGE_SIZE + u64::from(!len.is_multiple_of(PAGE_SIZE));
    UserRange::new(vec, pages).ok_or(Errno::EFAULT)?;
    // Linux takes its bounce page with `__get_free_page()`: none is `EAGAIN`.
    crate::mm::heap::reserve(CHUNK as usize).map_err(|_| Errno::EAGAIN)?;
    let thread = task::current();
    let mut status = alloc::vec![0u8; CHUNK as usize];
    let (mut start, mut vec) = (start, vec);
    while pages > 0 {
        let wanted = pages.min(CHUNK) as usize;
        let done = thread.mm.write().mincore(start, &mut status[..wanted])?;
        crate::mm::user::copy_to_user(vec, &status[..done])?;
        pages -= done as u64;
        vec += done as u64;
        start += done as u64 * PAGE_SIZE;
    }
    Ok(0)
}
