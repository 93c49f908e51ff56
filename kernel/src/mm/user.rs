//! Reaching user memory from system calls.
//!
//! Every syscall argument that is a pointer is untrusted. These helpers are the kernel's only
//! way to read or write through one; they never fail with anything but `EFAULT`:
//!
//! * the arch layer refuses any range that leaves the lower half (kernel or non-canonical
//!   addresses, lengths that wrap);
//! * a page not mapped yet faults inside the copy; the fault path ([`kernel_fault_on_user_address`])
//!   checks the area — it must exist and allow the access, and the caller's PKRU must allow the
//!   key — and maps the page, and the copy continues;
//! * anything else (no area, wrong protection, a key PKRU denies, no memory) leaves the copy
//!   through the exception table and becomes `EFAULT` — no signal, no kernel panic. That is how
//!   Linux's `read()` into a write-disabled buffer behaves.
//!
//! The caller must not hold its address space's lock across a copy (the fault path takes it).

use alloc::vec::Vec;
use pkeys::Errno;

use super::area::Access;
use crate::arch::x86_64::trap::PageFaultError;
use crate::arch::x86_64::{pkru, uaccess};
use crate::task;

/// Copies `data` to user address `addr`.
pub fn copy_to_user(addr: u64, data: &[u8]) -> Result<(), Errno> {
    uaccess::copy_to_user(addr, data).map_err(Errno::from)
}

/// Copies from user address `addr` into `buf`.
pub fn copy_from_user(buf: &mut [u8], addr: u64) -> Result<(), Errno> {
    uaccess::copy_from_user(buf, addr).map_err(Errno::from)
}

/// Copies as much of `data` to user address `addr` as the memory takes; returns how many bytes
/// arrived before the first fault. For the calls Linux lets return a short count (`read`,
/// `getrandom`); the caller turns 0 into `EFAULT`.
pub fn copy_to_user_partial(addr: u64, data: &[u8]) -> usize {
    uaccess::copy_to_user_partial(addr, data)
}

/// Reads a `u64` from user memory.
pub fn read_u64(addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    copy_from_user(&mut b, addr)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a `u64` to user memory.
pub fn write_u64(addr: u64, value: u64) -> Result<(), Errno> {
    copy_to_user(addr, &value.to_le_bytes())
}

/// Reads a NUL-terminated string of at most `max` bytes (NUL included), page by page so that
/// no byte past the terminator is touched. `ENAMETOOLONG` if there is no NUL within `max`.
/// Linux: `strncpy_from_user()` + the `getname()` length check.
pub fn read_c_string(addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let to_page_end = (4096 - (at % 4096)) as usize;
        let chunk = to_page_end.min(max - out.len());
        let mut buf = alloc::vec![0u8; chunk];
        copy_from_user(&mut buf, at)?;
        if let Some(nul) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..nul]);
            return Ok(out);
        }
        out.extend_from_slice(&buf);
        at += chunk as u64;
    }
    Err(Errno::ENAMETOOLONG)
}

/// The trap hook for a kernel-mode page fault on a user address: resolve it like a user
/// fault (demand paging) if the current thread's area allows the access; never for a
/// protection-key fault (that one must become `EFAULT`).
pub fn kernel_fault_on_user_address(addr: u64, error: PageFaultError) -> bool {
    if error.contains(PageFaultError::PROTECTION_KEY) {
        return false;
    }
    let Some(thread) = task::try_current() else { return false };
    // A caller holding the lock across a copy would deadlock here; refuse instead (EFAULT).
    let Some(mut mm) = thread.mm.try_write() else { return false };
    let access = if error.contains(PageFaultError::WRITE) { Access::Write } else { Access::Read };
    mm.handle_fault(addr, access, error.contains(PageFaultError::PRESENT), false, pkru::read()).is_ok()
}
