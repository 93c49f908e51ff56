//! Kernel accesses to user memory — the one small family of functions allowed to touch it.
//!
//! The kernel must survive whatever address a program hands it, so each copy is a single
//! `rep movsb` marked recoverable in the exception table ([`super::extable`]): a fault in the
//! middle — an unmapped page, a read-only page, a page whose protection key PKRU forbids —
//! resumes after the instruction and becomes an error, never a kernel panic.
//!
//! Protection keys apply here too: the CPU checks PKRU on supervisor accesses to user-mode pages,
//! and with CR0.WP = 1 a WD bit blocks supervisor writes as well (Intel SDM Vol. 3A §4.6.1
//! "Determination of Access Rights", §4.6.2 "Protection Keys"). That is how Linux's `write(fd, buf,
//! n)` on a key-protected buffer returns `EFAULT` without a signal, and pikku's too.
//!
//! With SMAP on (CR4.SMAP, SDM Vol. 3A §4.6.1), supervisor data accesses to user pages fault
//! unless EFLAGS.AC is set, so the copy is bracketed by STAC/CLAC — the only place the kernel
//! opens that door. Validating a user range against the process's mappings comes first, in the
//! caller; this layer only refuses ranges that leave user space (`vma::UserRange`: below
//! `TASK_SIZE`, checked before any sum, as Linux's `access_ok()`).

use core::marker::PhantomData;
use core::mem::size_of;
use uapi::sigframe::{XsavePrologue, FP_XSTATE_MAGIC2};

use super::extable::Fault;

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
    vma::UserRange::new(addr, len as u64).map(|_| ()).ok_or(UaccessError::OutsideUserSpace)
}

/// Opens SMAP's door (STAC — SDM Vol. 2B "STAC"; only with SMAP, where it exists) for user
/// accesses that follow, and says whether it did. Linux: `stac()` in `user_access_begin()`.
#[inline(always)]
fn user_access_begin() -> bool {
    let smap = super::cpu::smap_enabled();
    if smap {
        // SAFETY: sets EFLAGS.AC for the user accesses that follow; `user_access_end` clears it.
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    }
    smap
}

/// Closes the door [`user_access_begin`] opened (CLAC — SDM Vol. 2A "CLAC").
#[inline(always)]
fn user_access_end(smap: bool) {
    if smap {
        // SAFETY: clears EFLAGS.AC, which `user_access_begin` set.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
}

/// Runs `body` — one asm block whose faulting instructions are all in the exception table — with
/// SMAP's door open, and turns its `rax`/`rdx` status into a result.
#[inline(always)]
fn with_user_access(body: impl FnOnce() -> (u64, u64)) -> Result<(), UaccessError> {
    let smap = user_access_begin();
    let (status, cr2) = body();
    user_access_end(smap);
    match Fault::from_rax(status, cr2) {
        Some(fault) => Err(UaccessError::Fault(fault)),
        None => Ok(()),
    }
}

/// Copies `words` 8-byte words and then `tail` bytes from `src` to `dst` (`rep movsq`, then
/// `rep movsb`), recovering from any fault. (Real CPUs with fast strings copy as quickly with
/// `rep movsb` alone; under QEMU's TCG every iteration is one instruction, so words are eight
/// times cheaper to emulate — and the benchmarks count instructions.) On a fault, also says how
/// many bytes were *not* copied: exact in the byte loop, counted from the faulting word in the
/// word loop (so up to 7 bytes before the faulting byte may be among them; see
/// [`copy_partial`]).
fn copy_recoverable(dst: u64, src: u64, words: usize, tail: usize) -> Result<(), (UaccessError, usize)> {
    let mut left = 0usize;
    with_user_access(|| {
        let (status, cr2): (u64, u64);
        // SAFETY: the caller checked that the user side lies in the lower half and the kernel
        // side is a valid slice; a fault on the user side in either loop is caught by its
        // extable entry and reported through rax/rdx, with RCX still counting what was left
        // (in words in the first loop: the fixup at 5 turns that into bytes).
        unsafe {
            core::arch::asm!(
                "2: rep movsq",
                "mov rcx, {tail}",
                "4: rep movsb",
                "xor eax, eax",
                "jmp 3f",
                "5: shl rcx, 3",
                "add rcx, {tail}",
                "3:",
                crate::extable_entry!("2b", "5b"),
                crate::extable_entry!("4b", "3b"),
                tail = in(reg) tail,
                inout("rcx") words => left,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                inout("rax") 0u64 => status,
                out("rdx") cr2,
                options(nostack),
            );
        }
        (status, cr2)
    })
    .map_err(|e| (e, left))
}

/// [`copy_recoverable`] of `len` bytes: as many whole words as fit, then the rest.
fn copy_words(dst: u64, src: u64, len: usize) -> Result<(), (UaccessError, usize)> {
    copy_recoverable(dst, src, len / 8, len % 8)
}

/// Copies as much as the user memory allows and returns how many bytes were copied — every
/// byte before the first one that faults, exactly (Linux: `len - copy_to_user()`, which
/// `read()` and friends turn into a short count). The word copy runs first; only after a
/// fault does a byte copy find the exact spot.
fn copy_partial(dst: u64, src: u64, len: usize) -> usize {
    let Err((_, left)) = copy_words(dst, src, len) else { return len };
    // Again from the faulting word, byte by byte: RCX then stops at the exact byte.
    let done = len - left;
    match copy_recoverable(dst + done as u64, src + done as u64, 0, left) {
        Ok(()) => len,
        Err((_, still_left)) => len - still_left,
    }
}

/// The user-memory side of saving and restoring FPU state in a signal frame: XSAVE straight
/// into user memory, XRSTOR straight out of it (Linux `xsave_to_user_sigframe()`,
/// `xrstor_from_user_sigframe()`), or FXSAVE/FXRSTOR on a CPU without XSAVE. One instruction
/// each instead of a copy of the ~2.7 KiB area through a kernel buffer. `mask` is XSAVE's
/// requested-feature bitmap (EDX:EAX, Intel SDM Vol. 1 §13.7 "Operation of XSAVE", §13.8 "Operation
/// of XRSTOR").
///
/// A fault is recovered like a copy's: #PF on an unmapped or key-denied page, and #GP — which
/// XRSTOR raises for an image it will not load (a misaligned area, XSTATE_BV bits outside XCR0,
/// non-zero reserved header bytes, reserved MXCSR bits) — so a forged frame costs the program
/// its life, never the kernel. The mask travels in EDX:EAX, the same registers the exception
/// table rewrites on a fault: on success `xor eax, eax` makes the status 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FpImage {
    /// XSAVE/XRSTOR (standard format) with this requested-feature bitmap.
    Xsave(u64),
    /// FXSAVE/FXRSTOR: the 512-byte legacy image.
    Fxsave,
}

/// One recoverable FPU-image instruction (`$insn [addr]`) with its requested-feature bitmap in
/// EDX:EAX; evaluates to the (`rax`, `rdx`) status pair of the exception-table protocol.
macro_rules! fp_image_insn {
    ($insn:literal, $addr:expr, $mask:expr) => {{
        let (status, cr2): (u64, u64);
        let mask: u64 = $mask;
        // SAFETY: the callers below check that the whole image lies in the lower half. A save
        // only reads FPU registers and writes the image; a restore either loads a valid state
        // or faults. Every fault (#PF, or the #GP XRSTOR raises for an image it refuses) is
        // recovered through the extable entry and reported through rax/rdx.
        unsafe {
            core::arch::asm!(
                concat!("2: ", $insn, " [{addr}]"),
                "xor eax, eax",
                "3:",
                crate::extable_entry!("2b", "3b"),
                addr = in(reg) $addr,
                inout("rax") mask as u32 as u64 => status,
                inout("rdx") mask >> 32 => cr2,
                options(nostack),
            )
        };
        (status, cr2)
    }};
}

/// Saves the live FPU state to the image at user address `dst` (64-byte aligned for XSAVE).
pub fn fpu_save_to_user(dst: u64, image: FpImage, size: usize) -> Result<(), UaccessError> {
    check_range(dst, size)?;
    with_user_access(|| match image {
        FpImage::Xsave(mask) => fp_image_insn!("xsave64", dst, mask),
        FpImage::Fxsave => fp_image_insn!("fxsave64", dst, 0),
    })
}

/// Loads the FPU state from the image at user address `src` — PKRU too, if `image`'s mask has
/// bit 9 (the one place the kernel means to let a saved PKRU become the live one).
pub fn fpu_restore_from_user(src: u64, image: FpImage, size: usize) -> Result<(), UaccessError> {
    check_range(src, size)?;
    with_user_access(|| match image {
        FpImage::Xsave(mask) => fp_image_insn!("xrstor64", src, mask),
        FpImage::Fxsave => fp_image_insn!("fxrstor64", src, 0),
    })
}

/// The user-memory side of Linux's `copy_fpstate_to_sigframe()` for an XSAVE image, in one
/// user-access window: the software bytes and a zeroed XSAVE header first (`prologue`, at
/// 464..575 — XSAVE writes neither), the XSAVE of the components in `mask`, `FP_XSTATE_MAGIC2`
/// right after the `size`-byte image (`save_xstate_epilog()`), and — `pkru = Some((offset,
/// value))` — the interrupted code's PKRU in its slot with XSTATE_BV bit 9 set
/// (`update_pkru_in_sigframe()`; the live PKRU is the "all open" one the frame is written
/// with, so `mask` leaves PKRU out). `buf` must be 64-byte aligned. Each store and the XSAVE
/// are recoverable, like a copy.
pub fn xsave_to_sigframe(buf: u64, size: usize, mask: u64, prologue: &XsavePrologue, pkru: Option<(usize, u32)>) -> Result<(), UaccessError> {
    check_range(buf, size + 4)?;
    let (pkru_at, pkru_value) = match pkru {
        Some((offset, value)) if offset + 4 <= size => (buf + offset as u64, value),
        _ => (0, 0),
    };
    with_user_access(|| {
        let (status, cr2): (u64, u64);
        // SAFETY: `buf .. buf + size + 4` lies in the lower half (checked above), and so does
        // the PKRU slot inside it; the prologue is a kernel value of `PROLOGUE_WORDS` words.
        // Every instruction that touches user memory has an extable entry resuming at 8, with
        // the fault in rax/rdx; the XSAVE mask travels in EDX:EAX, which the fault overwrites.
        unsafe {
            core::arch::asm!(
                "2: rep movsq",
                "3: xsave64 [{buf}]",
                "4: mov dword ptr [{buf} + {size}], {magic2}",
                "test {pkru_at}, {pkru_at}",
                "jz 6f",
                "5: mov dword ptr [{pkru_at}], {pkru:e}",
                // XSTATE_BV is the header's first word (byte 512); PKRU is its bit 9, bit 1 of byte 513.
                "7: or byte ptr [{buf} + 513], 2",
                "6: xor eax, eax",
                "8:",
                crate::extable_entry!("2b", "8b"),
                crate::extable_entry!("3b", "8b"),
                crate::extable_entry!("4b", "8b"),
                crate::extable_entry!("5b", "8b"),
                crate::extable_entry!("7b", "8b"),
                buf = in(reg) buf,
                size = in(reg) size,
                magic2 = const FP_XSTATE_MAGIC2,
                pkru_at = in(reg) pkru_at,
                pkru = in(reg) pkru_value,
                inout("rcx") PROLOGUE_WORDS => _,
                inout("rdi") buf + XsavePrologue::OFFSET => _,
                inout("rsi") prologue as *const XsavePrologue as u64 => _,
                inout("rax") mask as u32 as u64 => status,
                inout("rdx") mask >> 32 => cr2,
                options(nostack),
            );
        }
        (status, cr2)
    })
}

/// The prologue's size in eight-byte words.
const PROLOGUE_WORDS: usize = size_of::<XsavePrologue>() / 8;

/// A user-access window onto the `T` at a user address (Linux `user_access_begin()` …
/// `user_access_end()`): [`UserWindow::open`] checks that all of it lies in user space and
/// opens SMAP's door once; inside, single eight-byte stores and loads at offsets in `T` fixed
/// when compiled (Linux `unsafe_put_user()`, `unsafe_get_user()`) — one instruction each, each
/// recoverable; [`UserWindow::close`] closes the door and says whether any access faulted (the
/// door also closes if the window is dropped unclosed). For a structure written or read field
/// by field, like the signal frame, with no copy through a kernel buffer. A fault does not stop
/// what follows: the faulting access is skipped (a load's value is then meaningless) and the
/// window remembers the fault. Between `open` and `close` the kernel must reach user memory only
/// through the window. `T` is only a layout (a `uapi` structure): its size bounds the window,
/// its fields name the offsets (`offset_of!`); no `T` is ever made from user bytes.
pub struct UserWindow<T> {
    base: u64,
    smap: bool,
    /// The exception-table status of the last faulting access (0: none yet) and its CR2.
    status: u64,
    cr2: u64,
    of: PhantomData<T>,
}

impl<T> UserWindow<T> {
    /// Opens a window onto the `T` at user address `addr` (Linux `user_access_begin()`, with its
    /// `access_ok()`): an error, and nothing opened, if it does not lie wholly in user space.
    #[inline(always)]
    pub fn open(addr: u64) -> Result<UserWindow<T>, UaccessError> {
        check_range(addr, size_of::<T>())?;
        Ok(UserWindow { base: addr, smap: user_access_begin(), status: 0, cr2: 0, of: PhantomData })
    }

    /// Stores `value` at byte `OFFSET` of the `T` (a multiple of 8 inside it, checked when
    /// compiled). Linux: `unsafe_put_user()`.
    #[inline(always)]
    pub fn put<const OFFSET: usize>(&mut self, value: u64) {
        const { assert!(OFFSET.is_multiple_of(8) && OFFSET + 8 <= size_of::<T>(), "a word inside the structure") };
        // SAFETY: `base .. base + size_of::<T>()` lies in the lower half (`open` checked it) and
        // the word at OFFSET lies inside it (checked above). A fault on the store is caught by
        // its extable entry: it resumes after the store with the fault in rax/rdx, which are
        // this window's status and CR2.
        unsafe {
            core::arch::asm!(
                "2: mov qword ptr [{base} + {offset}], {value}",
                "3:",
                crate::extable_entry!("2b", "3b"),
                base = in(reg) self.base,
                offset = const OFFSET,
                value = in(reg) value,
                inout("rax") self.status,
                inout("rdx") self.cr2,
                options(nostack, preserves_flags),
            );
        }
    }

    /// Loads the word at byte `OFFSET` of the `T` (a multiple of 8 inside it, checked when
    /// compiled). Linux: `unsafe_get_user()`.
    #[inline(always)]
    pub fn get<const OFFSET: usize>(&mut self) -> u64 {
        const { assert!(OFFSET.is_multiple_of(8) && OFFSET + 8 <= size_of::<T>(), "a word inside the structure") };
        let value: u64;
        // SAFETY: as for `put`; a faulting load leaves `value` unwritten (any bits: the caller
        // learns of the fault from `close` and must not use what it read).
        unsafe {
            core::arch::asm!(
                "2: mov {value}, qword ptr [{base} + {offset}]",
                "3:",
                crate::extable_entry!("2b", "3b"),
                base = in(reg) self.base,
                offset = const OFFSET,
                value = out(reg) value,
                inout("rax") self.status,
                inout("rdx") self.cr2,
                options(nostack, preserves_flags, readonly),
            );
        }
        value
    }

    /// Closes the window (Linux `user_access_end()`): an error if any access in it faulted.
    #[inline(always)]
    pub fn close(self) -> Result<(), UaccessError> {
        let fault = Fault::from_rax(self.status, self.cr2);
        drop(self);
        match fault {
            Some(fault) => Err(UaccessError::Fault(fault)),
            None => Ok(()),
        }
    }
}

impl<T> Drop for UserWindow<T> {
    #[inline(always)]
    fn drop(&mut self) {
        user_access_end(self.smap);
    }
}

/// Copies `src` into user memory at `dst`. Linux: `copy_to_user()`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), UaccessError> {
    check_range(dst, src.len())?;
    copy_words(dst, src.as_ptr() as u64, src.len()).map_err(|(e, _)| e)
}

/// Copies user memory at `src` into `dst`. Linux: `copy_from_user()`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), UaccessError> {
    check_range(src, dst.len())?;
    copy_words(dst.as_mut_ptr() as u64, src, dst.len()).map_err(|(e, _)| e)
}

/// Copies the start of `src` to user memory at `dst`, as far as it goes; returns how many
/// bytes arrived (0 for a range outside user space, as Linux's `access_ok()` refuses it whole).
pub fn copy_to_user_partial(dst: u64, src: &[u8]) -> usize {
    if check_range(dst, src.len()).is_err() {
        return 0;
    }
    copy_partial(dst, src.as_ptr() as u64, src.len())
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::trap::PageFaultError as E;
    use uapi::sigframe::{FpxSwBytes, RtSigframe};
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
        assert_eq!(copy_to_user(vma::TASK_SIZE - 1, b"xy"), Err(UaccessError::OutsideUserSpace), "crosses the end");
        assert_eq!(copy_to_user(vma::TASK_SIZE, b"x"), Err(UaccessError::OutsideUserSpace), "the page below 2^47");
        assert_eq!(copy_from_user(&mut buf, u64::MAX - 4), Err(UaccessError::OutsideUserSpace), "wraps");
        assert_eq!(copy_to_user(0x0000_9000_0000_0000, b"x"), Err(UaccessError::OutsideUserSpace), "non-canonical");
        // A zero-length copy anywhere in user space touches nothing.
        assert_eq!(copy_to_user(0x1000, b""), Ok(()));
        // A structure's window and copy, and the signal frame's FPU image, check the same way,
        // whole, before anything is touched.
        assert_eq!(UserWindow::<RtSigframe>::open(vma::TASK_SIZE - 8).err(), Some(UaccessError::OutsideUserSpace), "a frame across the end");
        assert_eq!(UserWindow::<FpxSwBytes>::open(kernel_data).err(), Some(UaccessError::OutsideUserSpace));
        let prologue = XsavePrologue::default();
        assert_eq!(xsave_to_sigframe(vma::TASK_SIZE - 512, 2696, 0, &prologue, None), Err(UaccessError::OutsideUserSpace), "an image across the end");
    }

    #[ktest]
    fn a_window_onto_an_unmapped_address_faults_and_is_recovered() {
        let before = crate::arch::x86_64::trap::recovered_count(14);
        // In a window, the faulting store is skipped and the accesses after it still run; the
        // window reports a fault when it closes.
        let mut w = UserWindow::<RtSigframe>::open(0x0000_7000_0000_0000).unwrap();
        w.put::<8>(1);
        let read = w.get::<16>();
        let err = w.close().unwrap_err();
        let UaccessError::Fault(f) = err else { panic!("{err:?}") };
        assert_eq!((f.vector, f.address), (14, 0x0000_7000_0000_0010), "the last fault: the load after the store");
        assert_eq!(crate::arch::x86_64::trap::recovered_count(14), before + 2, "both accesses faulted and were recovered");
        let _ = read;
    }
}
