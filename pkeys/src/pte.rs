//! The protection key inside a page-table entry.
//!
//! With CR4.PKE = 1, bits 59–62 of a paging-structure entry that maps a page (a 4-KiB PTE, or a
//! 2-MiB/1-GiB leaf) hold the page's protection key (Intel SDM Vol. 3A §4.6.2 "Protection Keys";
//! Table 4-19 "Format of an IA-32e Page-Table Entry that Maps a 4-KByte Page", Table 4-17 "…
//! Page-Directory Entry that Maps a 2-MByte Page", Table 4-15 "… Page-Directory-Pointer-Table Entry
//! (PDPTE) that Maps a 1-GByte Page"). Without CR4.PKE the same bits are "ignored" — available to
//! software — which is why a kernel that enables PKE must never use them for its own bookkeeping.
//! Linux names them `_PAGE_BIT_PKEY_BIT0..3` (`arch/x86/include/asm/pgtable_types.h`). Bit 63 next
//! to them is NX.
//!
//! These functions work on the raw 64-bit entry so that they are testable anywhere; the kernel's
//! page-table code applies them to `x86_64` crate entries.

use crate::key::Pkey;

/// The lowest key bit (Linux: `_PAGE_BIT_PKEY_BIT0`).
pub const PKEY_SHIFT: u32 = 59;
/// The four key bits (Linux: `_PAGE_PKEY_MASK`).
pub const PKEY_MASK: u64 = 0xf << PKEY_SHIFT;

/// The key of an entry (Linux: `pte_flags_pkey`).
pub const fn pkey_of(entry: u64) -> Pkey {
    match Pkey::new(((entry & PKEY_MASK) >> PKEY_SHIFT) as u32) {
        Some(k) => k,
        // Four bits cannot exceed 15.
        None => unreachable!(),
    }
}

/// The entry with its key bits replaced by `key`; every other bit unchanged.
pub const fn with_pkey(entry: u64, key: Pkey) -> u64 {
    (entry & !PKEY_MASK) | ((key.index() as u64) << PKEY_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_bits_are_59_to_62_and_nothing_else(entry: u64, k in 0u32..16) {
            let key = Pkey::new(k).unwrap();
            let e = with_pkey(entry, key);
            prop_assert_eq!(pkey_of(e), key);
            prop_assert_eq!(e & !PKEY_MASK, entry & !PKEY_MASK);
            prop_assert_eq!(e >> 59 & 0xf, k as u64);
            // NX (bit 63) survives.
            prop_assert_eq!(e >> 63, entry >> 63);
        }
    }
}
