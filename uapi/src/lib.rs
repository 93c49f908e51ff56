//! # uapi — the Linux x86-64 user ABI, as pure logic
//!
//! What a static Linux program expects from the kernel, byte for byte, written so that it can
//! be tested on the host:
//!
//! * [`elf`] — reading an ELF64 executable and planning its memory areas (Linux:
//!   `load_elf_binary()` in `fs/binfmt_elf.c`);
//! * [`stack`] — the initial stack: `argc`, `argv`, `envp`, the auxiliary vector and the
//!   strings they point to (Linux: `create_elf_tables()`);
//! * [`signal`] — the alternate signal stack, overflow-free;
//! * [`sigframe`] — the rt signal frame (`struct rt_sigframe`, `ucontext`, `sigcontext`) and
//!   the software bytes of its XSAVE image, laid out as on Linux x86-64;
//! * [`layout`] — `struct stat`, `struct utsname`, `struct timespec`, terminal structs, as the
//!   x86-64 ABI lays them out.
#![cfg_attr(not(test), no_std)]
// Pure logic, compiled for the host and the kernel alike: the compiler guarantees there is no
// `unsafe` here (the house rule: `unsafe` lives only in the kernel's `arch` layer).
#![forbid(unsafe_code)]

extern crate alloc;

pub mod elf;
pub mod layout;
pub mod sigframe;
pub mod signal;
pub mod stack;
