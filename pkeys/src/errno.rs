//! Linux's error numbers (x86-64, `include/uapi/asm-generic/errno-base.h` and `errno.h`).
//!
//! Syscall handlers return `Result<u64, Errno>`; the syscall table turns `Err(e)` into the
//! register value `-(e as i64)`, exactly what Linux returns and what libc turns into `errno`.

/// A Linux error number. The discriminant is the number Linux uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    E2BIG = 7,
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    EMFILE = 24,
    ENOTTY = 25,
    ENOSPC = 28,
    ESPIPE = 29,
    EPIPE = 32,
    EROFS = 30,
    ERANGE = 34,
    ENAMETOOLONG = 36,
    ENOSYS = 38,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    ETIMEDOUT = 110,
    /// Kernel-internal (never seen by user space): "interrupted by a signal; restart the call
    /// if the handler has `SA_RESTART`, or if no handler runs" (Linux `-ERESTARTSYS`). The
    /// kernel exit turns it into `EINTR` or a restart.
    ERESTARTSYS = 512,
    /// Kernel-internal: "restart only if no handler runs, else `EINTR`" (`-ERESTARTNOHAND`:
    /// `pause`).
    ERESTARTNOHAND = 514,
    /// Kernel-internal: "if no handler runs, continue through `restart_syscall` (219) with the
    /// state the call left; else `EINTR`" (`-ERESTART_RESTARTBLOCK`: sleeps with a deadline).
    #[allow(non_camel_case_types)] // Linux's name
    ERESTART_RESTARTBLOCK = 516,
}

/// Every [`Errno`], for reverse lookups.
const ALL: [Errno; 34] = [
    Errno::EPERM, Errno::ENOENT, Errno::ESRCH, Errno::EINTR, Errno::EIO, Errno::E2BIG, Errno::ENOEXEC,
    Errno::EBADF, Errno::ECHILD, Errno::EAGAIN, Errno::ENOMEM, Errno::EACCES, Errno::EFAULT, Errno::EBUSY,
    Errno::EEXIST, Errno::ENODEV, Errno::ENOTDIR, Errno::EISDIR, Errno::EINVAL, Errno::EMFILE, Errno::ENOTTY,
    Errno::ENOSPC, Errno::ESPIPE, Errno::EPIPE, Errno::EROFS, Errno::ERANGE, Errno::ENAMETOOLONG, Errno::ENOSYS,
    Errno::EOVERFLOW, Errno::EOPNOTSUPP, Errno::ETIMEDOUT, Errno::ERESTARTSYS, Errno::ERESTARTNOHAND,
    Errno::ERESTART_RESTARTBLOCK,
];

impl Errno {
    /// The positive error number (what `errno` holds in user space).
    pub const fn number(self) -> i32 {
        self as i32
    }

    /// The value a syscall returns in `rax` for this error: `-errno` as a 64-bit word.
    pub const fn to_syscall_return(self) -> u64 {
        (-(self as i64)) as u64
    }

    /// The [`Errno`] with Linux number `n`, if pikku knows it.
    pub fn from_number(n: i32) -> Option<Errno> {
        ALL.into_iter().find(|e| e.number() == n)
    }

    /// Reads a syscall return value: `Err` for -4095..-1 (Linux's error range), `Ok` otherwise.
    #[inline]
    pub fn from_syscall_return(rax: u64) -> Result<u64, Errno> {
        let signed = rax as i64;
        if (-4095..0).contains(&signed) {
            Err(Errno::from_number(-signed as i32).unwrap_or(Errno::EINVAL))
        } else {
            Ok(rax)
        }
    }

    /// The symbolic name, as `strerrorname_np` gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::EMFILE => "EMFILE",
            Errno::ENOTTY => "ENOTTY",
            Errno::ENOSPC => "ENOSPC",
            Errno::ESPIPE => "ESPIPE",
            Errno::EPIPE => "EPIPE",
            Errno::EROFS => "EROFS",
            Errno::ERANGE => "ERANGE",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOSYS => "ENOSYS",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ERESTARTSYS => "ERESTARTSYS",
            Errno::ERESTARTNOHAND => "ERESTARTNOHAND",
            Errno::ERESTART_RESTARTBLOCK => "ERESTART_RESTARTBLOCK",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_linuxs() {
        // Spot checks against include/uapi/asm-generic/errno{-base}.h.
        assert_eq!(Errno::EINVAL.number(), 22);
        assert_eq!(Errno::ENOSPC.number(), 28);
        assert_eq!(Errno::ENOSYS.number(), 38);
        assert_eq!(Errno::EFAULT.to_syscall_return(), (-14i64) as u64);
        assert_eq!(Errno::ENOMEM.to_string(), "ENOMEM (12)");
        assert_eq!(Errno::EROFS.number(), 30);
        for e in ALL {
            assert_eq!(Errno::from_number(e.number()), Some(e));
            assert_eq!(Errno::from_syscall_return(e.to_syscall_return()), Err(e));
        }
        assert_eq!(Errno::from_syscall_return(0x40_0000), Ok(0x40_0000));
    }
}
