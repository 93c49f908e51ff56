//! How the kernel ends QEMU, and what the host makes of it — the exit-code convention.
//!
//! QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`) ends the
//! emulator when the guest writes a value `v` to port [`PORT`]; QEMU's own exit status is then
//! `(v << 1) | 1`. An odd status therefore always comes from the kernel; status 0 means QEMU
//! ended some other way (with `-no-reboot`, a triple fault ends QEMU with 0).
//!
//! | kernel writes            | QEMU exits | meaning                                             |
//! |--------------------------|-----------:|-----------------------------------------------------|
//! | `Success` = 0x10         | 33         | normal power-off; all in-kernel tests passed        |
//! | `Failed` = 0x11          | 35         | the in-kernel test run finished with failures       |
//! | `Panic` = 0x12           | 37         | kernel panic (in test mode: a test panicked; the runner boots again after it) |
//! | (nothing)                | 0          | triple fault (`-no-reboot`) or power-off by other means |
//!
//! `boot` turns these into its own process status: 0 for `Success`, 1 otherwise.

/// The I/O port of the `isa-debug-exit` device.
pub const PORT: u16 = 0xf4;

/// The values the kernel writes to [`PORT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything went as planned.
    Success = 0x10,
    /// Some in-kernel tests failed.
    Failed = 0x11,
    /// The kernel panicked.
    Panic = 0x12,
}

/// What a QEMU exit status says about the kernel's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel wrote this exit code.
    Kernel(ExitCode),
    /// QEMU exited with 0: a triple fault under `-no-reboot`, or an outside power-off.
    NoExitDevice,
    /// A status no kernel path produces (QEMU itself failed, or was killed).
    Unknown(i32),
}

impl ExitCode {
    /// The status QEMU exits with after the kernel wrote `self`.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// Interprets QEMU's exit status.
pub fn classify(qemu_status: i32) -> Outcome {
    for code in [ExitCode::Success, ExitCode::Failed, ExitCode::Panic] {
        if code.qemu_status() == qemu_status {
            return Outcome::Kernel(code);
        }
    }
    if qemu_status == 0 {
        Outcome::NoExitDevice
    } else {
        Outcome::Unknown(qemu_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_qemus_rule() {
        // Measured on this QEMU: writing 0x10 makes it exit with 33.
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        assert_eq!(classify(33), Outcome::Kernel(ExitCode::Success));
        assert_eq!(classify(35), Outcome::Kernel(ExitCode::Failed));
        assert_eq!(classify(37), Outcome::Kernel(ExitCode::Panic));
        assert_eq!(classify(0), Outcome::NoExitDevice);
        assert_eq!(classify(1), Outcome::Unknown(1));
    }
}
