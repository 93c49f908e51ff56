//! The 16550 UART on COM1 (I/O port 0x3f8): the wire the console writes to.
//!
//! QEMU connects it to `-serial stdio`, so whatever the kernel writes here appears on the
//! terminal that ran `make run`. Polled, transmit only: the kernel never reads the console.
//!
//! The device itself is driven by rust-osdev's `uart_16550` crate (0.9: its only dependency is
//! `bitflags`, so it adds no second register library beside `x86_64`): it programs the divisor,
//! 8-N-1 and the FIFOs, checks that a UART answers at all, and sends up to a FIFO's worth of bytes
//! per "transmitter empty" poll. What stays here is pikku's policy: one lock around the port,
//! and a way for the panic path to break it.

use super::sync::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

const COM1: u16 = 0x3f8;

/// The console's UART, once [`init`] has found and programmed it. `None` before that, or if no
/// UART answered: the console then writes nowhere rather than spinning on absent hardware.
static UART: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, no UART
/// interrupts (the console polls).
pub fn init() {
    // SAFETY: COM1's eight registers at 0x3f8..0x400 are the standard PC serial port, present
    // for the kernel's whole life, and this module is their only user.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else { return };
    let config = Config { baud_rate: BaudRate::Baud115200, ..Config::DEFAULT };
    if uart.init(config).is_ok() {
        *UART.lock() = Some(uart);
    }
}

/// Writes bytes, waiting for the transmitter whenever its FIFO is full.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = UART.lock().as_mut() {
        uart.send_bytes_exact(bytes);
    }
}

/// Writes formatted text under one hold of the lock, so that lines from several CPUs never
/// interleave inside a line (the console hands whole lines to this).
pub fn write_fmt(args: core::fmt::Arguments) {
    struct Locked<'a>(&'a mut Uart16550<PioBackend>);
    impl core::fmt::Write for Locked<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.send_bytes_exact(s.as_bytes());
            Ok(())
        }
    }
    if let Some(uart) = UART.lock().as_mut() {
        let _ = core::fmt::Write::write_fmt(&mut Locked(uart), args);
    }
}

/// Releases the UART lock unconditionally. Only the panic path calls this, so that a panic
/// raised while the lock was held can still print its report.
pub fn force_unlock() {
    // SAFETY: called on the panic path with interrupts off, after every other CPU was stopped
    // (`smp::stop_other_cpus`): whoever held the lock will never run again, so nobody else can
    // be inside the critical section. (A CPU that did not answer the NMI within 100 ms could
    // still write: at worst its bytes mix with the report; nothing is freed or reused.)
    unsafe { UART.force_unlock() }
}
