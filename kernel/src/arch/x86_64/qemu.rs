//! Ending QEMU: the `isa-debug-exit` device.
//!
//! The exit-code table lives in [`bootproto::exit`], shared with the host that interprets it.

use bootproto::exit::{ExitCode, PORT};
use x86_64::instructions::port::Port;

/// Ends QEMU with `code`. If no exit device is present (real hardware, or QEMU without
/// `-device isa-debug-exit`), halts forever instead.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device (the host always adds it); writing it
    // ends the emulator. On a machine without it the write goes nowhere.
    unsafe { Port::<u32>::new(PORT).write(code as u32) };
    super::halt_forever()
}
