//! What happens when the kernel panics.
//!
//! The kernel is built with `panic = "abort"`: there is no unwinding, so a panic is the end of
//! this boot. The handler prints the message and location on the console (as an `error` log
//! line, which `log=quiet` still shows), tells the test harness if a test was running, and ends
//! QEMU with `ExitCode::Panic` — it never hangs. With several CPUs, the first to panic stops the
//! others first (an NMI each: `arch::x86_64::smp::stop_other_cpus`), so that it is alone when it
//! breaks the console's lock; a second CPU that panics meanwhile just halts.

use bootproto::exit::ExitCode;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::x86_64::{apic, qemu, serial, smp};

/// The APIC id + 1 of the CPU that is reporting a panic (0: none).
static PANICKING: AtomicU32 = AtomicU32::new(0);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    // Which CPU this is, without per-CPU data (a panic may come from anywhere).
    let me = if apic::ready() { apic::id() + 1 } else { 1 };
    if let Err(first) = PANICKING.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
        if first == me {
            // A panic while reporting a panic: print nothing more, just stop.
            qemu::exit(ExitCode::Panic);
        }
        // Another CPU is reporting its panic and will end QEMU (its NMI may not have come yet).
        crate::arch::x86_64::halt_forever();
    }
    // Stop the other CPUs, then break the UART lock: the panic may have interrupted a
    // half-written line on this CPU, or another CPU (now halted) may have held it.
    smp::stop_other_cpus();
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
