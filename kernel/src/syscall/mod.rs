//! The system-call table: Linux x86-64 numbers → handlers.
//!
//! Handlers take the raw 64-bit register values (`rdi, rsi, rdx, r10, r8, r9` on x86-64) and
//! return `Result<u64, Errno>`; [`dispatch`] turns an error into `-errno`, the value Linux
//! returns in `rax`. Like xv6's `syscalls[]`, the table is one plain `match`: to find what
//! number N does, read one line. An unknown number returns `-ENOSYS` and logs one line.
//!
//! The SYSCALL entry stub (user mode) calls [`dispatch`]; until then, kernel code and the
//! in-kernel tests call it directly on a kernel-made thread — the same path.

pub mod pkey;

use pkeys::Errno;

/// Linux x86-64 system-call numbers (`arch/x86/entry/syscalls/syscall_64.tbl`).
pub mod nr {
    pub const PKEY_MPROTECT: u64 = 329;
    pub const PKEY_ALLOC: u64 = 330;
    pub const PKEY_FREE: u64 = 331;
}

/// Runs system call `number` with raw arguments `args` for the current thread; returns the
/// value for `rax` (a result, or `-errno`).
pub fn dispatch(number: u64, args: [u64; 6]) -> u64 {
    let result: Result<u64, Errno> = match number {
        nr::PKEY_ALLOC => pkey::sys_pkey_alloc(args[0], args[1]),
        nr::PKEY_FREE => pkey::sys_pkey_free(args[0]),
        _ => {
            crate::log_warn!("unknown system call {number}: -ENOSYS");
            Err(Errno::ENOSYS)
        }
    };
    match result {
        Ok(value) => value,
        Err(e) => e.to_syscall_return(),
    }
}

/// Turns a `dispatch` return value back into a `Result` (for kernel callers and tests).
pub fn decode(rax: u64) -> Result<u64, Errno> {
    let signed = rax as i64;
    if (-4095..0).contains(&signed) {
        let n = -signed as i32;
        Err(errno_from_number(n).unwrap_or(Errno::EINVAL))
    } else {
        Ok(rax)
    }
}

fn errno_from_number(n: i32) -> Option<Errno> {
    use Errno::*;
    [EPERM, ENOENT, ESRCH, EINTR, EIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST,
     ENOTDIR, EISDIR, EINVAL, EMFILE, ENOTTY, ENOSPC, ESPIPE, ERANGE, ENAMETOOLONG, ENOSYS, ETIMEDOUT]
        .into_iter()
        .find(|e| e.number() == n)
}
