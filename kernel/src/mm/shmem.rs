//! Shared anonymous memory: what `mmap(MAP_SHARED | MAP_ANONYMOUS)` maps.
//!
//! Linux backs such a mapping with a file of its own on the internal shmem file system (it
//! shows as `/dev/zero (deleted)` in `/proc/self/maps`): the area maps the file from page
//! offset 0, a forked child's copy of the area maps the same file, and a page of the file is
//! allocated when either process first touches it and lives until the file goes — when the
//! last area mapping it is unmapped. pikku models exactly that much: a [`ShmObject`] is a table
//! of pages indexed by **page offset** within the object, shared (`Arc`) by every area that
//! maps it. An area records the object and the byte offset of its first page
//! ([`vma::Backing::File`] with [`MappedFile::Shmem`]), so
//! `mprotect` splitting an area or `munmap` of a part keeps each piece on the same pages (the
//! `vma` crate adjusts the offset as for any file), and a page's offset is what interleave
//! placement (issue #17) indexes by: [`page_offset`].
//!
//! Reference counts: the object holds one reference to each of its frames; every page-table
//! entry that maps one holds another. So `munmap` or `madvise(MADV_DONTNEED)` of a shared page
//! only drops the mapping's reference (Linux: `zap_pte_range()`; the data stays in the object),
//! and the object's own references go when its last area does ([`Drop`]).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use vma::{Backing, PAGE_SIZE};
use x86_64::structures::paging::PhysFrame;

use super::area::{Area, MappedFile};
use super::frame;
use crate::arch::x86_64::paging;
use crate::sync::Mutex;

/// Inode numbers of shared objects, as `/proc/self/maps` shows them (Linux numbers the shmem
/// file's inode; only "different objects, different numbers" is kept).
static NEXT_INO: AtomicU64 = AtomicU64::new(1);

/// One shared anonymous memory object (Linux: the shmem inode behind `/dev/zero (deleted)`).
#[derive(Debug)]
pub struct ShmObject {
    /// Its inode number in `/proc/self/maps`.
    pub ino: u64,
    /// Its pages that exist, by page offset (Linux: the inode's page cache, `i_pages`).
    /// Locking: taken under the `Mm` write lock of the faulting (or `mincore`-ing) address
    /// space — whichever of the processes sharing the object — and before the heap and
    /// `frame::FRAMES` (the table grows; frames are taken); its place in the lock order is
    /// right after `Mm`. Never held across a user copy.
    pages: Mutex<BTreeMap<u64, PhysFrame>>,
}

/// Heap bytes one more page of an object may take in its table (checked before the insert, so
/// a full heap is the fault's out-of-memory, not a panic).
const PAGE_ENTRY_HEAP_BYTES: usize = 64;

impl ShmObject {
    /// A new, empty object (Linux: `shmem_zero_setup()` at `mmap`).
    pub fn new() -> Arc<ShmObject> {
        Arc::new(ShmObject { ino: NEXT_INO.fetch_add(1, Ordering::Relaxed), pages: Mutex::new(BTreeMap::new()) })
    }

    /// The frame of the object's page `index`, with one more reference for the page-table
    /// entry the caller is about to make; allocated (zero-filled) if no process touched it
    /// yet. `None` when memory is out. Every page of every object comes from here: the one
    /// place that chooses a frame for shared memory: by the area's memory policy (else the
    /// thread's, else local), interleaving by `index`, the page's offset in the object.
    /// Linux: `shmem_get_folio()` → `shmem_alloc_and_add_folio()` → `shmem_alloc_folio()`.
    pub fn page(&self, index: u64, area: &Area, addr: u64) -> Option<PhysFrame> {
        let mut pages = self.pages.lock();
        if let Some(&existing) = pages.get(&index) {
            frame::share(existing);
            return Some(existing);
        }
        super::heap::reserve(PAGE_ENTRY_HEAP_BYTES).ok()?;
        let fresh = super::policy::alloc_for_fault(area, addr, Some(index))?;
        paging::zero_frame(fresh);
        pages.insert(index, fresh);
        frame::share(fresh);
        Some(fresh)
    }

    /// Does the object hold page `index` (whether or not any process maps it now)? For
    /// `mincore`, which asks the object for pages its caller does not map (Linux:
    /// `mincore_page()` on the shmem file's page cache).
    pub fn has_page(&self, index: u64) -> bool {
        self.pages.lock().contains_key(&index)
    }
}

impl Drop for ShmObject {
    /// The last area mapping the object is gone: its own reference to each page goes (a page
    /// still mapped somewhere — impossible once no area maps the object — would stay).
    fn drop(&mut self) {
        for &page in self.pages.get_mut().values() {
            frame::put(page);
        }
    }
}

/// The page offset within its shared object of the page holding `addr` in `area`, or `None`
/// if `area` does not map a shared object (Linux: `linear_page_index()`; interleave placement
/// indexes shared memory by it).
pub fn page_offset(area: &Area, addr: u64) -> Option<u64> {
    match &area.backing {
        Backing::File { file: MappedFile::Shmem(_), offset, .. } => Some((offset + (addr - area.start)) / PAGE_SIZE),
        _ => None,
    }
}
