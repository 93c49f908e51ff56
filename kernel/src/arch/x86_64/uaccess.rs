//! Kernel accesses to user memory — the one small family of functions allowed to touch it.
//!
//! The kernel must survive whatever address a program hands it, so each copy is a single
//! `rep movsb` marked recoverable in the exception table ([`super::extable`]): a fault in the
//! middle — an unmapped page, a read-only page, a page whose protection key PKRU forbids —
//! resumes after the instruction and becomes an error, never a kernel panic.
//!
//! Protection keys apply here too: the CPU checks PKRU on supervisor accesses to user-mode
//! pages, and with CR0.WP = 1 a WD bit blocks supervisor writes as well (Intel SDM Vol. 3A
//! §4.6.1). That is how Linux's `write(fd, buf, n)` on a key-protected buffer returns `EFAULT`
//! without a signal, and pikku's too.
//!
//! With SMAP on (CR4.SMAP, SDM Vol. 3A §4.6.1), supervisor data accesses to user pages fault
//! unless EFLAGS.AC is set, so the copy is bracketed by STAC/CLAC — the only place the kernel
//! opens that door. Validating a user range against the process's mappings comes first, in the
//! caller; this layer only refuses ranges that leave the lower canonical half.

use super::extable::Fault;
use super::paging::USER_END;

/// Why a user copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaccessError {
    /// The range is not entirely inside user space (kernel or non-canonical address, or the
    /// length wraps around).
    OutsideUserSpace,
    /// The access faulted part-way (the fault says where and why).
    Fault(Fault),
}

impl From<UaccessError> for pkeys::Errno {
    /// Every failed user access is `EFAULT` to the program, as on Linux.
    fn from(_: UaccessError) -> pkeys::Errno {
        pkeys::Errno::EFAULT
    }
}

fn check_range(addr: u64, len: usize) -> Result<(), UaccessError> {
    match addr.checked_add(len as u64) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(UaccessError::OutsideUserSpace),
    }
}

/// `rep movsb` of `len` bytes from `src` to `dst`, recovering from any fault.
fn copy_recoverable(dst: u64, src: u64, len: usize) -> Result<(), UaccessError> {
    let smap = super::cpu::smap_enabled();
    let status: u64;
    let cr2: u64;
    // SAFETY: the caller checked that the user side lies in the lower half and the kernel side
    // is a valid slice; any fault on the user side is caught by the extable entry and reported
    // through rax/rdx. STAC/CLAC (only with SMAP, where they exist) bracket the copy.
    unsafe {
        if smap {
            core::arch::asm!("stac", options(nomem, nostack));
        }
        core::arch::asm!(
            "2: rep movsb",
            "xor eax, eax",
            "3:",
            crate::extable_entry!("2b", "3b"),
            inout("rcx") len => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            inout("rax") 0u64 => status,
            out("rdx") cr2,
            options(nostack),
        );
        if smap {
            core::arch::asm!("clac", options(nomem, nostack));
        }
    }
    match Fault::from_rax(status, cr2) {
        Some(fault) => Err(UaccessError::Fault(fault)),
        None => Ok(()),
    }
}

/// Copies `src` into user memory at `dst`. Linux: `copy_to_user()`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), UaccessError> {
    check_range(dst, src.len())?;
    copy_recoverable(dst, src.as_ptr() as u64, src.len())
}

/// Copies user memory at `src` into `dst`. Linux: `copy_from_user()`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), UaccessError> {
    check_range(src, dst.len())?;
    copy_recoverable(dst.as_mut_ptr() as u64, src, dst.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::trap::PageFaultError as E;
    use ktest_macros::ktest;

    #[ktest]
    fn an_unmapped_user_address_faults_and_is_recovered() {
        let mut buf = [0u8; 16];
        let before = crate::arch::x86_64::trap::recovered_count(14);
        let err = copy_from_user(&mut buf, 0x0000_7000_0000_0000).unwrap_err();
        let UaccessError::Fault(f) = err else { panic!("{err:?}") };
        assert_eq!(f.vector, 14);
        assert_eq!(f.address, 0x0000_7000_0000_0000);
        assert_eq!(f.error_code as u64 & (E::PRESENT | E::USER).bits(), 0, "not present, supervisor");
        assert_eq!(crate::arch::x86_64::trap::recovered_count(14), before + 1);
        assert!(crate::arch::x86_64::extable::entry_count() >= 2);
    }

    #[ktest]
    fn ranges_outside_user_space_are_refused_without_touching_them() {
        let mut buf = [0u8; 16];
        let kernel_data = &buf as *const _ as u64;
        assert_eq!(copy_from_user(&mut buf, kernel_data), Err(UaccessError::OutsideUserSpace));
        assert_eq!(copy_to_user(0xffff_8000_0000_0000, b"x"), Err(UaccessError::OutsideUserSpace));
        assert_eq!(copy_to_user(USER_END - 1, b"xy"), Err(UaccessError::OutsideUserSpace), "crosses the end");
        assert_eq!(copy_from_user(&mut buf, u64::MAX - 4), Err(UaccessError::OutsideUserSpace), "wraps");
        assert_eq!(copy_to_user(0x0000_9000_0000_0000, b"x"), Err(UaccessError::OutsideUserSpace), "non-canonical");
        // A zero-length copy anywhere in user space touches nothing.
        assert_eq!(copy_to_user(0x1000, b""), Ok(()));
    }
}
