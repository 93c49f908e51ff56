//! ELF64 executables: validation and the load plan.
//!
//! pikku loads static executables: `ET_EXEC` at their link addresses, or `ET_DYN` without an
//! interpreter (static-pie) at [`DYN_BASE`], as Linux does for such files (`ELF_ET_DYN_BASE`).
//! Each `PT_LOAD` segment becomes one memory area, backed by the file for `p_filesz` bytes and
//! by zeros up to `p_memsz` (the `.bss`). Everything is checked: a malformed file is refused
//! with [`ElfError`] (the syscall turns that into `ENOEXEC`), never trusted.

use alloc::vec::Vec;
use vma::{Prot, PAGE_SIZE, TASK_SIZE};

/// Where a static-pie executable is placed (Linux x86-64: `ELF_ET_DYN_BASE`, 2/3 of 128 TiB).
pub const DYN_BASE: u64 = 0x5555_5555_4000;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

/// Why a file is not a loadable executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    BadMagic,
    NotElf64LittleEndian,
    NotX86_64,
    NotExecutable,
    /// Dynamically linked: needs an interpreter pikku does not provide.
    NeedsInterpreter,
    BadProgramHeaders,
    /// A segment is misaligned, overflows, lies outside the file or outside user space.
    BadSegment,
    NoLoadableSegment,
    /// The entry point (bias applied) is not a user address (Linux: `BAD_ADDR(e_entry)`).
    BadEntry,
}

/// One `PT_LOAD` segment, as planned for memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First page of the area (page-aligned, bias applied).
    pub start: u64,
    /// End of the area (page-aligned).
    pub end: u64,
    pub prot: Prot,
    /// File offset that corresponds to `start`.
    pub file_offset: u64,
    /// Bytes of the area that come from the file (the rest is zeros).
    pub file_len: u64,
}

/// A validated executable and where its pieces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// Entry point (bias applied): AT_ENTRY and the first user RIP.
    pub entry: u64,
    /// Address of the program headers in memory: AT_PHDR.
    pub phdr: u64,
    /// AT_PHENT and AT_PHNUM.
    pub phent: u64,
    pub phnum: u64,
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    pub segments: Vec<Segment>,
    /// The end of the highest segment: where the program break starts.
    pub brk_start: u64,
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}

/// Is this file an ELF file at all (the `\x7fELF` magic)? `execve` says `ENOEXEC` otherwise.
pub fn has_elf_magic(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

/// Validates `data` and plans its memory areas.
pub fn plan(data: &[u8]) -> Result<LoadPlan, ElfError> {
    if data.len() < 64 {
        return Err(ElfError::TooShort);
    }
    if !has_elf_magic(data) {
        return Err(ElfError::BadMagic);
    }
    // EI_CLASS = ELFCLASS64 (2), EI_DATA = ELFDATA2LSB (1).
    if data[4] != 2 || data[5] != 1 {
        return Err(ElfError::NotElf64LittleEndian);
    }
    let e_type = u16_at(data, 16).ok_or(ElfError::TooShort)?;
    if u16_at(data, 18) != Some(EM_X86_64) {
        return Err(ElfError::NotX86_64);
    }
    let bias = match e_type {
        ET_EXEC => 0,
        ET_DYN => DYN_BASE,
        _ => return Err(ElfError::NotExecutable),
    };
    let entry = u64_at(data, 24).ok_or(ElfError::TooShort)?;
    let phoff = u64_at(data, 32).ok_or(ElfError::TooShort)?;
    let phentsize = u16_at(data, 54).ok_or(ElfError::TooShort)? as u64;
    let phnum = u16_at(data, 56).ok_or(ElfError::TooShort)? as u64;
    if phentsize != 56 || phnum == 0 || phnum > 128 {
        return Err(ElfError::BadProgramHeaders);
    }
    let ph_end = phoff.checked_add(phentsize * phnum).ok_or(ElfError::BadProgramHeaders)?;
    if ph_end > data.len() as u64 {
        return Err(ElfError::BadProgramHeaders);
    }

    let mut segments = Vec::new();
    let mut phdr_vaddr = None;
    for i in 0..phnum {
        let h = (phoff + i * phentsize) as usize;
        let p_type = u32_at(data, h).ok_or(ElfError::BadProgramHeaders)?;
        let p_flags = u32_at(data, h + 4).ok_or(ElfError::BadProgramHeaders)?;
        let p_offset = u64_at(data, h + 8).ok_or(ElfError::BadProgramHeaders)?;
        let p_vaddr = u64_at(data, h + 16).ok_or(ElfError::BadProgramHeaders)?;
        let p_filesz = u64_at(data, h + 32).ok_or(ElfError::BadProgramHeaders)?;
        let p_memsz = u64_at(data, h + 40).ok_or(ElfError::BadProgramHeaders)?;
        match p_type {
            PT_INTERP => return Err(ElfError::NeedsInterpreter),
            PT_PHDR => phdr_vaddr = Some(p_vaddr),
            PT_LOAD => {
                if p_memsz == 0 {
                    continue;
                }
                let bad = p_filesz > p_memsz
                    || p_offset.checked_add(p_filesz).is_none_or(|e| e > data.len() as u64)
                    || p_vaddr % PAGE_SIZE != p_offset % PAGE_SIZE;
                if bad {
                    return Err(ElfError::BadSegment);
                }
                let vaddr = p_vaddr.checked_add(bias).ok_or(ElfError::BadSegment)?;
                let vend = vaddr.checked_add(p_memsz).ok_or(ElfError::BadSegment)?;
                let start = vaddr & !(PAGE_SIZE - 1);
                let end = vma::user::page_align_up(vend).ok_or(ElfError::BadSegment)?;
                if start < PAGE_SIZE || end > TASK_SIZE {
                    return Err(ElfError::BadSegment);
                }
                let mut prot = Prot::empty();
                if p_flags & 4 != 0 {
                    prot |= Prot::READ;
                }
                if p_flags & 2 != 0 {
                    prot |= Prot::WRITE;
                }
                if p_flags & 1 != 0 {
                    prot |= Prot::EXEC;
                }
                let lead = vaddr - start;
                segments.push(Segment { start, end, prot, file_offset: p_offset - lead, file_len: p_filesz + lead });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegment);
    }
    segments.sort_by_key(|s| s.start);
    if segments.windows(2).any(|w| w[0].end > w[1].start) {
        return Err(ElfError::BadSegment);
    }
    let entry = entry.checked_add(bias).filter(|&e| e < TASK_SIZE).ok_or(ElfError::BadEntry)?;
    // AT_PHDR: PT_PHDR if present, else the headers' place inside the segment holding them.
    // Only a value handed to the program, never used by the kernel: the file's own number,
    // biased as Linux's unsigned sum would (wrapping, not overflowing).
    let phdr = match phdr_vaddr {
        Some(v) => v.wrapping_add(bias),
        None => segments
            .iter()
            .find(|s| s.file_offset <= phoff && ph_end <= s.file_offset + s.file_len)
            .map(|s| s.start + (phoff - s.file_offset))
            .unwrap_or(0),
    };
    let brk_start = segments.iter().map(|s| s.end).max().unwrap_or(0);
    Ok(LoadPlan { entry, phdr, phent: phentsize, phnum, bias, segments, brk_start })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ET_EXEC image: header, one PT_LOAD (R+X) covering the file, a second (R+W)
    /// with a .bss.
    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 0x2100];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        d[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        d[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |d: &mut Vec<u8>, i: usize, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64| {
            let h = 64 + i * 56;
            d[h..h + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            d[h + 4..h + 8].copy_from_slice(&flags.to_le_bytes());
            d[h + 8..h + 16].copy_from_slice(&off.to_le_bytes());
            d[h + 16..h + 24].copy_from_slice(&vaddr.to_le_bytes());
            d[h + 32..h + 40].copy_from_slice(&filesz.to_le_bytes());
            d[h + 40..h + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        ph(&mut d, 0, 5, 0, 0x400000, 0x1800, 0x1800);
        ph(&mut d, 1, 6, 0x2010, 0x403010, 0xf0, 0x3000);
        d
    }

    #[test]
    fn plans_segments_with_bss_and_phdr() {
        let p = plan(&image()).unwrap();
        assert_eq!(p.entry, 0x401000);
        assert_eq!(p.phdr, 0x400040, "headers sit in the first segment");
        assert_eq!(p.phnum, 2);
        assert_eq!(p.segments[0], Segment { start: 0x400000, end: 0x402000, prot: Prot::READ | Prot::EXEC, file_offset: 0, file_len: 0x1800 });
        assert_eq!(p.segments[1], Segment { start: 0x403000, end: 0x407000, prot: Prot::READ | Prot::WRITE, file_offset: 0x2000, file_len: 0x100 });
        assert_eq!(p.brk_start, 0x407000);
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        assert_eq!(plan(b"#!/bin/sh\n"), Err(ElfError::TooShort));
        let mut d = image();
        d[0] = b'X';
        assert_eq!(plan(&d), Err(ElfError::BadMagic));
        let mut d = image();
        d[18] = 3; // EM_386
        assert_eq!(plan(&d), Err(ElfError::NotX86_64));
        let mut d = image();
        d[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        assert_eq!(plan(&d), Err(ElfError::NeedsInterpreter));
        let mut d = image();
        d[64 + 56 + 32..64 + 56 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes()); // filesz past EOF
        assert_eq!(plan(&d), Err(ElfError::BadSegment));
        let mut d = image();
        d[64 + 16..64 + 24].copy_from_slice(&0xffff_8000_0000_0000u64.to_le_bytes()); // kernel half
        assert_eq!(plan(&d), Err(ElfError::BadSegment));
    }

    #[test]
    fn sums_near_the_top_are_refused_not_overflowed() {
        let mut d = image();
        d[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        d[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // entry + DYN_BASE wraps
        assert_eq!(plan(&d), Err(ElfError::BadEntry));
        let mut d = image();
        d[24..32].copy_from_slice(&TASK_SIZE.to_le_bytes());
        assert_eq!(plan(&d), Err(ElfError::BadEntry), "the entry must be below TASK_SIZE");
        let mut d = image();
        d[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        d[64..68].copy_from_slice(&PT_PHDR.to_le_bytes());
        d[64 + 16..64 + 24].copy_from_slice(&u64::MAX.to_le_bytes()); // PT_PHDR vaddr + bias wraps
        d[64 + 56 + 4..64 + 56 + 8].copy_from_slice(&7u32.to_le_bytes());
        d[24..32].copy_from_slice(&0x3000u64.to_le_bytes());
        assert_eq!(plan(&d).map(|p| p.phdr), Ok(DYN_BASE - 1));
        // A segment whose end is 2^47 (the page below it is not user space).
        let mut d = image();
        d[64 + 56 + 16..64 + 56 + 24].copy_from_slice(&(TASK_SIZE - 0x1000 + 0x10).to_le_bytes());
        assert_eq!(plan(&d), Err(ElfError::BadSegment));
        // A bss that wraps.
        let mut d = image();
        d[64 + 56 + 40..64 + 56 + 48].copy_from_slice(&(u64::MAX - 0x10).to_le_bytes());
        assert_eq!(plan(&d), Err(ElfError::BadSegment));
    }

    proptest::proptest! {
        /// A crafted file: any 64-bit word of the ELF or program headers replaced by a
        /// boundary value or a random one never panics the planner, and what it plans lies
        /// in user space.
        #[test]
        fn crafted_headers_never_panic(patches in proptest::collection::vec((0usize..22, proptest::prop_oneof![
            proptest::prelude::any::<u64>(),
            proptest::strategy::Just(u64::MAX),
            proptest::strategy::Just(TASK_SIZE),
            proptest::strategy::Just(TASK_SIZE - 0x1000),
            proptest::strategy::Just(1u64 << 63),
            0u64..0x3000,
        ]), 1..4)) {
            let mut d = image();
            for (slot, value) in patches {
                let at = if slot < 8 { slot * 8 } else { 64 + (slot - 8) * 8 };
                d[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            if let Ok(p) = plan(&d) {
                proptest::prop_assert!(p.entry < TASK_SIZE);
                for s in &p.segments {
                    proptest::prop_assert!(s.start < s.end && s.end <= TASK_SIZE);
                }
            }
        }
    }

    #[test]
    fn no_truncation_panics() {
        let d = image();
        for cut in 0..200 {
            let _ = plan(&d[..cut]);
        }
    }
}
