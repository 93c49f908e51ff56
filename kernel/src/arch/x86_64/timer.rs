//! The scheduler's clock: each CPU's local APIC timer, at [`HZ`] ticks per second.
//!
//! The tick used to be PIT channel 0 on IRQ 0 through the 8259; with several CPUs each needs a
//! tick of its own, which only its local APIC timer gives ([`super::apic`]: calibrated once
//! against PIT channel 2, periodic, on vector 32 — where IRQ 0 arrived, so the trap path is
//! unchanged). The 8259s stay remapped and fully masked (`pic`). The TSC (see [`super::time`])
//! still measures time precisely. Each tick: end of interrupt to the local APIC, then let the
//! scheduler decide (wake sleepers; preempt user code).

use core::sync::atomic::{AtomicU64, Ordering};

use super::{apic, percpu};

/// Ticks per second: a 250-µs tick, which is also the round-robin slice. High for a kernel
/// (Linux uses 250–1000), so that preemption is frequent even under emulation.
pub const HZ: u64 = 4000;

/// Microseconds between heartbeat lines (the `heartbeat=` boot option); 0 = none.
static HEARTBEAT_US: AtomicU64 = AtomicU64::new(0);
/// When the next heartbeat line is due (microseconds since boot).
static NEXT_BEAT_US: AtomicU64 = AtomicU64::new(0);

/// Starts this CPU's periodic tick.
pub fn start() {
    apic::timer_start_periodic();
}

/// Acknowledges the interrupt being handled (EOI to this CPU's local APIC).
pub fn end_of_interrupt() {
    apic::end_of_interrupt();
}

/// Counts a tick on this CPU (the boot CPU's count is shown in the scheduler's report).
pub fn tick() -> u64 {
    percpu::this_cpu().ticks.fetch_add(1, Ordering::Relaxed) + 1
}

/// Applies the `heartbeat=SECS` boot option.
pub fn set_heartbeat(secs: u32) {
    HEARTBEAT_US.store(u64::from(secs) * 1_000_000, Ordering::Relaxed);
}

/// Is a heartbeat line due now? Measured on the TSC clock, not in ticks: under emulation ticks
/// that arrive while interrupts are off are merged, so counting them would run slow.
pub fn heartbeat_due() -> bool {
    if percpu::this_cpu().cpu_id != 0 {
        return false; // one CPU keeps the beat
    }
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

/// The boot CPU's ticks since [`start`] (the scheduler's clock).
pub fn ticks() -> u64 {
    percpu::cpu(0).ticks.load(Ordering::Relaxed)
}

/// Stops this CPU's tick while it halts idle (an idle CPU needs none: an IPI wakes it).
pub fn stop_this_cpu() {
    apic::timer_stop();
}

/// Restarts this CPU's tick when it leaves the idle loop's halt.
pub fn start_this_cpu() {
    apic::timer_start_periodic();
}
