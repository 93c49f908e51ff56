//! `pkey_alloc(2)` and `pkey_free(2)`: Linux's argument checks, in Linux's order, over any lock
//! and any PKRU register.
//!
//! These are the very functions the kernel's syscall table calls (with its real address-space
//! lock and the live PKRU register); the host tests call them with a `spin::RwLock` and a
//! [`SavedPkru`](crate::pkru::SavedPkru). Linux: `SYSCALL_DEFINE2(pkey_alloc)` and
//! `SYSCALL_DEFINE1(pkey_free)` in `mm/mprotect.c`.

use crate::errno::Errno;
use crate::key::Pkey;
use crate::mm::{PkeyState, Support};
use crate::pkru::{AccessRights, PkruRegister};
use spin::RwLock;

/// `PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE`: the only bits `init_val` may have
/// (Linux: `PKEY_ACCESS_MASK`).
pub const PKEY_ACCESS_MASK: u64 = AccessRights::all().bits() as u64;

/// The checks `pkey_alloc` makes before it takes any lock.
///
/// 1. `flags` must be 0 — all 64 bits ("No flags supported yet") → else `EINVAL`;
/// 2. `init_val` may only hold `PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE` → else `EINVAL`.
pub fn check_pkey_alloc_args(flags: u64, init_val: u64) -> Result<AccessRights, Errno> {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    if init_val & !PKEY_ACCESS_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(AccessRights::from_bits_truncate(init_val as u32))
}

/// Gives `key` the rights `rights` in the calling thread's PKRU, leaving every other key alone.
/// Linux: `arch_set_user_pkey_access()` — `EINVAL` without OSPKE (its `tsk` argument is
/// ignored there too: it is always the current thread's register).
pub fn set_user_pkey_access(
    support: Support,
    pkru: &mut impl PkruRegister,
    key: Pkey,
    rights: AccessRights,
) -> Result<(), Errno> {
    if support == Support::Absent {
        return Err(Errno::EINVAL);
    }
    let current = pkru.read();
    pkru.write(current.with_rights(key, rights));
    Ok(())
}

/// `pkey_alloc(flags, init_val)`: a new key for the address space, its rights set in the calling
/// thread's PKRU. Returns the key (1..15 normally; 0 only after the program freed key 0).
///
/// Order, as Linux: argument checks → `mmap_write_lock` → `mm_pkey_alloc` (`ENOSPC` when full
/// or without pkeys) → `arch_set_user_pkey_access` (on failure the key is given back).
pub fn pkey_alloc<M: AsMut<PkeyState>>(
    mm: &RwLock<M>,
    pkru: &mut impl PkruRegister,
    flags: u64,
    init_val: u64,
) -> Result<Pkey, Errno> {
    let rights = check_pkey_alloc_args(flags, init_val)?;
    let mut guard = mm.write(); // Linux: mmap_write_lock(current->mm)
    let state = guard.as_mut();
    let key = state.alloc().ok_or(Errno::ENOSPC)?;
    if let Err(e) = set_user_pkey_access(state.support(), pkru, key, rights) {
        // Cannot happen today (alloc already refused without pkeys); mirrors Linux's unwinding.
        state.free(key.index() as i32).ok();
        return Err(e);
    }
    Ok(key)
}

/// `pkey_free(pkey)`: gives the key back. `pkey` is the raw register; its C type is `int`, so
/// only the low 32 bits count (as on Linux). `EINVAL` for a negative, out-of-range, unallocated
/// or execute-only key. PKRU is not touched, and memory keeps its key.
pub fn pkey_free<M: AsMut<PkeyState>>(mm: &RwLock<M>, pkey: u64) -> Result<(), Errno> {
    let pkey = Pkey::syscall_int(pkey);
    let mut guard = mm.write(); // Linux: mmap_write_lock(current->mm)
    guard.as_mut().free(pkey)
}

#[cfg(test)]
mod tests {
    //! The handlers against a tiny model that is obviously correct: a `[bool; 16]` of allocated
    //! keys and a `[u32; 16]` of per-key PKRU bits, written without any of the code above.
    use super::*;
    use crate::pkru::{Pkru, SavedPkru};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Call {
        Alloc { flags: u64, init_val: u64 },
        Free { raw: u64 },
    }

    fn raw_arg() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..20,
            Just(u64::MAX),
            Just(0xffff_ffff),
            Just(0xffff_ffff_0000_0001),
            Just(1 << 31),
            Just((1 << 32) + 1),
            any::<u64>(),
        ]
    }

    fn call() -> impl Strategy<Value = Call> {
        prop_oneof![
            3 => (prop_oneof![4 => Just(0u64), 1 => raw_arg()], prop_oneof![4 => 0u64..4, 1 => raw_arg()])
                .prop_map(|(flags, init_val)| Call::Alloc { flags, init_val }),
            2 => raw_arg().prop_map(|raw| Call::Free { raw }),
        ]
    }

    struct Model {
        pkeys: bool,
        allocated: [bool; 16],
        rights: [u32; 16],
    }

    impl Model {
        fn new(pkeys: bool, pkru: u32) -> Model {
            let mut allocated = [false; 16];
            allocated[0] = pkeys;
            let rights = core::array::from_fn(|k| (pkru >> (2 * k)) & 3);
            Model { pkeys, allocated, rights }
        }
        fn pkru(&self) -> u32 {
            (0..16).map(|k| self.rights[k] << (2 * k)).sum()
        }
        fn apply(&mut self, c: &Call) -> Result<u64, Errno> {
            match *c {
                Call::Alloc { flags, init_val } => {
                    if flags != 0 || init_val > 3 {
                        return Err(Errno::EINVAL);
                    }
                    if !self.pkeys {
                        return Err(Errno::ENOSPC);
                    }
                    let k = (0..16).find(|&k| !self.allocated[k]).ok_or(Errno::ENOSPC)?;
                    self.allocated[k] = true;
                    self.rights[k] = init_val as u32;
                    Ok(k as u64)
                }
                Call::Free { raw } => {
                    let k = raw as u32 as i32;
                    if self.pkeys && (0..16).contains(&k) && self.allocated[k as usize] {
                        self.allocated[k as usize] = false;
                        Ok(0)
                    } else {
                        Err(Errno::EINVAL)
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn handlers_agree_with_the_model(
            pkeys: bool,
            start_pkru: u32,
            calls in proptest::collection::vec(call(), 1..64),
        ) {
            let support = if pkeys { Support::Enabled } else { Support::Absent };
            let mm = RwLock::new(PkeyState::init_new_context(support));
            // Without OSPKE the register reads as 0 and never changes.
            let mut reg = SavedPkru(Pkru::from_bits(if pkeys { start_pkru } else { 0 }));
            let mut model = Model::new(pkeys, reg.0.bits());
            for c in &calls {
                let got = match c {
                    Call::Alloc { flags, init_val } => pkey_alloc(&mm, &mut reg, *flags, *init_val).map(u64::from),
                    Call::Free { raw } => pkey_free(&mm, *raw).map(|()| 0),
                };
                prop_assert_eq!(got, model.apply(c), "call {:?}", c);
                prop_assert_eq!(reg.0.bits(), model.pkru(), "PKRU after {:?}", c);
                let map: u16 = (0..16).filter(|&k| model.allocated[k]).map(|k| 1u16 << k).sum();
                prop_assert_eq!(mm.read().allocation_map(), map);
            }
        }
    }

    #[test]
    fn check_order_flags_before_rights_before_space() {
        let mm = RwLock::new(PkeyState::init_new_context(Support::Enabled));
        while mm.write().alloc().is_some() {}
        let mut reg = SavedPkru(Pkru::INIT);
        // Full map, yet bad flags/rights win: the checks come before the lock.
        assert_eq!(pkey_alloc(&mm, &mut reg, 1, 0), Err(Errno::EINVAL));
        assert_eq!(pkey_alloc(&mm, &mut reg, 0, 4), Err(Errno::EINVAL));
        assert_eq!(pkey_alloc(&mm, &mut reg, 1 << 63, 0), Err(Errno::EINVAL));
        assert_eq!(pkey_alloc(&mm, &mut reg, 0, 3), Err(Errno::ENOSPC));
        assert_eq!(reg.0, Pkru::INIT);
    }

    #[test]
    fn free_truncates_to_c_int() {
        let mm = RwLock::new(PkeyState::init_new_context(Support::Enabled));
        let mut reg = SavedPkru(Pkru::INIT);
        assert_eq!(pkey_alloc(&mm, &mut reg, 0, 0).map(Pkey::index), Ok(1));
        assert_eq!(pkey_free(&mm, 0xffff_ffff_0000_0001), Ok(()));
        assert_eq!(pkey_free(&mm, 1), Err(Errno::EINVAL));
    }
}
