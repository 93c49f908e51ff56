//! A minimal `/proc` and `/sys`: a few files whose text is made from the kernel's live state
//! when they are opened — what Linux's pkey selftest and tools that read keys look at.
//!
//! * `/proc/sys/vm/nr_hugepages` (0644) and `/sys/kernel/mm/hugepages/hugepages-2048kB/
//!   nr_hugepages` (0644): the size of the 2 MiB page pool, read and written through
//!   [`crate::mm::hugetlb`], so the two always agree (Linux: `hugetlb_sysctl_handler()`,
//!   `nr_hugepages_store()`);
//! * `.../free_hugepages` (0444): the pool's unused pages;
//! * `/proc/cpuinfo` (0444): one block per CPU, its flags from CPUID (`pku`) and from what the
//!   kernel enabled (`ospke`, Linux's `X86_FEATURE_OSPKE` once CR4.PKE is set);
//! * `/proc/self/maps` and `/proc/self/smaps` (0444): the caller's memory areas in Linux's
//!   format, smaps with the resident counts from the page tables and `ProtectionKey:` — how
//!   Linux shows keys to tools — when OSPKE is on.
//!
//! As on Linux, the text is made once per open (Linux's `seq_file` makes it on the first read
//! from offset 0) and a write sets the value at once. Who may open for writing follows the
//! mode: root by the owner's bits, anyone else by the others' bits, so uid 1000 gets `EACCES`
//! for `nr_hugepages` and root gets `EACCES` for a 0444 file (Linux: `sysctl_perm()`, kernfs'
//! "no write method" check). A write must be one number (leading and trailing blanks allowed),
//! or `EINVAL` (Linux: `proc_doulongvec_minmax()`); a sysctl ignores a write that does not
//! start at offset 0 (see [`write()`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use pkeys::Errno;

use crate::arch::x86_64::cpu;
use crate::mm::hugetlb;

/// One of the generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcFile {
    /// `/proc/sys/vm/nr_hugepages`.
    NrHugepages,
    /// `/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`.
    SysNrHugepages,
    /// `/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages`.
    SysFreeHugepages,
    /// `/proc/cpuinfo`.
    Cpuinfo,
    /// `/proc/self/maps`.
    Maps,
    /// `/proc/self/smaps`.
    Smaps,
}

/// Every generated file: its path and mode (a regular file, owned by root).
const FILES: &[(&str, ProcFile, u32)] = &[
    ("/proc/sys/vm/nr_hugepages", ProcFile::NrHugepages, 0o100644),
    ("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", ProcFile::SysNrHugepages, 0o100644),
    ("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", ProcFile::SysFreeHugepages, 0o100444),
    ("/proc/cpuinfo", ProcFile::Cpuinfo, 0o100444),
    ("/proc/self/maps", ProcFile::Maps, 0o100444),
    ("/proc/self/smaps", ProcFile::Smaps, 0o100444),
];

/// The generated file at `path`, and its mode; `None` if `path` is not one of them.
pub fn lookup(path: &[u8]) -> Option<(ProcFile, u32)> {
    FILES.iter().find(|(p, _, _)| p.as_bytes() == path).map(|&(_, f, mode)| (f, mode))
}

/// May a process running as `uid` open a file of `mode` for writing? Root by the owner's
/// write bit, anyone else by the others' (the files are root's).
pub fn may_write(mode: u32, uid: u32) -> bool {
    let bit = if uid == 0 { 0o200 } else { 0o002 };
    mode & bit != 0
}

/// The file's text now.
pub fn render(file: ProcFile) -> Vec<u8> {
    match file {
        ProcFile::NrHugepages | ProcFile::SysNrHugepages => format!("{}\n", hugetlb::nr_hugepages()).into_bytes(),
        ProcFile::SysFreeHugepages => format!("{}\n", hugetlb::free_hugepages()).into_bytes(),
        ProcFile::Cpuinfo => cpuinfo().into_bytes(),
        ProcFile::Maps => maps(false).into_bytes(),
        ProcFile::Smaps => maps(true).into_bytes(),
    }
}

/// A write of `bytes` at file position `at` to `file` (opened for writing, so one of the
/// writable ones); the caller moves the position on by the whole write when it succeeds.
/// A sysctl written past its start ignores the bytes (Linux's default `sysctl_writes_strict`,
/// `proc_first_pos_non_zero_ignore()`: a second `write` on the same fd changes nothing and
/// still reports every byte written); sysfs takes every write whole.
pub fn write(file: ProcFile, at: u64, bytes: &[u8]) -> Result<(), Errno> {
    match file {
        ProcFile::NrHugepages if at > 0 => Ok(()),
        ProcFile::NrHugepages | ProcFile::SysNrHugepages => {
            hugetlb::set_nr_hugepages(parse_number(bytes)?);
            Ok(())
        }
        ProcFile::SysFreeHugepages | ProcFile::Cpuinfo | ProcFile::Maps | ProcFile::Smaps => Err(Errno::EACCES),
    }
}

/// One unsigned decimal number, blanks around it allowed (`"10"`, `"10\n"`); else `EINVAL`.
fn parse_number(bytes: &[u8]) -> Result<u64, Errno> {
    let text = core::str::from_utf8(bytes).map_err(|_| Errno::EINVAL)?.trim_ascii();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Errno::EINVAL);
    }
    text.parse().map_err(|_| Errno::EINVAL)
}

/// CPUID feature bits `/proc/cpuinfo` names, in Linux's order (`arch/x86/include/asm/
/// cpufeatures.h` word by word): (name, leaf, sub-leaf, register 0–3 = EAX–EDX, bit).
const CPUID_FLAGS: &[(&str, u32, u32, u8, u32)] = &[
    ("fpu", 1, 0, 3, 0),
    ("tsc", 1, 0, 3, 4),
    ("msr", 1, 0, 3, 5),
    ("pae", 1, 0, 3, 6),
    ("apic", 1, 0, 3, 9),
    ("pge", 1, 0, 3, 13),
    ("cmov", 1, 0, 3, 15),
    ("fxsr", 1, 0, 3, 24),
    ("sse", 1, 0, 3, 25),
    ("sse2", 1, 0, 3, 26),
    ("syscall", 0x8000_0001, 0, 3, 11),
    ("nx", 0x8000_0001, 0, 3, 20),
    ("lm", 0x8000_0001, 0, 3, 29),
    ("pni", 1, 0, 2, 0),
    ("ssse3", 1, 0, 2, 9),
    ("sse4_1", 1, 0, 2, 19),
    ("sse4_2", 1, 0, 2, 20),
    ("xsave", 1, 0, 2, 26),
    ("rdrand", 1, 0, 2, 30),
    ("smep", 7, 0, 1, 7),
    ("smap", 7, 0, 1, 20),
    ("pku", 7, 0, 2, 3),
];

/// Does CPUID report this flag? (SDM Vol. 2A, CPUID.)
fn cpuid_flag(leaf: u32, subleaf: u32, reg: u8, bit: u32) -> bool {
    let max = cpu::cpuid(leaf & 0x8000_0000, 0).eax;
    if leaf > max {
        return false;
    }
    let r = cpu::cpuid(leaf, subleaf);
    let value = [r.eax, r.ebx, r.ecx, r.edx][reg as usize];
    value & (1 << bit) != 0
}

/// The CPUs that run: the one place `/proc/cpuinfo` learns it from. One until the application
/// processors are brought up; the SMP bring-up replaces this with its count of started CPUs.
fn online_cpus() -> usize {
    1
}

/// `/proc/cpuinfo`: one block per CPU (Linux: `show_cpuinfo()`), the fields a reader of keys
/// looks at. `ospke` follows `pku` as in Linux's flag order, and only when the kernel turned
/// CR4.PKE on.
fn cpuinfo() -> String {
    let f = cpu::features();
    let mut flags: Vec<&str> = CPUID_FLAGS.iter().filter(|&&(_, l, s, r, b)| cpuid_flag(l, s, r, b)).map(|&(n, ..)| n).collect();
    if cpu::ospke() {
        flags.push("ospke");
    }
    let flags = flags.join(" ");
    let mut out = String::new();
    for n in 0..online_cpus() {
        out.push_str(&format!(
            "processor\t: {n}\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: {}\nmodel name\t: {}\nstepping\t: {}\nflags\t\t: {flags}\n\n",
            cpu::text(&f.vendor),
            f.family,
            f.model,
            cpu::text(&f.brand).trim(),
            f.stepping,
        ));
    }
    out
}

/// Resident-page counts of one area, in pages (Linux: `struct mem_size_stats`).
#[derive(Default)]
struct Resident {
    rss: u64,
    /// Σ 1/sharers, in 1/4096ths of a page: `Pss` is exact to the byte, as Linux's.
    pss_4k: u64,
    pss_dirty_4k: u64,
    shared_clean: u64,
    shared_dirty: u64,
    private_clean: u64,
    private_dirty: u64,
}

/// `/proc/self/maps` (`smaps` false) or `/proc/self/smaps`: one entry per area, lowest first
/// (Linux: `show_map_vma()`, `show_smap()`). Areas of the ELF file show the file's inode but
/// no path (pikku's areas do not keep it); the program break's area is `[heap]`, the stack's
/// `[stack]`.
fn maps(smaps: bool) -> String {
    use crate::mm::area::{MappedFile, STACK_SIZE, STACK_TOP};
    use vma::{Backing, Prot};
    let thread = crate::task::current();
    let mut mm = thread.mm.write();
    let mut resident: Vec<(u64, Resident)> = Vec::new();
    if smaps {
        let areas: Vec<u64> = mm.vmas.iter().map(|a| a.start).collect();
        resident = areas.iter().map(|&start| (start, Resident::default())).collect();
        let mut pages = Vec::new();
        mm.for_each_resident_page(|addr, frame, dirty| pages.push((addr, frame, dirty)));
        for (addr, frame, pte_dirty) in pages {
            let Some(area) = mm.vmas.find(addr) else { continue };
            // The shared zero frame is no page of the program's (Linux: `vm_normal_page()` is
            // NULL for it): a page only read so far is not resident.
            if crate::mm::frame::is_zero_frame(frame) {
                continue;
            }
            // Any other resident anonymous page is the program's own private copy, which Linux
            // counts as dirty once written (and keeps its D bit through mprotect, where pikku's
            // rewrite of the PTE starts it afresh).
            let dirty = pte_dirty || matches!(area.backing, Backing::Anonymous);
            let Ok(i) = resident.binary_search_by_key(&area.start, |(s, _)| *s) else { continue };
            let r = &mut resident[i].1;
            // A shared object's own reference to its page is no mapping (Linux counts mappings:
            // `page_mapcount()`).
            let object_ref = u16::from(matches!(area.backing, Backing::File { file: MappedFile::Shmem(_), .. }));
            let sharers = u64::from(crate::mm::frame::references(frame).saturating_sub(object_ref).max(1));
            r.rss += 1;
            r.pss_4k += 4096 / sharers;
            match (sharers > 1, dirty) {
                (true, true) => r.shared_dirty += 1,
                (true, false) => r.shared_clean += 1,
                (false, true) => r.private_dirty += 1,
                (false, false) => r.private_clean += 1,
            }
            if dirty {
                r.pss_dirty_4k += 4096 / sharers;
            }
        }
    }
    let (heap_start, heap_end) = (mm.brk_start, mm.brk);
    let mut out = String::new();
    for area in mm.vmas.iter() {
        let flag = |p: Prot, c: char| if area.prot.contains(p) { c } else { '-' };
        let (offset, inode) = match &area.backing {
            // (Linux names a MAP_HUGETLB area's hugetlbfs file; pikku has no file behind it.)
            Backing::Anonymous | Backing::Hugetlb { .. } => (0, 0),
            Backing::File { file: MappedFile::Ramdisk(file), offset, .. } => (*offset, file.ino),
            Backing::File { file: MappedFile::Shmem(object), offset, .. } => (*offset, object.ino),
        };
        let dev = if inode == 0 { "00:00" } else { "00:01" };
        let is_shmem = matches!(area.backing, Backing::File { file: MappedFile::Shmem(_), .. });
        let shared = if is_shmem { 's' } else { 'p' };
        out.push_str(&format!("{:08x}-{:08x} {}{}{}{shared} {offset:08x} {dev} {inode} ", area.start, area.end, flag(Prot::READ, 'r'), flag(Prot::WRITE, 'w'), flag(Prot::EXEC, 'x')));
        let is_stack = area.end == STACK_TOP && area.start >= STACK_TOP - STACK_SIZE;
        let name = if is_shmem {
            // Linux's shmem file behind shared anonymous memory.
            "/dev/zero (deleted)"
        } else if is_stack {
            "[stack]"
        } else if heap_end > heap_start && area.start >= heap_start && area.end <= vma::user::page_align_up(heap_end).unwrap_or(heap_end) {
            "[heap]"
        } else {
            ""
        };
        if !name.is_empty() {
            // Linux pads the name to column 74 (`seq_pad()`).
            while out.len() - out.rfind('\n').map_or(0, |i| i + 1) < 73 {
                out.push(' ');
            }
            out.push_str(name);
        }
        out.push('\n');
        if !smaps {
            continue;
        }
        let empty = Resident::default();
        let r = resident.binary_search_by_key(&area.start, |(s, _)| *s).map_or(&empty, |i| &resident[i].1);
        let anonymous = match area.backing {
            Backing::Anonymous => r.rss,
            // Linux counts huge pages apart (`Private_Hugetlb:`), not as anonymous memory.
            Backing::Hugetlb { .. } => 0,
            // A private file page someone wrote is an anonymous copy.
            Backing::File { .. } => r.private_dirty + r.shared_dirty,
        };
        let kb = |label: &str, pages: u64| format!("{label:<16}{:>8} kB\n", pages * 4);
        out.push_str(&kb("Size:", (area.end - area.start) / 4096));
        out.push_str(&kb("KernelPageSize:", 1));
        out.push_str(&kb("MMUPageSize:", 1));
        out.push_str(&kb("Rss:", r.rss));
        out.push_str(&format!("{:<16}{:>8} kB\n", "Pss:", r.pss_4k / 1024));
        out.push_str(&format!("{:<16}{:>8} kB\n", "Pss_Dirty:", r.pss_dirty_4k / 1024));
        out.push_str(&kb("Shared_Clean:", r.shared_clean));
        out.push_str(&kb("Shared_Dirty:", r.shared_dirty));
        out.push_str(&kb("Private_Clean:", r.private_clean));
        out.push_str(&kb("Private_Dirty:", r.private_dirty));
        out.push_str(&kb("Referenced:", r.rss));
        out.push_str(&kb("Anonymous:", anonymous));
        for label in ["KSM:", "LazyFree:", "AnonHugePages:", "ShmemPmdMapped:", "FilePmdMapped:", "Shared_Hugetlb:", "Private_Hugetlb:", "Swap:", "SwapPss:", "Locked:"] {
            out.push_str(&kb(label, 0));
        }
        out.push_str(&format!("{:<16}{:>8}\n", "THPeligible:", 0));
        if cpu::ospke() {
            out.push_str(&format!("{:<16}{:>8}\n", "ProtectionKey:", area.pkey.index()));
        }
        // Linux's VmFlags in its bit order; every area here is a private mapping (so it may
        // read, write and execute: mr mw me), new areas are soft-dirty (sd). VM_ACCOUNT (ac)
        // is not tracked: an area is taken as accounted when writable or anonymous and
        // accessible, which is what it is unless mprotect changed it.
        let mut vm = String::from("VmFlags: ");
        for (on, name) in [
            (area.prot.contains(Prot::READ), "rd"),
            (area.prot.contains(Prot::WRITE), "wr"),
            (area.prot.contains(Prot::EXEC), "ex"),
            (true, "mr"),
            (true, "mw"),
            (true, "me"),
            (is_stack, "gd"),
            (area.prot.contains(Prot::WRITE) || (matches!(area.backing, Backing::Anonymous) && !area.prot.is_empty()), "ac"),
            (true, "sd"),
        ] {
            if on {
                vm.push_str(name);
                vm.push(' ');
            }
        }
        vm.push('\n');
        out.push_str(&vm);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn numbers_parse_as_linux_reads_a_sysctl() {
        assert_eq!(parse_number(b"10"), Ok(10));
        assert_eq!(parse_number(b" 10\n"), Ok(10));
        assert_eq!(parse_number(b""), Err(Errno::EINVAL));
        assert_eq!(parse_number(b"-1"), Err(Errno::EINVAL));
        assert_eq!(parse_number(b"1x"), Err(Errno::EINVAL));
        assert_eq!(parse_number(b"99999999999999999999999"), Err(Errno::EINVAL));
    }

    #[ktest]
    fn only_root_writes_nr_hugepages_and_nobody_writes_0444() {
        let (_, mode) = lookup(b"/proc/sys/vm/nr_hugepages").expect("listed");
        assert!(may_write(mode, 0));
        assert!(!may_write(mode, 1000));
        let (_, mode) = lookup(b"/proc/cpuinfo").expect("listed");
        assert!(!may_write(mode, 0));
        assert!(lookup(b"/proc/sys/vm/nr_hugepage").is_none());
    }

    #[ktest]
    fn proc_and_sys_agree_on_the_pool() {
        assert_eq!(render(ProcFile::NrHugepages), render(ProcFile::SysNrHugepages));
    }
}
