//! The alternate signal stack (`sigaltstack`, `SA_ONSTACK`): is a stack pointer on it, and where
//! does a frame on it start — written so that any `ss_sp` and `ss_size` a program passes
//! (Linux checks neither for overflow; `ss_size = ~0` is accepted) cannot overflow.

/// An alternate signal stack: `stack_t`'s `ss_sp` and `ss_size`, as the program gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub size: u64,
}

impl AltStack {
    /// Is `sp` on this stack? The one answer for `sigaltstack`'s `EPERM`, `SS_ONSTACK` in the
    /// old stack and in a frame's `uc_stack`, the choice of stack at delivery, and
    /// `rt_sigreturn`. Linux `__on_sig_stack()` for a stack that grows down: `sp > ss_sp &&
    /// sp - ss_sp <= ss_size` — the difference of two addresses compared with the size, never
    /// `ss_sp + ss_size`, which a huge size would wrap.
    pub fn contains(&self, sp: u64) -> bool {
        sp > self.sp && sp - self.sp <= self.size
    }

    /// Where a signal frame on this stack starts (its top): `ss_sp + ss_size` as Linux's
    /// `get_sigframe()` computes it, an unsigned sum that wraps for a hostile size. A frame
    /// placed below a wrapped top is not [`Self::contains`]-ed by the stack, and the delivery
    /// fails (SIGSEGV), as on Linux.
    pub fn top(&self) -> u64 {
        self.sp.wrapping_add(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_edges_of_a_stack() {
        let s = AltStack { sp: 0x1000, size: 0x2000 };
        assert!(!s.contains(0x1000), "ss_sp itself is below the stack (it grows down to it)");
        assert!(s.contains(0x1001));
        assert!(s.contains(0x3000), "the top: an empty stack");
        assert!(!s.contains(0x3001));
        assert_eq!(s.top(), 0x3000);
    }

    #[test]
    fn a_huge_size_neither_overflows_nor_wraps_the_test() {
        let s = AltStack { sp: 0x7fff_0000_0000, size: u64::MAX };
        assert!(s.contains(u64::MAX), "everything above ss_sp is on it");
        assert!(!s.contains(0x1000));
        assert_eq!(s.top(), 0x7ffe_ffff_ffff, "the sum wraps, as Linux's does");
        assert!(!s.contains(s.top() - 1000), "a frame below a wrapped top is not on the stack");
    }

    proptest! {
        /// Against the definition in 128-bit arithmetic: ss_sp < sp <= ss_sp + ss_size.
        #[test]
        fn contains_agrees_with_wide_arithmetic(sp in any::<u64>(), base in any::<u64>(), size in prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..0x10000]) {
            let s = AltStack { sp: base, size };
            prop_assert_eq!(s.contains(sp), (sp as u128) > base as u128 && (sp as u128) <= base as u128 + size as u128);
        }
    }
}
