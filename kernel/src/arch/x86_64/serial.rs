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

/// Releases the UART lock unconditionally. Only the panic path calls this, so that a panic
/// raised while the lock was held can still print its report.
pub fn force_unlock() {
    // SAFETY: called on the panic path with interrupts off on a single CPU: whoever held the
    // lock will never run again, so nobody else can be inside the critical section.
    unsafe { UART.force_unlock() }
}
