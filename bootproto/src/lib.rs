//! # bootproto — what pikku's host tools and its kernel agree on
//!
//! The host (`boot/`, `tests/`) and the kernel are different programs built for different
//! targets, yet they must agree on three things. Each is defined once, here, and both sides
//! compile this crate:
//!
//! * [`cpio`] — the **ramdisk archive**. `boot` packs files (the boot options below, the
//!   user programs and their data files) into a cpio "newc" archive and hands it to the
//!   bootloader as its ramdisk; the kernel finds the archive in memory and reads it. newc is
//!   also what Linux's initramfs uses, so the same archive boots Debian's kernel for the
//!   conformance runs.
//! * [`options`] — the **boot options**. bootloader 0.11 passes no command line, so the options
//!   travel as a text file, [`options::CMDLINE_PATH`], inside that ramdisk: one channel for
//!   everything the host tells the kernel (log level, test mode, where the test harness resumes).
//! * [`exit`] — the **exit codes**. The kernel ends QEMU by writing to the `isa-debug-exit`
//!   device; QEMU then exits with `(value << 1) | 1`. The table of values and what the host makes
//!   of them lives in one place.
#![cfg_attr(not(feature = "std"), no_std)]
// Pure logic, compiled for the host and the kernel alike: the compiler guarantees there is no
// `unsafe` here (the house rule: `unsafe` lives only in the kernel's `arch` layer).
#![forbid(unsafe_code)]

pub mod cpio;
pub mod exit;
pub mod options;
