//! What happens when the kernel panics.
//!
//! The kernel is built with `panic = "abort"`: there is no unwinding, so a panic is the end of
//! this boot. The handler prints the message and location on the console (as an `error` log
//! line, which `log=quiet` still shows), tells the test harness if a test was running, and ends
//! QEMU with `ExitCode::Panic` — it never hangs.

use bootproto::exit::ExitCode;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::x86_64::{qemu, serial};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: print nothing more, just stop.
        qemu::exit(ExitCode::Panic);
    }
    // The panic may have interrupted a half-written line while the UART lock was held.
    serial::force_unlock();
    crate::println!();
    // In the test build the harness reports a panic inside a test as that test's FAILED line.
    #[cfg(test)]
    let reported = crate::ktest::report_panic(info);
    #[cfg(not(test))]
    let reported = false;
    if !reported {
        match info.location() {
            Some(loc) => crate::log_error!("KERNEL PANIC at {}:{}:{}: {}", loc.file(), loc.line(), loc.column(), info.message()),
            None => crate::log_error!("KERNEL PANIC: {}", info.message()),
        }
    }
    qemu::exit(ExitCode::Panic)
}
