//! `pkey_alloc(330)` and `pkey_free(331)`.
//!
//! The rules live in [`pkeys::syscall`] (pure, host-tested); these handlers only supply the
//! current thread's address space — whose `RwLock` is Linux's `mmap_lock` — and the live PKRU
//! register. Linux: `SYSCALL_DEFINE2(pkey_alloc)`, `SYSCALL_DEFINE1(pkey_free)`
//! (`mm/mprotect.c`).

use pkeys::Errno;

use crate::arch::x86_64::pkru::CurrentPkru;
use crate::task;

/// `int pkey_alloc(unsigned long flags, unsigned long access_rights)`: the new key, whose
/// rights are written into the calling thread's PKRU only. (Inlined into its table entry, so
/// that the `Result` stays in registers.)
#[inline]
pub fn sys_pkey_alloc(flags: u64, access_rights: u64) -> Result<u64, Errno> {
    task::with_current(|me| pkeys::syscall::pkey_alloc(&me.mm, &mut CurrentPkru, flags, access_rights)).map(u64::from)
}

/// `int pkey_free(int pkey)`: 0, or `EINVAL`.
#[inline]
pub fn sys_pkey_free(pkey: u64) -> Result<u64, Errno> {
    task::with_current(|me| pkeys::syscall::pkey_free(&me.mm, pkey)).map(|()| 0)
}

#[cfg(test)]
mod tests {
    //! Through the syscall table ([`syscall::dispatch`]), on a fresh program each time — the path a
    //! user program's `syscall` instruction will take. Expected PKRU values are computed from the
    //! SDM's bit layout (Vol. 3A §2.7: AD = bit 2k, WD = bit 2k+1), not from the `pkeys` crate.
    use super::super::{decode, dispatch, nr};
    use crate::arch::x86_64::pkru;
    use crate::ktest::as_fresh_program;
    use ktest_macros::ktest;
    use pkeys::Errno::{self, EINVAL, ENOSPC};

    fn alloc(flags: u64, rights: u64) -> Result<u64, Errno> {
        decode(dispatch(nr::PKEY_ALLOC, [flags, rights, 0, 0, 0, 0]))
    }

    fn free(key: u64) -> Result<u64, Errno> {
        decode(dispatch(nr::PKEY_FREE, [key, 0, 0, 0, 0, 0]))
    }

    fn rdpkru() -> u32 {
        pkru::read().bits()
    }

    #[ktest(needs = pku)]
    fn fifteen_keys_in_order_then_enospc() {
        as_fresh_program(|_| {
            for expected in 1..=15 {
                assert_eq!(alloc(0, 0), Ok(expected));
            }
            assert_eq!(alloc(0, 0), Err(ENOSPC));
            assert_eq!(alloc(0, 0), Err(ENOSPC));
        });
    }

    #[ktest(needs = pku)]
    fn a_freed_middle_key_is_handed_out_next() {
        as_fresh_program(|_| {
            for _ in 0..6 {
                alloc(0, 0).unwrap();
            }
            assert_eq!(free(3), Ok(0));
            assert_eq!(alloc(0, 0), Ok(3));
            assert_eq!(alloc(0, 0), Ok(7));
        });
    }

    #[ktest(needs = pku)]
    fn bad_arguments_get_linuxs_errno() {
        as_fresh_program(|_| {
            // flags: all 64 bits count.
            assert_eq!(alloc(1, 0), Err(EINVAL));
            assert_eq!(alloc(1 << 63, 0), Err(EINVAL));
            assert_eq!(alloc(1 << 32, 0), Err(EINVAL));
            // rights beyond PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE.
            assert_eq!(alloc(0, 4), Err(EINVAL));
            assert_eq!(alloc(0, u64::MAX), Err(EINVAL));
            // Nothing was allocated by the failures.
            assert_eq!(alloc(0, 0), Ok(1));
            // pkey_free: negative, out of range, unallocated.
            assert_eq!(free(u64::MAX), Err(EINVAL)); // -1
            assert_eq!(free(0xffff_ffff), Err(EINVAL)); // -1 as a C int
            assert_eq!(free(16), Err(EINVAL));
            assert_eq!(free(1 << 31), Err(EINVAL)); // INT_MIN
            assert_eq!(free(5), Err(EINVAL));
            // A C int: the upper 32 bits are ignored, so this frees key 1 …
            assert_eq!(free(0xffff_ffff_0000_0001), Ok(0));
            // … and then it is gone.
            assert_eq!(free(1), Err(EINVAL));
            assert_eq!(alloc(0, 0), Ok(1));
            assert_eq!(free((1 << 32) + 1), Ok(0));
        });
    }

    #[ktest(needs = pku)]
    fn pkru_gets_exactly_the_requested_rights() {
        as_fresh_program(|_| {
            assert_eq!(rdpkru(), 0x5555_5554, "a new program starts with init_pkru_value");
            for rights in [0u64, 1, 2, 3, 2, 0, 1] {
                let before = rdpkru();
                let key = alloc(0, rights).unwrap() as u32;
                let after = rdpkru();
                let shift = 2 * key;
                assert_eq!((after >> shift) & 3, rights as u32, "key {key}: AD/WD bits");
                assert_eq!(after & !(3 << shift), before & !(3 << shift), "other keys untouched");
            }
        });
    }

    #[ktest(needs = pku)]
    fn pkey_free_leaves_pkru_alone() {
        as_fresh_program(|_| {
            let key = alloc(0, 0).unwrap();
            let before = rdpkru();
            assert_eq!(free(key), Ok(0));
            assert_eq!(rdpkru(), before);
        });
    }

    #[ktest(needs = pku)]
    fn key_0_can_be_freed_and_is_handed_out_again() {
        // Linux really does this (reference §1.2): nothing special-cases key 0.
        as_fresh_program(|_| {
            assert_eq!(free(0), Ok(0));
            assert_eq!(free(0), Err(EINVAL));
            assert_eq!(alloc(0, 0), Ok(0));
            assert_eq!(alloc(0, 0), Ok(1));
        });
    }

    #[ktest(needs = pku)]
    fn the_execute_only_key_is_reserved_and_invisible() {
        as_fresh_program(|thread| {
            let key = thread.mm.write().pkeys.execute_only_pkey_for(&mut pkru::CurrentPkru).unwrap();
            assert_eq!(key.index(), 1);
            assert_eq!((rdpkru() >> 2) & 1, 1, "AD set for the execute-only key");
            assert_eq!(free(1), Err(EINVAL), "it cannot be freed");
            let mut keys = 0;
            while alloc(0, 0).is_ok() {
                keys += 1;
            }
            assert_eq!(keys, 14, "14 keys left for the program");
        });
    }

    #[ktest(needs = no_pku)]
    fn without_pkeys_alloc_is_enospc_and_free_is_einval() {
        let (rd, wr) = (pkru::RDPKRU_DONE.here(), pkru::WRPKRU_DONE.here());
        as_fresh_program(|_| {
            for rights in 0..4 {
                assert_eq!(alloc(0, rights), Err(ENOSPC));
            }
            // Argument checks still come first.
            assert_eq!(alloc(1, 0), Err(EINVAL));
            assert_eq!(alloc(0, 4), Err(EINVAL));
            // Key 0 included: the map of a new mm is empty without pkeys (init_new_context).
            for key in [0, 1, 15, 16, u64::MAX] {
                assert_eq!(free(key), Err(EINVAL), "pkey_free({key})");
            }
        });
        // Had any RDPKRU/WRPKRU executed, it would have raised #UD (see the pkru tests) and
        // panicked; the counters confirm none was even attempted.
        assert_eq!(pkru::RDPKRU_DONE.here(), rd);
        assert_eq!(pkru::WRPKRU_DONE.here(), wr);
    }

    #[ktest]
    fn an_unknown_syscall_number_is_enosys() {
        as_fresh_program(|_| {
            assert_eq!(decode(dispatch(100_000, [0; 6])), Err(Errno::ENOSYS));
            assert_eq!(decode(dispatch(u64::MAX, [0; 6])), Err(Errno::ENOSYS));
        });
    }
}
