//! The scheduler's clock: PIT channel 0 on IRQ 0, at [`HZ`] ticks per second.
//!
//! The 8254 PIT counts down from a divisor at 1.193182 MHz and raises IRQ 0 each time it
//! reaches zero (mode 2, rate generator). pikku uses it rather than the local APIC timer
//! because it needs no calibration and behaves the same under every QEMU CPU model; the TSC
//! (see [`super::time`]) still measures time precisely. Each tick: acknowledge the PIC
//! (end of interrupt), then let the scheduler decide (wake sleepers; preempt user code).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// Ticks per second: a 250-µs tick, which is also the round-robin slice. High for a kernel
/// (Linux uses 250–1000), so that preemption is frequent even under emulation.
pub const HZ: u64 = 4000;
const PIT_HZ: u64 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// Microseconds between heartbeat lines (the `heartbeat=` boot option); 0 = none.
static HEARTBEAT_US: AtomicU64 = AtomicU64::new(0);
/// When the next heartbeat line is due (microseconds since boot).
static NEXT_BEAT_US: AtomicU64 = AtomicU64::new(0);

/// Programs PIT channel 0 and unmasks IRQ 0 on the master PIC.
pub fn start() {
    let divisor = (PIT_HZ / HZ) as u16;
    let mut command = Port::<u8>::new(0x43);
    let mut channel0 = Port::<u8>::new(0x40);
    let mut mask = Port::<u8>::new(0x21);
    // SAFETY: ports 0x43/0x40 program the PIT's channel 0 (mode 2, lobyte/hibyte); port 0x21
    // is the master PIC's mask register, where clearing bit 0 lets IRQ 0 through.
    unsafe {
        command.write(0b0011_0100);
        channel0.write(divisor as u8);
        channel0.write((divisor >> 8) as u8);
        let m = mask.read();
        mask.write(m & !1);
    }
}

/// Acknowledges an interrupt from the master PIC (EOI).
pub fn end_of_interrupt() {
    // SAFETY: writing 0x20 to the master PIC's command port signals end of interrupt.
    unsafe { Port::<u8>::new(0x20).write(0x20) };
}

/// Counts a tick (the count is shown in the scheduler's report).
pub fn tick() -> u64 {
    TICKS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Applies the `heartbeat=SECS` boot option.
pub fn set_heartbeat(secs: u32) {
    HEARTBEAT_US.store(u64::from(secs) * 1_000_000, Ordering::Relaxed);
}

/// Is a heartbeat line due now? Measured on the TSC clock, not in ticks: under emulation ticks
/// that arrive while interrupts are off are merged, so counting them would run slow.
pub fn heartbeat_due() -> bool {
    let every = HEARTBEAT_US.load(Ordering::Relaxed);
    if every == 0 {
        return false;
    }
    let now = super::time::micros_since_boot();
    let next = NEXT_BEAT_US.load(Ordering::Relaxed);
    if now < next {
        return false;
    }
    NEXT_BEAT_US.store(now.saturating_add(every), Ordering::Relaxed);
    true
}

/// Ticks since [`start`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Stops this CPU's tick while it halts idle (an idle CPU needs none: an IPI wakes it). The
/// PIT is CPU 0's, which always ticks, so there is nothing to stop yet on the others.
pub fn stop_this_cpu() {}

/// Restarts this CPU's tick when it leaves the idle loop's halt.
pub fn start_this_cpu() {}
