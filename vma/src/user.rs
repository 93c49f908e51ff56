//! The user half of the address space and ranges in it, checked before any sum.
//!
//! Every address and length a program passes to the kernel is untrusted: `addr + len` of two
//! user values can wrap, and an end just past the last user page is a non-canonical address
//! the kernel must never build. Linux's rule (`access_ok()`, `__get_unmapped_area()`,
//! `__vm_munmap()`) is to compare *before* adding: `len <= TASK_SIZE && addr <= TASK_SIZE -
//! len`. [`UserRange`] is that rule as a type: a range that exists has an end that did not
//! wrap and lies at or below [`TASK_SIZE`], so arithmetic inside it cannot overflow.

use crate::PAGE_SIZE;

/// The end of user space: one page below the canonical boundary 2^47, exactly as Linux x86-64
/// (`TASK_SIZE_MAX` = `(1 << 47) - PAGE_SIZE`). The page below 2^47 is never mapped, so no
/// instruction can end at the boundary and `SYSRET` never returns to a non-canonical RIP.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// `[start, end)` inside user space: `start <= end <= TASK_SIZE`, built only by the checked
/// constructors below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRange {
    start: u64,
    end: u64,
}

impl UserRange {
    /// `len` bytes from `start`, if they lie wholly in user space (Linux: `access_ok()`,
    /// written as Linux does so that nothing overflows: `len <= TASK_SIZE && start <=
    /// TASK_SIZE - len`).
    pub fn new(start: u64, len: u64) -> Option<UserRange> {
        (len <= TASK_SIZE && start <= TASK_SIZE - len).then(|| UserRange { start, end: start + len })
    }

    /// `len` bytes from `start`, rounded up to whole pages (Linux: `PAGE_ALIGN(len)`), if
    /// `start` is page-aligned and the pages lie wholly in user space. A `len` whose rounding
    /// wraps is refused like any other too-long one.
    pub fn pages(start: u64, len: u64) -> Option<UserRange> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        UserRange::new(start, page_align_up(len)?)
    }

    /// First address.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// First address past the range (at most [`TASK_SIZE`]).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// An empty range?
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The address `offset` bytes in, if it is inside the range (or its end): the way to
    /// reach a field of a structure in user memory once the whole structure was checked.
    pub fn at(&self, offset: u64) -> Option<u64> {
        (offset <= self.len()).then(|| self.start + offset)
    }
}

/// `len` rounded up to a whole number of pages, or `None` if that wraps (Linux:
/// `PAGE_ALIGN()`, whose wrap to 0 each caller then checks).
pub fn page_align_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_top_of_user_space_is_exact() {
        assert_eq!(TASK_SIZE, (1 << 47) - PAGE_SIZE);
        assert!(UserRange::new(TASK_SIZE - PAGE_SIZE, PAGE_SIZE).is_some(), "the last page");
        assert_eq!(UserRange::new(TASK_SIZE, 0).map(|r| r.end()), Some(TASK_SIZE), "empty, at the top");
        assert!(UserRange::new(TASK_SIZE, 1).is_none());
        assert!(UserRange::new(TASK_SIZE - PAGE_SIZE, 2 * PAGE_SIZE).is_none(), "ends at 2^47");
        assert!(UserRange::new(u64::MAX, 1).is_none(), "wraps");
        assert!(UserRange::new(1, u64::MAX).is_none(), "wraps");
        assert!(UserRange::new(0xffff_8000_0000_0000, 8).is_none(), "kernel half");
    }

    #[test]
    fn pages_need_an_aligned_start_and_a_length_that_rounds_without_wrapping() {
        assert_eq!(UserRange::pages(0x1000, 1).map(|r| (r.start(), r.end())), Some((0x1000, 0x2000)));
        assert!(UserRange::pages(0x1001, 1).is_none());
        assert!(UserRange::pages(0x1000, u64::MAX).is_none());
        assert!(UserRange::pages(0x1000, u64::MAX - 0xffe).is_none(), "rounds to a wrap");
        assert_eq!(page_align_up(u64::MAX - 0xfff), Some(u64::MAX - 0xfff));
        assert_eq!(page_align_up(u64::MAX - 0xffe), None);
    }

    #[test]
    fn at_stays_inside() {
        let r = UserRange::new(0x1000, 0x100).unwrap();
        assert_eq!(r.at(0), Some(0x1000));
        assert_eq!(r.at(0x100), Some(0x1100));
        assert_eq!(r.at(0x101), None);
        assert_eq!(r.at(u64::MAX), None);
    }

    proptest! {
        /// Against the obvious model in 128-bit arithmetic, which cannot overflow.
        #[test]
        fn new_agrees_with_wide_arithmetic(start in prop_oneof![any::<u64>(), 0..=TASK_SIZE, (TASK_SIZE - 3 * PAGE_SIZE)..=(TASK_SIZE + PAGE_SIZE)],
                                           len in prop_oneof![any::<u64>(), 0..=3 * PAGE_SIZE, (u64::MAX - PAGE_SIZE)..=u64::MAX]) {
            let fits = start as u128 + len as u128 <= TASK_SIZE as u128;
            let r = UserRange::new(start, len);
            prop_assert_eq!(r.is_some(), fits);
            if let Some(r) = r {
                prop_assert_eq!((r.start(), r.len()), (start, len));
            }
            let p = UserRange::pages(start, len);
            let aligned = (len as u128).div_ceil(PAGE_SIZE as u128) * PAGE_SIZE as u128;
            prop_assert_eq!(p.is_some(), start % PAGE_SIZE == 0 && aligned < (1u128 << 64) && start as u128 + aligned <= TASK_SIZE as u128);
        }
    }
}
