//! Reaching user memory from system calls.
//!
//! Every syscall argument that is a pointer is untrusted. These helpers are the kernel's only
//! way to read or write through one; they never fail with anything but `EFAULT`:
//!
//! * the arch layer refuses any range that leaves the lower half (kernel or non-canonical
//!   addresses, lengths that wrap);
//! * a page not mapped yet faults inside the copy; the fault path (the trap hook
//!   `task::fault::kernel_fault_on_user_address`, which knows whose address space it is) checks
//!   the area — it must exist and allow the access, and the caller's PKRU must allow the
//!   key — and maps the page, and the copy continues;
//! * anything else (no area, wrong protection, a key PKRU denies, no memory) leaves the copy
//!   through the exception table and becomes `EFAULT` — no signal, no kernel panic. That is how
//!   Linux's `read()` into a write-disabled buffer behaves.
//!
//! The caller must not hold its address space's lock across a copy (the fault path takes it).

use alloc::vec::Vec;
use pkeys::Errno;

use crate::arch::x86_64::uaccess;

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
