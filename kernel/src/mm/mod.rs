//! Memory management: physical frames, the kernel heap, and address spaces.
//!
//! * [`frame`] — which 4-KiB physical frames are free (a bitmap over the bootloader's map).
//! * [`numa`] — the NUMA nodes: their CPUs, their memory, their distances.
//! * [`heap`] — the kernel heap behind `alloc` (`Box`, `Vec`, `BTreeMap`, `Arc`).
//! * [`address_space`] — [`address_space::Mm`], one per process: its page-table root and its
//!   protection-key state, behind a reader-writer lock.
//! * [`area`] — its memory areas: mmap, munmap, mprotect, brk, and demand paging.
//! * [`policy`] — NUMA memory policy in the address space: on which node a faulting page is
//!   placed, where a page lives, moving pages between nodes.
//! * [`hugetlb`] — the pool of 2-MiB pages and the `MAP_HUGETLB` areas that use it.
//! * [`shmem`] — shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`): one object of pages
//!   by page offset, shared by every area (and forked child) that maps it.
//! * [`user`] — reaching user memory from syscalls (copies that fail with `EFAULT`).
//! * [`tlb`] — which address space each CPU has loaded, so TLB flushes reach exactly those.
//! * [`hugetlb`] — the 2 MiB page pool `/proc/sys/vm/nr_hugepages` sizes.
pub mod address_space;
pub mod tlb;
pub mod area;
pub mod policy;
pub mod hugetlb;
pub mod shmem;
pub mod user;
pub mod frame;
pub mod numa;
pub mod heap;
