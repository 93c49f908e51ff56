//! PKRU — the protection-key rights register — as a type.
//!
//! PKRU is a 32-bit per-thread register (Intel SDM Vol. 3A §2.7 "Protection Key Rights Register
//! (PKRU)" and §4.6.2 "Protection Keys"; saved as XSAVE state component 9, Vol. 1 §13.5.7 "PKRU
//! State"). It holds two bits for each of the 16 keys:
//!
//! ```text
//!  bit:  31 30 29 28 ...  5  4  3  2  1  0
//!        WD AD WD AD ... WD AD WD AD WD AD
//!        key 15   key 14   key 2  key 1 key 0
//! ```
//!
//! * **AD** (access-disable, bit `2k`): user-mode data reads *and* writes of pages with key `k`
//!   fault.
//! * **WD** (write-disable, bit `2k+1`): writes fault; reads are allowed. For supervisor-mode
//!   writes to user pages WD applies only while CR0.WP = 1.
//!
//! The rights a program asks for in `pkey_alloc(flags, init_val)` use the same encoding
//! (`PKEY_DISABLE_ACCESS` = 1 = AD, `PKEY_DISABLE_WRITE` = 2 = WD), which is why
//! [`AccessRights`] serves both. RDPKRU/WRPKRU read and write the register from any ring; the
//! kernel reaches them through [`PkruRegister`], implemented by its architecture layer.

use crate::key::Pkey;

bitflags::bitflags! {
    /// One key's rights as PKRU encodes them (and as `pkey_alloc`'s `init_val` spells them).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct AccessRights: u32 {
        /// AD: no data access at all (Linux: `PKEY_DISABLE_ACCESS`, `PKRU_AD_BIT`).
        const DISABLE_ACCESS = 0x1;
        /// WD: no data writes (Linux: `PKEY_DISABLE_WRITE`, `PKRU_WD_BIT`).
        const DISABLE_WRITE = 0x2;
    }
}

/// Bits per key in PKRU (Linux: `PKRU_BITS_PER_PKEY`).
pub const BITS_PER_PKEY: u32 = 2;

/// A value of the PKRU register.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pkru(u32);

impl Pkru {
    /// The value a new program starts with: **0x55555554**.
    ///
    /// `0x5` is `0b0101`: AD set, WD clear, for two keys at a time. Every key from 1 to 15 has
    /// AD set and key 0 has no bits: memory with the default key 0 is fully usable, memory with
    /// any other key is closed until the program opens it (by `pkey_alloc`'s `init_val` or by
    /// WRPKRU). Linux: `init_pkru_value` in `arch/x86/mm/pkeys.c`, "as restrictive as possible".
    pub const INIT: Pkru = Pkru(0x5555_5554);

    /// All keys fully open (the hardware's reset value, and what Linux writes while it builds a
    /// signal frame).
    pub const ALL_OPEN: Pkru = Pkru(0);

    /// Wraps a raw register value. Every `u32` is a valid PKRU.
    pub const fn from_bits(bits: u32) -> Pkru {
        Pkru(bits)
    }

    /// The raw register value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    const fn shift(key: Pkey) -> u32 {
        key.index() as u32 * BITS_PER_PKEY
    }

    /// The rights this PKRU gives `key`.
    pub const fn rights(self, key: Pkey) -> AccessRights {
        AccessRights::from_bits_truncate((self.0 >> Self::shift(key)) & 0b11)
    }

    /// This PKRU with `key`'s two bits replaced by `rights`; every other key's bits unchanged.
    /// Linux: the bit arithmetic of `arch_set_user_pkey_access()`.
    pub const fn with_rights(self, key: Pkey, rights: AccessRights) -> Pkru {
        let shift = Self::shift(key);
        Pkru((self.0 & !(0b11 << shift)) | (rights.bits() << shift))
    }

    /// May user code read data from pages with `key`? (Linux: `__pkru_allows_read`.)
    pub const fn allows_read(self, key: Pkey) -> bool {
        !self.rights(key).contains(AccessRights::DISABLE_ACCESS)
    }

    /// May user code write data to pages with `key`? AD implies no writes either.
    /// (Linux: `__pkru_allows_write`.)
    pub const fn allows_write(self, key: Pkey) -> bool {
        self.rights(key).is_empty()
    }

    /// A per-key rendering for people: `0:rw 1:-- 2:r- …` (`--` = AD, `r-` = WD only).
    pub fn decode(self) -> Decoded {
        Decoded(self)
    }
}

impl core::fmt::Debug for Pkru {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pkru({:#010x}: {})", self.0, self.decode())
    }
}

impl core::fmt::LowerHex for Pkru {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// See [`Pkru::decode`].
pub struct Decoded(Pkru);

impl core::fmt::Display for Decoded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for key in Pkey::all() {
            let r = self.0.rights(key);
            let text = if r.contains(AccessRights::DISABLE_ACCESS) {
                "--"
            } else if r.contains(AccessRights::DISABLE_WRITE) {
                "r-"
            } else {
                "rw"
            };
            if key.index() > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}:{}", key.index(), text)?;
        }
        Ok(())
    }
}

/// The calling thread's PKRU, as the kernel reaches it.
///
/// While a thread runs, the hardware register *is* its PKRU (Linux keeps `thread.pkru` valid
/// only while a task is switched out). Implementations follow Linux's `read_pkru()` /
/// `write_pkru()`: without OSPKE, `read` returns 0 and `write` does nothing, so no RDPKRU or
/// WRPKRU ever executes on a CPU where they would raise #UD.
pub trait PkruRegister {
    /// The current value (0 without OSPKE).
    fn read(&self) -> Pkru;
    /// Sets the register (no-op without OSPKE; skipped when the value is unchanged).
    fn write(&mut self, value: Pkru);
    /// Replaces the value with `f(value)`: one read, and a write only if the value changes.
    /// (A register can do this with one RDPKRU where `read` then `write` would take two.)
    fn update(&mut self, f: impl FnOnce(Pkru) -> Pkru) {
        let old = self.read();
        let new = f(old);
        if new != old {
            self.write(new);
        }
    }
}

/// A PKRU held in memory: the register of a thread that is not running, and the stand-in
/// register for host tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedPkru(pub Pkru);

impl PkruRegister for SavedPkru {
    fn read(&self) -> Pkru {
        self.0
    }
    fn write(&mut self, value: Pkru) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u32) -> Pkey {
        Pkey::new(n).unwrap()
    }

    #[test]
    fn init_value_opens_only_key_0() {
        assert_eq!(Pkru::INIT.bits(), 0x5555_5554);
        assert!(Pkru::INIT.allows_write(key(0)));
        for k in 1..16 {
            assert_eq!(Pkru::INIT.rights(key(k)), AccessRights::DISABLE_ACCESS, "key {k}");
        }
        assert_eq!(
            Pkru::INIT.decode().to_string(),
            "0:rw 1:-- 2:-- 3:-- 4:-- 5:-- 6:-- 7:-- 8:-- 9:-- 10:-- 11:-- 12:-- 13:-- 14:-- 15:--"
        );
    }

    #[test]
    fn wd_allows_reads_ad_blocks_both() {
        let p = Pkru::ALL_OPEN.with_rights(key(3), AccessRights::DISABLE_WRITE);
        assert_eq!(p.bits(), 0b10 << 6);
        assert!(p.allows_read(key(3)) && !p.allows_write(key(3)));
        let p = p.with_rights(key(3), AccessRights::DISABLE_ACCESS);
        assert_eq!(p.bits(), 0b01 << 6);
        assert!(!p.allows_read(key(3)) && !p.allows_write(key(3)));
    }

    proptest! {
        /// Changing one key's rights leaves the other 30 bits alone and reads back.
        #[test]
        fn with_rights_touches_only_that_key(bits: u32, k in 0u32..16, r in 0u32..4) {
            let before = Pkru::from_bits(bits);
            let rights = AccessRights::from_bits_truncate(r);
            let after = before.with_rights(key(k), rights);
            prop_assert_eq!(after.rights(key(k)), rights);
            let mask = 0b11u32 << (2 * k);
            prop_assert_eq!(after.bits() & !mask, bits & !mask);
            // The bit positions follow the SDM (Vol. 3A §2.7): AD = bit 2k, WD = bit 2k+1.
            prop_assert_eq!((after.bits() >> (2 * k)) & 1 == 1, rights.contains(AccessRights::DISABLE_ACCESS));
            prop_assert_eq!((after.bits() >> (2 * k + 1)) & 1 == 1, rights.contains(AccessRights::DISABLE_WRITE));
        }
    }
}
