//! Time since boot from the TSC, calibrated once against the PIT.
//!
//! The time-stamp counter counts at a constant rate (Intel SDM Vol. 3B §17.15 "Time-Stamp
//! Counter"); its rate is not architecturally known, so at boot we count TSC ticks across a
//! 10 ms interval measured by PIT channel 2 (the 8254's 1.193182 MHz clock, gated through port
//! 0x61 — the classic PC speaker-gate trick, no interrupt needed). Under QEMU `-icount shift=0`
//! the TSC advances one tick per guest instruction, which is what the benchmarks rely on.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

/// Reads the TSC (SDM Vol. 2B "RDTSC—Read Time-Stamp Counter").
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear, so it is allowed in ring 0 and has no
    // side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC rate against PIT channel 2. Call once, early, with interrupts off.
pub fn calibrate() {
    let ticks = measure_against_pit(CALIBRATION_MS, rdtsc);
    TSC_PER_MS.store((ticks / CALIBRATION_MS).max(1), Ordering::Relaxed);
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// How far `counter` advances during `ms` milliseconds measured by PIT channel 2 — the one
/// stopwatch both the TSC and the local APIC timer ([`super::apic`]) are calibrated with.
/// Interrupts off; the PIT is the machine's, so one CPU at a time (boot, and the BSP only).
pub fn measure_against_pit(ms: u64, counter: impl Fn() -> u64) -> u64 {
    let count = (PIT_HZ * ms / 1000).min(u64::from(u16::MAX)) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x43/0x42 are the PC's PIT gate and channel 2; programming channel 2
    // (the speaker channel, speaker output disabled) touches nothing else.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x03) | 0x01); // gate channel 2 on, speaker off (a rising gate reloads)
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count)
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let start = counter();
        // Bit 5 of port 0x61 mirrors channel 2's output, which goes high at terminal count.
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        counter().wrapping_sub(start)
    }
}

/// TSC ticks per millisecond (0 before [`calibrate`]).
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Microseconds since [`calibrate`] ran (0 before).
pub fn micros_since_boot() -> u64 {
    let per_ms = TSC_PER_MS.load(Ordering::Relaxed);
    if per_ms == 0 {
        return 0;
    }
    let ticks = rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed));
    (ticks as u128 * 1000 / per_ms as u128) as u64
}

/// Spins (interrupts as they are) until `done()` or `ms` milliseconds have passed; `false` on
/// the timeout. For the in-kernel tests that wait for another CPU (an IPI answered, an NMI
/// counted).
#[cfg(test)]
pub fn wait_until(ms: u64, done: impl Fn() -> bool) -> bool {
    let deadline = rdtsc() + tsc_per_ms() * ms;
    while !done() {
        if rdtsc() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}
