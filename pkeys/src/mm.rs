//! The per-address-space protection-key state: the allocation map and the execute-only key.
//!
//! Linux keeps these two fields in `mm->context` (`arch/x86/include/asm/mmu.h`):
//! `u16 pkey_allocation_map` — one bit per key, set when the key belongs to the program — and
//! `s16 execute_only_pkey`, the key lazily taken for `mprotect(PROT_EXEC)` memory. Both are
//! "protected by mmap_lock": every function here that changes them takes `&mut self`, and the
//! kernel keeps each address space behind a [`spin::RwLock`], so the only way to get `&mut` is the
//! write lock (Linux's `mmap_write_lock`). Threads share one address space and so one map;
//! PKRU, by contrast, is per thread.

use crate::errno::Errno;
use crate::key::{Pkey, NR_PKEYS};
use crate::pkru::{AccessRights, PkruRegister};

/// Does this system have usable protection keys?
///
/// Linux asks `cpu_feature_enabled(X86_FEATURE_OSPKE)`: the CPU has PKU *and* the kernel set
/// CR4.PKE. The kernel decides this once at boot and stamps it into every address space it
/// creates, so the pure logic needs no global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// PKU present and CR4.PKE set: 16 keys.
    Enabled,
    /// No PKU (e.g. QEMU `-cpu qemu64`): only the notion of key 0 exists.
    Absent,
}

impl Support {
    /// Linux: `arch_max_pkey()` — 16 with OSPKE, 1 without.
    pub const fn max_pkey(self) -> u32 {
        match self {
            Support::Enabled => NR_PKEYS as u32,
            Support::Absent => 1,
        }
    }
}

/// Linux: `mm->context.pkey_allocation_map` and `mm->context.execute_only_pkey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkeyState {
    support: Support,
    allocation_map: u16,
    execute_only: Option<Pkey>,
}

impl PkeyState {
    /// The state of a brand-new address space (at exec). Linux: `init_new_context()`.
    ///
    /// With pkeys, key 0 — the default key of all memory — is allocated implicitly: map `0x1`.
    /// Without pkeys Linux never runs that code and the map stays `0`, which is why on such a
    /// CPU even `pkey_free(0)` and `pkey_mprotect(…, 0)` fail with `EINVAL`.
    pub const fn init_new_context(support: Support) -> PkeyState {
        let allocation_map = match support {
            Support::Enabled => 0x1,
            Support::Absent => 0x0,
        };
        PkeyState { support, allocation_map, execute_only: None }
    }

    /// The child's copy at fork. Linux: `arch_dup_pkeys()` — the map and the execute-only key
    /// are copied exactly.
    pub fn dup(&self) -> PkeyState {
        self.clone()
    }

    /// Whether this address space lives on a system with pkeys.
    pub const fn support(&self) -> Support {
        self.support
    }

    /// The raw 16-bit map (bit `k` set = key `k` allocated).
    pub const fn allocation_map(&self) -> u16 {
        self.allocation_map
    }

    /// The execute-only key, once one has been taken (Linux's `-1` is `None`).
    pub const fn execute_only_pkey(&self) -> Option<Pkey> {
        self.execute_only
    }

    /// `Some(key)` if `pkey` names a key this program may use. Linux: `mm_pkey_is_allocated()`:
    /// false for a negative key, for a key ≥ `arch_max_pkey()`, for the execute-only key (so it
    /// can be neither freed nor passed to `pkey_mprotect`), and for a clear bit.
    ///
    /// `arch_max_pkey()` needs no test of its own here: with pkeys it is 16, which
    /// [`Pkey::from_int`] enforces; without, it is 1 — and then the map is empty for good
    /// ([`Self::init_new_context`] leaves it 0, [`Self::alloc`] and the execute-only key never
    /// set a bit), so key 0 fails at its clear bit, as every other key does. Same answers, one
    /// test fewer on every `pkey_free` and `pkey_mprotect`.
    #[inline]
    pub fn allocated(&self, pkey: i32) -> Option<Pkey> {
        let key = Pkey::from_int(pkey)?;
        if self.execute_only == Some(key) {
            return None;
        }
        (self.allocation_map & (1 << key.index()) != 0).then_some(key)
    }

    /// Linux: `mm_pkey_is_allocated()` as a yes/no.
    pub fn is_allocated(&self, pkey: i32) -> bool {
        self.allocated(pkey).is_some()
    }

    /// Takes the lowest free key. Linux: `mm_pkey_alloc()` (`ffz` of the map).
    ///
    /// `None` when pkeys are absent or all 16 bits are set. With key 0 allocated implicitly a
    /// program gets at most 15 keys, 14 once the execute-only key has been taken.
    #[inline]
    pub fn alloc(&mut self) -> Option<Pkey> {
        if self.support == Support::Absent {
            return None;
        }
        let all = ((1u32 << self.support.max_pkey()) - 1) as u16;
        if self.allocation_map == all {
            return None;
        }
        let key = Pkey::new(self.allocation_map.trailing_ones())?;
        self.allocation_map |= 1 << key.index();
        Some(key)
    }

    /// Releases `pkey`. Linux: `mm_pkey_free()` — `EINVAL` unless [`Self::is_allocated`].
    ///
    /// Nothing checks whether memory still carries the key: pages keep it, and a later
    /// `pkey_alloc` that hands the key out again also hands out that memory's protection.
    #[inline]
    pub fn free(&mut self, pkey: i32) -> Result<(), Errno> {
        let key = self.allocated(pkey).ok_or(Errno::EINVAL)?;
        self.allocation_map &= !(1 << key.index());
        Ok(())
    }

    /// The key for execute-only memory, allocated on first use; sets AD for it in the calling
    /// thread's PKRU. Linux: `execute_only_pkey()` → `__execute_only_pkey()`.
    ///
    /// * Without pkeys: `None` (the caller uses key 0, and the memory stays readable).
    /// * If no key is free: `None`, and nothing changes.
    /// * If the key exists and this thread's PKRU already denies reads of it: returned as is.
    /// * Otherwise AD is (re)set in the calling thread's PKRU — other threads rely on
    ///   [`crate::Pkru::INIT`] already denying keys 1..15.
    pub fn execute_only_pkey_for(&mut self, pkru: &mut impl PkruRegister) -> Option<Pkey> {
        if self.support == Support::Absent {
            return None;
        }
        let (key, newly_allocated) = match self.execute_only {
            Some(key) => (key, false),
            None => (self.alloc()?, true),
        };
        if !newly_allocated && !pkru.read().allows_read(key) {
            return Some(key);
        }
        let current = pkru.read();
        pkru.write(current.with_rights(key, AccessRights::DISABLE_ACCESS));
        self.execute_only = Some(key);
        Some(key)
    }
}

impl AsRef<PkeyState> for PkeyState {
    fn as_ref(&self) -> &PkeyState {
        self
    }
}

impl AsMut<PkeyState> for PkeyState {
    fn as_mut(&mut self) -> &mut PkeyState {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkru::{Pkru, SavedPkru};

    #[test]
    fn fresh_state_matches_init_new_context() {
        let s = PkeyState::init_new_context(Support::Enabled);
        assert_eq!(s.allocation_map(), 0x1);
        assert_eq!(s.execute_only_pkey(), None);
        assert!(s.is_allocated(0));
        let s = PkeyState::init_new_context(Support::Absent);
        assert_eq!(s.allocation_map(), 0x0);
        assert!(!s.is_allocated(0));
    }

    #[test]
    fn hands_out_1_to_15_then_none() {
        let mut s = PkeyState::init_new_context(Support::Enabled);
        let keys: Vec<u8> = core::iter::from_fn(|| s.alloc()).map(Pkey::index).collect();
        assert_eq!(keys, (1..16).collect::<Vec<u8>>());
        assert_eq!(s.allocation_map(), 0xffff);
    }

    #[test]
    fn free_then_alloc_returns_the_freed_key_and_key_0_is_not_special() {
        let mut s = PkeyState::init_new_context(Support::Enabled);
        for _ in 0..5 {
            s.alloc();
        }
        s.free(3).unwrap();
        assert_eq!(s.alloc().map(Pkey::index), Some(3));
        // Linux really lets a program free key 0, and then hands it out again.
        s.free(0).unwrap();
        assert_eq!(s.free(0), Err(Errno::EINVAL));
        assert_eq!(s.alloc().map(Pkey::index), Some(0));
    }

    #[test]
    fn out_of_range_and_negative_keys_are_never_allocated() {
        let s = PkeyState::init_new_context(Support::Enabled);
        for k in [-1, 16, 115, i32::MIN, i32::MAX] {
            assert!(!s.is_allocated(k), "{k}");
        }
    }

    #[test]
    fn execute_only_key_is_lazy_reserved_and_invisible() {
        let mut s = PkeyState::init_new_context(Support::Enabled);
        let mut pkru = SavedPkru(Pkru::ALL_OPEN);
        let key = s.execute_only_pkey_for(&mut pkru).unwrap();
        assert_eq!(key.index(), 1);
        assert!(!pkru.0.allows_read(key));
        // Invisible: cannot be freed, is not "allocated" to the program, is not handed out.
        assert_eq!(s.free(1), Err(Errno::EINVAL));
        assert!(!s.is_allocated(1));
        assert_eq!(core::iter::from_fn(|| s.alloc()).count(), 14);
        // A second call returns the same key; it re-sets AD only if the thread opened it.
        pkru.0 = Pkru::ALL_OPEN;
        assert_eq!(s.execute_only_pkey_for(&mut pkru), Some(key));
        assert!(!pkru.0.allows_read(key));
    }

    #[test]
    fn execute_only_key_needs_a_free_key() {
        let mut s = PkeyState::init_new_context(Support::Enabled);
        while s.alloc().is_some() {}
        let mut pkru = SavedPkru(Pkru::INIT);
        assert_eq!(s.execute_only_pkey_for(&mut pkru), None);
        assert_eq!(pkru.0, Pkru::INIT);
        let mut s = PkeyState::init_new_context(Support::Absent);
        assert_eq!(s.execute_only_pkey_for(&mut pkru), None);
    }

    #[test]
    fn dup_copies_map_and_execute_only_key() {
        let mut s = PkeyState::init_new_context(Support::Enabled);
        s.alloc();
        s.execute_only_pkey_for(&mut SavedPkru(Pkru::INIT));
        let child = s.dup();
        assert_eq!(child.allocation_map(), 0b111);
        assert_eq!(child.execute_only_pkey(), s.execute_only_pkey());
    }
}
