//! The protection key number.
//!
//! x86 page-table entries have four key bits (59–62), so there are 16 keys, 0..=15
//! (Intel SDM Vol. 3A §4.6.2). [`Pkey`] can only hold those values: every place that turns a
//! user's number into a key goes through [`Pkey::new`] or [`Pkey::from_int`] (after
//! [`Pkey::syscall_int`] has read the register as Linux's `int`), so an
//! out-of-range key cannot reach the page tables or PKRU.

/// Number of protection keys the architecture defines (Linux: `arch_max_pkey()` with OSPKE).
pub const NR_PKEYS: u8 = 16;

/// A protection key, 0..=15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pkey(u8);

impl Pkey {
    /// Key 0: the key every page has unless it is given another (Linux: `ARCH_DEFAULT_PKEY`).
    pub const DEFAULT: Pkey = Pkey(0);

    /// `Some(key)` when `n < 16`.
    pub const fn new(n: u32) -> Option<Pkey> {
        if n < NR_PKEYS as u32 {
            Some(Pkey(n as u8))
        } else {
            None
        }
    }

    /// Reads a key from a raw syscall register whose C type is `int`.
    ///
    /// Linux's `SYSCALL_DEFINE` wrappers truncate the 64-bit register to its low 32 bits and
    /// read them as signed, so `0xffff_ffff_0000_0001` means key 1 and `0xffff_ffff` means -1.
    /// Returns that `int` so callers can apply Linux's own range checks in Linux's order.
    pub const fn syscall_int(raw: u64) -> i32 {
        raw as u32 as i32
    }

    /// `Some(key)` when the C `int` is in 0..=15.
    pub const fn from_int(n: i32) -> Option<Pkey> {
        if n < 0 {
            None
        } else {
            Pkey::new(n as u32)
        }
    }

    /// The key's number.
    pub const fn index(self) -> u8 {
        self.0
    }

    /// All 16 keys, 0 first.
    pub fn all() -> impl Iterator<Item = Pkey> {
        (0..NR_PKEYS).map(Pkey)
    }
}

impl From<Pkey> for u64 {
    fn from(k: Pkey) -> u64 {
        k.0 as u64
    }
}

impl core::fmt::Display for Pkey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_0_to_15_are_keys() {
        assert_eq!(Pkey::new(15).map(Pkey::index), Some(15));
        assert_eq!(Pkey::new(16), None);
        assert_eq!(Pkey::from_int(-1), None);
        assert_eq!(Pkey::all().count(), 16);
    }

    #[test]
    fn syscall_int_truncates_like_linux() {
        assert_eq!(Pkey::syscall_int(0xffff_ffff_0000_0001), 1);
        assert_eq!(Pkey::syscall_int(0xffff_ffff), -1);
        assert_eq!(Pkey::syscall_int(1 << 31), i32::MIN);
        assert_eq!(Pkey::syscall_int((1 << 32) + 1), 1);
    }
}
