//! `pkey_alloc(330)` and `pkey_free(331)`.
//!
//! The rules live in `pkeys::syscall` (pure, host-tested); these handlers only supply the
//! current thread's address space — whose `RwLock` is Linux's `mmap_lock` — and the live PKRU
//! register. Linux: `SYSCALL_DEFINE2(pkey_alloc)`, `SYSCALL_DEFINE1(pkey_free)`
//! (`mm/mprotect.c`).

use pkeys::Errno;

use crate::arch::x86_64::pkru::CurrentPkru;
use crate::task;

/// `int pkey_alloc(unsigned long flags, unsigned long access_rights)`: the new key, whose
/// rights are written into the calling thread's PKRU only.
pub fn sys_pkey_alloc(flags: u64, access_rights: u64) -> Result<u64, Errno> {
    let thread = task::current();
    pkeys::syscall::pkey_alloc(&thread.mm, &mut CurrentPkru, flags, access_rights).map(u64::from)
}

/// `int pkey_free(int pkey)`: 0, or `EINVAL`.
pub fn sys_pkey_free(pkey: u64) -> Result<u64, Errno> {
    let thread = task::current();
    pkeys::syscall::pkey_free(&thread.mm, pkey).map(|()| 0)
}
