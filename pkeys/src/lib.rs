//! # pkeys — memory protection keys as pure logic
//!
//! Everything about x86 protection keys that does not touch hardware lives here, so that it
//! compiles and is tested on the host as well as in the kernel. The kernel supplies the two
//! hardware pieces — the live PKRU register ([`pkru::PkruRegister`]) and the page tables — and
//! this crate supplies the rules.
//!
//! ## The whole flow in a dozen lines
//!
//! 1. A process calls `pkey_alloc(0, PKEY_DISABLE_WRITE)` (syscall 330).
//! 2. [`syscall::pkey_alloc`] checks the arguments in Linux's order (flags, then rights), then
//!    takes its address space's **write lock** (Linux: `mmap_write_lock`).
//! 3. [`mm::PkeyState::alloc`] finds the lowest clear bit of the 16-bit allocation map
//!    (Linux: `mm_pkey_alloc`); key 0 is pre-allocated, so the first key handed out is 1.
//! 4. The calling **thread's** PKRU gets the key's two bits — AD (access-disable) and WD
//!    (write-disable) — set from the requested rights ([`pkru::Pkru`]); no other thread changes.
//! 5. The program tags memory with the key: `pkey_mprotect` writes it into bits 59–62 of every
//!    page-table entry of the range ([`pte`]).
//! 6. On every user-mode data access to such a page, the CPU looks up the key in the PTE and the
//!    key's two bits in PKRU (Intel SDM Vol. 3A §4.6.2). A forbidden access raises #PF with
//!    error-code bit 5 (PK) set; the kernel turns that into `SIGSEGV` with `si_code =
//!    SEGV_PKUERR` and `si_pkey` = the key. Instruction fetches are never checked against keys.
//! 7. `pkey_free` only clears the bit in the map; memory keeps its key (Linux does the same).
//!
//! ## Modules
//! * [`key`] — [`key::Pkey`], a key number that cannot hold 16 or more.
//! * [`pkru`] — [`pkru::Pkru`], the 32-bit rights register as a type; the default value.
//! * [`mm`] — [`mm::PkeyState`], the per-address-space allocation map and execute-only key.
//! * [`pte`] — the key bits of a page-table entry.
//! * [`syscall`] — `pkey_alloc` / `pkey_free` with Linux's checks, over a lock and a register.
//! * [`errno`] — [`errno::Errno`], Linux's error numbers.
#![cfg_attr(not(test), no_std)]
// Pure logic, compiled for the host and the kernel alike: the compiler guarantees there is no
// `unsafe` here (the house rule: `unsafe` lives only in the kernel's `arch` layer).
#![forbid(unsafe_code)]

pub mod errno;
pub mod key;
pub mod mm;
pub mod pkru;
pub mod pte;
pub mod syscall;

pub use errno::Errno;
pub use key::Pkey;
pub use mm::{PkeyState, Support};
pub use pkru::{AccessRights, Pkru, PkruRegister};
