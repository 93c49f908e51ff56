//! Inter-processor interrupts the kernel sends, by purpose: the scheduler's reschedule (wake an
//! idle CPU, Linux `smp_send_reschedule()`) and the TLB shootdown ([`super::shootdown`]).
//!
//! How an IPI is delivered is the local APIC's business; this module is the one door the rest
//! of the kernel uses, so callers name *why* they interrupt another CPU, not how. Until the
//! APs are started no sender is installed, and there is no other CPU to send to.

/// Why another CPU is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipi {
    /// A thread it may run was queued: look at the run queue.
    Reschedule,
    /// Its shootdown mailbox has a request.
    Shootdown,
}

static SENDER: spin::Once<fn(usize, Ipi)> = spin::Once::new();

/// Installs the function that delivers an IPI to a CPU (by dense CPU index).
pub fn set_sender(send: fn(usize, Ipi)) {
    SENDER.call_once(|| send);
}

/// Sends `ipi` to CPU `cpu` (nothing before a sender is installed).
pub fn send(cpu: usize, ipi: Ipi) {
    if let Some(send) = SENDER.get() {
        send(cpu, ipi);
    }
}
