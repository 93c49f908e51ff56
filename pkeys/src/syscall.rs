//! `pkey_alloc(2)` and `pkey_free(2)`: Linux's argument checks, in Linux's order, over any lock
//! and any PKRU register.
//!
//! These are the very functions the kernel's syscall table calls (with its real address-space
//! lock and the live PKRU register); the host tests call them with a [`spin::RwLock`] and a
//! [`SavedPkru`](crate::pkru::SavedPkru). Linux: `SYSCALL_DEFINE2(pkey_alloc)` and
//! `SYSCALL_DEFINE1(pkey_free)` in `mm/mprotect.c`.

use crate::errno::Errno;
use crate::key::Pkey;
use crate::mm::{PkeyState, Support};
use crate::pkru::{AccessRights, PkruRegister};
use spin::rwlock::{RwLock, RwLockWriteGuard};

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
    pkru.update(|current| current.with_rights(key, rights));
    Ok(())
}

/// Takes the address space's write lock (Linux: `mmap_write_lock()`): the uncontended case
/// inline — one compare-and-swap — and the wait out of line, so that the calls' common path
/// keeps no registers for it.
#[inline(always)]
fn write_lock<M, R: spin::RelaxStrategy>(mm: &RwLock<M, R>) -> RwLockWriteGuard<'_, M, R> {
    match mm.try_write() {
        Some(guard) => guard,
        None => write_lock_contended(mm),
    }
}

#[cold]
#[inline(never)]
fn write_lock_contended<M, R: spin::RelaxStrategy>(mm: &RwLock<M, R>) -> RwLockWriteGuard<'_, M, R> {
    mm.write()
}

/// `pkey_alloc(flags, init_val)`: a new key for the address space, its rights set in the calling
/// thread's PKRU. Returns the key (1..15 normally; 0 only after the program freed key 0).
///
/// Order, as Linux: argument checks → `mmap_write_lock` → `mm_pkey_alloc` (`ENOSPC` when full
/// or without pkeys) → `arch_set_user_pkey_access` (on failure the key is given back).
#[inline]
pub fn pkey_alloc<M: AsMut<PkeyState>, R: spin::RelaxStrategy>(
    mm: &RwLock<M, R>,
    pkru: &mut impl PkruRegister,
    flags: u64,
    init_val: u64,
) -> Result<Pkey, Errno> {
    let rights = check_pkey_alloc_args(flags, init_val)?;
    let mut guard = write_lock(mm); // Linux: mmap_write_lock(current->mm)
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
#[inline]
pub fn pkey_free<M: AsMut<PkeyState>, R: spin::RelaxStrategy>(mm: &RwLock<M, R>, pkey: u64) -> Result<(), Errno> {
    let pkey = Pkey::syscall_int(pkey);
    let mut guard = write_lock(mm); // Linux: mmap_write_lock(current->mm)
    guard.as_mut().free(pkey)
}

/// `PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM`: the bits `mprotect` accepts
/// (`arch_validate_prot()`'s generic version).
pub const PROT_VALID: u64 = 0x1 | 0x2 | 0x4 | 0x8;
/// `PROT_GROWSDOWN` / `PROT_GROWSUP`.
pub const PROT_GROWSDOWN: u64 = 0x0100_0000;
pub const PROT_GROWSUP: u64 = 0x0200_0000;

/// What `mprotect`/`pkey_mprotect` asks for, once the argument checks have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MprotectRange {
    pub start: u64,
    /// `start + PAGE_ALIGN(len)`.
    pub end: u64,
    /// `prot` without the GROWS bits (and with `PROT_SEM`, which changes nothing).
    pub prot: u64,
    pub grows_down: bool,
    pub grows_up: bool,
}

/// The checks `do_mprotect_pkey()` makes before it takes any lock, in Linux's order
/// (reference §1.3, steps 2–6). `Ok(None)` is the `len == 0` early success: it comes before
/// any check of the key.
pub fn check_mprotect_args(start: u64, len: u64, prot: u64) -> Result<Option<MprotectRange>, Errno> {
    let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
    let prot = prot & !grows;
    if grows == PROT_GROWSDOWN | PROT_GROWSUP {
        return Err(Errno::EINVAL);
    }
    if start & 0xfff != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(None);
    }
    let aligned = len.wrapping_add(0xfff) & !0xfff;
    let end = start.wrapping_add(aligned);
    if end <= start {
        return Err(Errno::ENOMEM);
    }
    if prot & !PROT_VALID != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(MprotectRange { start, end, prot, grows_down: grows == PROT_GROWSDOWN, grows_up: grows == PROT_GROWSUP }))
}

#[cfg(test)]
mod mprotect_tests {
    use super::*;

    #[test]
    fn mprotect_checks_in_linux_order() {
        // Both GROWS bits beat everything else, even a misaligned start.
        assert_eq!(check_mprotect_args(1, 0, PROT_GROWSDOWN | PROT_GROWSUP), Err(Errno::EINVAL));
        assert_eq!(check_mprotect_args(0x1001, 0x1000, 1), Err(Errno::EINVAL));
        // len == 0 succeeds before prot is checked.
        assert_eq!(check_mprotect_args(0x1000, 0, 0xffff), Ok(None));
        // Wrap-around and a length whose page alignment wraps to 0.
        assert_eq!(check_mprotect_args(0xffff_ffff_ffff_f000, 0x2000, 1), Err(Errno::ENOMEM));
        assert_eq!(check_mprotect_args(0x1000, u64::MAX, 1), Err(Errno::ENOMEM));
        // Unknown prot bits come after the length checks.
        assert_eq!(check_mprotect_args(0x1000, 1, 0x10), Err(Errno::EINVAL));
        let r = check_mprotect_args(0x1000, 1, 0x8 | 0x1).unwrap().unwrap();
        assert_eq!((r.start, r.end, r.prot), (0x1000, 0x2000, 0x9));
        let r = check_mprotect_args(0x1000, 0x1000, PROT_GROWSDOWN | 3).unwrap().unwrap();
        assert!(r.grows_down && !r.grows_up && r.prot == 3);
    }
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
            let mm = spin::RwLock::new(PkeyState::init_new_context(support));
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
        let mm = spin::RwLock::new(PkeyState::init_new_context(Support::Enabled));
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
        let mm = spin::RwLock::new(PkeyState::init_new_context(Support::Enabled));
        let mut reg = SavedPkru(Pkru::INIT);
        assert_eq!(pkey_alloc(&mm, &mut reg, 0, 0).map(Pkey::index), Ok(1));
        assert_eq!(pkey_free(&mm, 0xffff_ffff_0000_0001), Ok(()));
        assert_eq!(pkey_free(&mm, 1), Err(Errno::EINVAL));
    }
}
