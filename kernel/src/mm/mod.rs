//! Memory management: physical frames, the kernel heap, and address spaces.
//!
//! * [`frame`] — which 4-KiB physical frames are free (a bitmap over the bootloader's map).
//! * [`heap`] — the kernel heap behind `alloc` (`Box`, `Vec`, `BTreeMap`, `Arc`).
//! * [`address_space`] — [`address_space::Mm`], one per process: its page-table root and its
//!   protection-key state, behind a reader-writer lock.
pub mod address_space;
pub mod frame;
pub mod heap;
