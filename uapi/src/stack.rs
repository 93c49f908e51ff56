//! The initial process stack, as Linux builds it (`create_elf_tables()` in `fs/binfmt_elf.c`).
//!
//! At the first user instruction, `rsp` points at `argc`, and above it (x86-64 psABI §3.4.1):
//!
//! ```text
//!   rsp →  argc
//!          argv[0] … argv[argc-1], NULL
//!          envp[0] … envp[n-1], NULL
//!          auxv: (type, value) pairs …, (AT_NULL, 0)
//!          padding
//!          16 random bytes (AT_RANDOM points here), "x86_64\0" (AT_PLATFORM)
//!          the argument and environment strings
//!   top →  (end of the stack area)
//! ```
//!
//! `rsp` is 16-byte aligned. [`build`] returns the bytes of that region and the `rsp` value,
//! given where the stack ends; the kernel copies the bytes into the new address space.

use alloc::vec::Vec;

/// Auxiliary-vector types (`include/uapi/linux/auxvec.h`).
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
}

/// What goes on the stack besides argv and envp.
#[derive(Debug, Clone)]
pub struct StackInfo<'a> {
    pub argv: &'a [&'a [u8]],
    pub envp: &'a [&'a [u8]],
    /// Auxiliary entries other than AT_RANDOM, AT_PLATFORM, AT_EXECFN and AT_NULL, which
    /// [`build`] adds itself.
    pub auxv: &'a [(u64, u64)],
    pub random: [u8; 16],
}

/// The stack contents for `[rsp, top)` and the initial `rsp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialStack {
    pub rsp: u64,
    pub bytes: Vec<u8>,
}

const PLATFORM: &[u8] = b"x86_64\0";

/// Lays out the initial stack ending at `top` (exclusive; 16-byte aligned).
pub fn build(top: u64, info: &StackInfo) -> InitialStack {
    // Strings from the top down: argv and envp strings, then platform, then random bytes.
    let mut cursor = top;
    let mut place = |len: u64| {
        cursor -= len;
        cursor
    };
    let argv_ptrs: Vec<u64> = info.argv.iter().map(|s| place(s.len() as u64 + 1)).collect();
    let envp_ptrs: Vec<u64> = info.envp.iter().map(|s| place(s.len() as u64 + 1)).collect();
    let execfn = argv_ptrs.first().copied().unwrap_or(0);
    let platform = place(PLATFORM.len() as u64);
    let random = place(16);
    let strings_start = cursor & !15;

    let mut auxv: Vec<(u64, u64)> = info.auxv.to_vec();
    auxv.push((at::RANDOM, random));
    auxv.push((at::PLATFORM, platform));
    auxv.push((at::EXECFN, execfn));
    auxv.push((at::NULL, 0));

    let words = 1 + (argv_ptrs.len() + 1) + (envp_ptrs.len() + 1) + 2 * auxv.len();
    let rsp = (strings_start - 8 * words as u64) & !15;

    let mut bytes = alloc::vec![0u8; (top - rsp) as usize];
    let mut put = |addr: u64, data: &[u8]| {
        let at = (addr - rsp) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    };
    for (ptr, s) in argv_ptrs.iter().zip(info.argv).chain(envp_ptrs.iter().zip(info.envp)) {
        put(*ptr, s); // the NUL is already there (zeroed)
    }
    put(platform, PLATFORM);
    put(random, &info.random);

    let mut word_addr = rsp;
    let mut push = |v: u64| {
        put(word_addr, &v.to_le_bytes());
        word_addr += 8;
    };
    push(info.argv.len() as u64);
    argv_ptrs.iter().for_each(|&p| push(p));
    push(0);
    envp_ptrs.iter().for_each(|&p| push(p));
    push(0);
    for (k, v) in auxv {
        push(k);
        push(v);
    }
    InitialStack { rsp, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &InitialStack, addr: u64) -> u64 {
        let at = (addr - s.rsp) as usize;
        u64::from_le_bytes(s.bytes[at..at + 8].try_into().unwrap())
    }

    fn cstr(s: &InitialStack, addr: u64) -> Vec<u8> {
        let at = (addr - s.rsp) as usize;
        s.bytes[at..].iter().take_while(|&&b| b != 0).copied().collect()
    }

    #[test]
    fn argc_argv_envp_auxv_as_the_abi_says() {
        let top = 0x7fff_ffff_f000;
        let info = StackInfo {
            argv: &[b"/init", b"hello world"],
            envp: &[b"HOME=/"],
            auxv: &[(at::PAGESZ, 4096), (at::ENTRY, 0x401000)],
            random: [7; 16],
        };
        let s = build(top, &info);
        assert_eq!(s.rsp % 16, 0);
        assert_eq!(s.rsp + s.bytes.len() as u64, top);
        assert_eq!(word(&s, s.rsp), 2, "argc");
        assert_eq!(cstr(&s, word(&s, s.rsp + 8)), b"/init");
        assert_eq!(cstr(&s, word(&s, s.rsp + 16)), b"hello world");
        assert_eq!(word(&s, s.rsp + 24), 0, "argv NULL");
        assert_eq!(cstr(&s, word(&s, s.rsp + 32)), b"HOME=/");
        assert_eq!(word(&s, s.rsp + 40), 0, "envp NULL");
        // Auxiliary vector.
        let mut a = s.rsp + 48;
        let mut aux = Vec::new();
        loop {
            let (k, v) = (word(&s, a), word(&s, a + 8));
            aux.push((k, v));
            a += 16;
            if k == at::NULL {
                break;
            }
        }
        assert_eq!(aux[0], (at::PAGESZ, 4096));
        let random = aux.iter().find(|(k, _)| *k == at::RANDOM).unwrap().1;
        assert_eq!(&s.bytes[(random - s.rsp) as usize..][..16], &[7; 16]);
        let platform = aux.iter().find(|(k, _)| *k == at::PLATFORM).unwrap().1;
        assert_eq!(cstr(&s, platform), b"x86_64");
        assert_eq!(aux.last(), Some(&(at::NULL, 0)));
    }

    #[test]
    fn rsp_is_aligned_for_any_string_lengths() {
        for n in 0..40usize {
            let arg = alloc::vec![b'a'; n];
            let argv: [&[u8]; 1] = [&arg];
            let s = build(0x10_0000, &StackInfo { argv: &argv, envp: &[], auxv: &[], random: [0; 16] });
            assert_eq!(s.rsp % 16, 0, "n = {n}");
        }
    }
}
