//! The 16550 UART on COM1 (I/O port 0x3f8): the wire the console writes to.
//!
//! QEMU connects it to `-serial stdio`, so whatever the kernel writes here appears on the
//! terminal that ran `make run`. Polled, transmit only: the kernel never reads the console.

use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// The UART registers, offsets from the base port.
struct Uart {
    data: Port<u8>,
    interrupt_enable: Port<u8>,
    fifo_control: Port<u8>,
    line_control: Port<u8>,
    modem_control: Port<u8>,
    line_status: Port<u8>,
}

/// Line-status bit: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

static UART: Mutex<Uart> = Mutex::new(Uart {
    data: Port::new(COM1),
    interrupt_enable: Port::new(COM1 + 1),
    fifo_control: Port::new(COM1 + 2),
    line_control: Port::new(COM1 + 3),
    modem_control: Port::new(COM1 + 4),
    line_status: Port::new(COM1 + 5),
});

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on.
pub fn init() {
    let mut u = UART.lock();
    // SAFETY: COM1 is the standard PC serial port; these writes only configure the UART and
    // touch no memory.
    unsafe {
        u.interrupt_enable.write(0x00); // polled: no UART interrupts
        u.line_control.write(0x80); // DLAB on: the next two registers are the divisor
        u.data.write(0x01); // divisor 1 = 115200 baud (low byte)
        u.interrupt_enable.write(0x00); // (high byte)
        u.line_control.write(0x03); // DLAB off, 8N1
        u.fifo_control.write(0xc7); // enable and clear FIFOs
        u.modem_control.write(0x03); // DTR + RTS
    }
}

/// Writes bytes, waiting for the transmitter before each one.
pub fn write_bytes(bytes: &[u8]) {
    let mut u = UART.lock();
    for &b in bytes {
        // SAFETY: reading the line status and writing the data register of COM1 has no effect
        // beyond the UART.
        unsafe {
            while u.line_status.read() & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            u.data.write(b);
        }
    }
}

/// Releases the UART lock unconditionally. Only the panic path calls this, so that a panic
/// raised while the lock was held can still print its report.
pub fn force_unlock() {
    // SAFETY: called on the panic path with interrupts off on a single CPU: whoever held the
    // lock will never run again, so nobody else can be inside the critical section.
    unsafe { UART.force_unlock() }
}
