//! The kernel heap's allocator: rust-osdev's `linked_list_allocator` first-fit heap behind Rust's
//! `GlobalAlloc` trait, over a region of kernel memory that grows upward.
//!
//! Implementing `GlobalAlloc` is `unsafe` — the compiler trusts it to hand out live, disjoint
//! memory — so the implementation lives here, in `arch`. The heap's *policy* lives in
//! `mm::heap`: where the region starts, how much it may grow and in what steps, where its frames
//! come from. The policy reaches this allocator only through a safe interface: it hands over
//! memory as `&'static mut [MaybeUninit<u8>]` slices — made by
//! [`paging::map_fresh_kernel_region`](super::paging::map_fresh_kernel_region), which is what
//! vouches that nobody else can reach them — and this allocator takes a slice only if it starts
//! exactly at the heap's top. So no mistake in the policy can make the heap hand out memory it
//! does not own.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use linked_list_allocator::Heap;
use super::sync::Mutex;

/// Where more heap memory comes from: given the heap's current top and the bytes an allocation
/// needs, map more right there and return it (or an empty slice: out of memory).
pub type Grow = fn(top: usize, needed: usize) -> &'static mut [MaybeUninit<u8>];

/// A first-fit heap that grows on demand through a [`Grow`] policy.
pub struct GrowingHeap {
    heap: Mutex<Heap>,
    grow: Grow,
}

impl GrowingHeap {
    /// An empty heap; [`init`](Self::init) gives it its first memory.
    pub const fn new(grow: Grow) -> GrowingHeap {
        GrowingHeap { heap: Mutex::new(Heap::empty()), grow }
    }

    /// Gives the heap its first memory (once, at boot).
    pub fn init(&self, memory: &'static mut [MaybeUninit<u8>]) {
        self.heap.lock().init_from_slice(memory);
    }

    /// Bytes allocated now.
    pub fn used(&self) -> usize {
        self.heap.lock().used()
    }

    /// Bytes the heap holds (allocated or free).
    pub fn size(&self) -> usize {
        self.heap.lock().size()
    }

    /// Bytes free in what the heap holds now.
    pub fn free(&self) -> usize {
        self.heap.lock().free()
    }

    /// Adds `memory` at the top of the heap; `false` (and the memory stays unused) if it does
    /// not start exactly there.
    fn extend(heap: &mut Heap, memory: &'static mut [MaybeUninit<u8>]) -> bool {
        if memory.is_empty() || !core::ptr::eq(memory.as_ptr().cast::<u8>(), heap.top()) {
            return false;
        }
        // SAFETY: `memory` is an exclusive `'static` borrow (no one else can reach it) that
        // begins right at the heap's top; consuming the borrow hands its bytes to the heap.
        unsafe { heap.extend(memory.len()) };
        true
    }
}

// SAFETY: `alloc` hands out blocks of the heap's own memory only (linked_list_allocator keeps them
// disjoint; memory joins the heap only as exclusive slices, see `extend`), `dealloc` returns them
// with the layout they were allocated with (GlobalAlloc's contract binds the caller), and the
// mutex serialises both. A null return is the "out of memory" answer GlobalAlloc allows.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        loop {
            if let Ok(block) = heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            // New memory joins the free block at the top, so `size + align` always suffices.
            let more = (self.grow)(heap.top() as usize, layout.size() + layout.align());
            if !GrowingHeap::extend(&mut heap, more) {
                return core::ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` above with this `layout` (GlobalAlloc's contract).
            unsafe { self.heap.lock().deallocate(block, layout) };
        }
    }
}
