//! Every CPU at work: finding the processors (the ACPI MADT), starting them, and what each does
//! once it is up. The mechanism — APIC, trampoline, per-CPU tables, NMI — is
//! `arch::x86_64::{apic, smp}`; this module is the policy above it.
//!
//! At boot ([`discover`]) the MADT is read through the RSDP the bootloader found, with the pure
//! walker of the `firmware` crate; it gives the local APIC's address and the processors. After
//! the boot CPU is fully set up, [`start_other_cpus`] starts the usable ones in MADT order,
//! one at a time, naming them with dense indexes 1, 2, … as they answer (a CPU that does not
//! answer is reported and left out). Each runs [`ap_main`]: an idle thread of its own, its
//! tick, and `sched::ap_idle_loop` — answering ticks and IPIs, running no threads until the
//! scheduler works across CPUs (issue #15 item 2).
//!
//! Locks: [`CPUS`] (a `spin::Once`, written once on the boot CPU) and [`LEFT_OUT`] (a `Mutex`
//! taken only on the boot CPU at boot and by the report; a leaf: nothing is taken under it).

use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::{Mutex, Once};

use crate::arch::x86_64::context::FrameSource;
use crate::arch::x86_64::percpu::{self, MAX_CPUS};
use crate::arch::x86_64::trap::{Ipi, TrapFrame};
use crate::arch::x86_64::{paging, smp as arch_smp, timer};
use crate::task::{self, Thread};

/// The local APIC's address when the firmware gives no MADT (the architectural default, SDM
/// Vol. 3A §10.4.1).
const DEFAULT_LAPIC: u64 = 0xfee0_0000;

/// What the MADT said: the local APIC's address and the APIC ids of the usable processors.
#[derive(Debug, Clone)]
pub struct Cpus {
    pub local_apic_address: u64,
    pub apic_ids: Vec<u32>,
}

static CPUS: Once<Cpus> = Once::new();
/// The processors that did not come up, and why.
static LEFT_OUT: Mutex<Vec<(u32, arch_smp::StartError)>> = Mutex::new(Vec::new());
/// The boot thread, whose process and address space every idle thread shares.
static BOOT_THREAD: Once<Arc<Thread>> = Once::new();

/// Reads the MADT through the RSDP at physical `rsdp` (from the bootloader). Without one, or
/// with a table that does not parse, the machine is taken to have one CPU with its APIC at the
/// default address (and the reason is logged).
pub fn discover(rsdp: Option<u64>) -> &'static Cpus {
    CPUS.call_once(|| {
        let read = |address: u64, len: usize| paging::firmware_bytes(address, len);
        let found = rsdp
            .ok_or(firmware::acpi::Error::NotFound)
            .and_then(|rsdp| firmware::acpi::find_table(read(rsdp, 36).or_else(|| read(rsdp, 20)).unwrap_or(&[]), read, b"APIC"))
            .and_then(firmware::madt::Madt::parse);
        match found {
            Ok(madt) => Cpus {
                local_apic_address: madt.local_apic_address,
                apic_ids: madt.processors().filter(|p| p.usable()).map(|p| p.apic_id).collect(),
            },
            Err(e) => {
                crate::log_warn!("no usable ACPI MADT ({e:?}): one CPU, local APIC at {DEFAULT_LAPIC:#x}");
                Cpus { local_apic_address: DEFAULT_LAPIC, apic_ids: Vec::new() }
            }
        }
    })
}

/// Starts every other usable processor of the MADT through the trampoline frame (reserved
/// below 0xA0000 at boot), one at a time. The boot thread (current on this CPU) is what their
/// idle threads share. The boot CPU depends on none of them.
pub fn start_other_cpus(trampoline: Option<x86_64::structures::paging::PhysFrame>) {
    BOOT_THREAD.call_once(task::current);
    let Some(cpus) = CPUS.get() else { return };
    let boot_apic = percpu::cpu(0).apic_id.load(core::sync::atomic::Ordering::Relaxed);
    let frames = FrameSource { alloc: crate::mm::frame::alloc, free: crate::mm::frame::free };
    let mut next = 1;
    for &apic_id in cpus.apic_ids.iter().filter(|&&id| id != boot_apic) {
        let result = match trampoline {
            None => Err(arch_smp::StartError::NoMemory),
            Some(_) if next >= MAX_CPUS => Err(arch_smp::StartError::NoMemory),
            Some(frame) => arch_smp::start_ap(next, apic_id, frame, frames),
        };
        match result {
            Ok(()) => next += 1,
            Err(e) => LEFT_OUT.lock().push((apic_id, e)),
        }
    }
}

/// What a CPU other than the boot CPU runs once its tables are loaded (the hook the arch layer
/// calls): its idle thread, its tick, then the idle loop.
pub fn ap_main(_cpu: usize) -> ! {
    let boot = BOOT_THREAD.get().expect("an AP came up before start_other_cpus");
    task::install_idle_thread(Thread::idle_for_another_cpu(boot));
    timer::start();
    task::sched::ap_idle_loop()
}

/// The IPI hook (`trap::Hooks::ipi`): the arch layer has sent the EOI and counted it.
pub fn ipi(frame: &mut TrapFrame, ipi: Ipi) {
    match ipi {
        Ipi::Reschedule => task::sched::reschedule_ipi(frame.interrupted_user_mode()),
        Ipi::TlbShootdown => crate::mm::tlb::shootdown_ipi(),
    }
    if frame.interrupted_user_mode() {
        task::sched::kernel_exit(frame);
    }
}

/// The boot report's line: `cpus: 4 online (APIC ids 0 1 2 3)`, and any that did not answer.
pub fn report() {
    use core::fmt::Write;
    let mut ids = alloc::string::String::new();
    let online: Vec<&percpu::PerCpu> = percpu::online_cpus().collect();
    for cpu in &online {
        let _ = write!(ids, " {}", cpu.apic_id.load(core::sync::atomic::Ordering::Relaxed));
    }
    crate::log_info!("cpus: {} online (APIC ids{ids})", online.len());
    for (apic_id, why) in LEFT_OUT.lock().iter() {
        crate::log_warn!("cpu with APIC id {apic_id} left out: {why:?}");
    }
}
