//! # boot — the host side of pikku
//!
//! Everything that happens on the developer's machine rather than inside QEMU:
//!
//! * [`build`] — builds the kernel (or its test build) by running cargo in `kernel/`;
//! * [`image`] — packs the ramdisk (a cpio archive holding the boot options) and turns kernel +
//!   ramdisk into a BIOS or UEFI disk image with the rust-osdev `bootloader` crate;
//! * [`qemu`] — the one place that knows QEMU's command line;
//! * [`run`] — boots the kernel once in run mode;
//! * [`linux`] — the Linux reference runner (Debian's kernel, same QEMU machine);
//! * [`conformance`] — the cases compared between pikku and Linux, and their golden files;
//! * [`selftest`] — Linux's pkey selftests, fetched, built and run on pikku (`make selftest`);
//! * [`fuzz`] — a campaign of the system-call fuzzer, judged by heartbeat, exit and memory line;
//! * [`bench`](mod@bench) and [`trace`] — instruction counts against Linux, and where they go;
//! * [`ktest`] — boots the test kernel, parses its serial output, and re-boots after a test
//!   that panicked, hung or triple-faulted, so that every test gets its line.
//!
//! The `pikku` binary (`src/main.rs`) puts these together for `make run`; the host tests in
//! `tests/` use the library directly.

pub mod bench;
pub mod build;
pub mod conformance;
pub mod fuzz;
pub mod image;
pub mod ktest;
pub mod linux;
pub mod qemu;
pub mod run;
pub mod selftest;
pub mod trace;

use std::path::PathBuf;

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("boot/ has a parent").to_path_buf()
}

/// Where `boot` writes images and ramdisks: `target/pikku/`.
pub fn work_dir() -> PathBuf {
    let dir = repo_root().join("target").join("pikku");
    std::fs::create_dir_all(&dir).expect("cannot create target/pikku");
    dir
}

/// An error for people: one line that says what went wrong and what to do.
pub type Error = String;
