//! The kernel heap: what makes `alloc` (`Box`, `Vec`, `BTreeMap`, `Arc`) work.
//!
//! A fixed virtual range in the upper half, [`HEAP_START`] .. + [`HEAP_SIZE`], is backed with
//! frames at boot and handed to `linked_list_allocator` (rust-osdev's maintained first-fit
//! allocator). The range sits in its own PML4 slot (index 448), which [`init`] checks is unused,
//! so it can collide with nothing the bootloader mapped
//! ([`paging::map_fresh_kernel_region`] checks that it is unused).

use linked_list_allocator::LockedHeap;
use x86_64::VirtAddr;

use crate::arch::x86_64::paging;
use crate::mm::frame;

/// Where the heap starts: PML4 slot 448, upper half.
pub const HEAP_START: u64 = 0xffff_e000_0000_0000;
/// 16 MiB.
pub const HEAP_SIZE: u64 = 16 << 20;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Maps the heap range and gives it to the allocator.
pub fn init() {
    let memory = paging::map_fresh_kernel_region(VirtAddr::new(HEAP_START), HEAP_SIZE, frame::alloc);
    ALLOCATOR.lock().init_from_slice(memory);
}

/// Bytes of heap in use.
#[cfg(test)] // used by the in-kernel tests only
pub fn used() -> usize {
    ALLOCATOR.lock().used()
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use ktest_macros::ktest;

    #[ktest]
    fn box_vec_and_btreemap_work_and_memory_is_reused() {
        let b = Box::new(41u64);
        assert_eq!(*b + 1, 42);
        let v: Vec<u64> = (0..100_000).collect();
        assert_eq!(v.iter().sum::<u64>(), 99_999 * 100_000 / 2);
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert(i.wrapping_mul(2_654_435_761), i);
        }
        assert_eq!(m.len(), 1000);
        drop((b, v, m));
        let used = super::used();
        for _ in 0..100 {
            let big: Vec<u8> = alloc::vec![7; 1 << 20];
            assert_eq!(big[12345], 7);
        }
        assert_eq!(super::used(), used, "1 MiB allocations freed 100 times leave no trace");
    }
}
