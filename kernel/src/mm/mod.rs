//! Memory management: physical frames, the kernel heap, and address spaces.
//!
//! * [`frame`] — which 4-KiB physical frames are free (a bitmap over the bootloader's map).
//! * [`heap`] — the kernel heap behind `alloc` (`Box`, `Vec`, `BTreeMap`, `Arc`).
//! * [`address_space`] — [`address_space::Mm`], one per process: its page-table root and its
//!   protection-key state, behind a reader-writer lock.
//! * [`area`] — its memory areas: mmap, munmap, mprotect, brk, and demand paging.
//! * [`user`] — reaching user memory from syscalls (copies that fail with `EFAULT`).
//! * [`hugetlb`] — the 2 MiB page pool `/proc/sys/vm/nr_hugepages` sizes.
pub mod address_space;
pub mod area;
pub mod user;
pub mod frame;
pub mod heap;
pub mod hugetlb;
