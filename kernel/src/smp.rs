//! Every CPU at work: finding the processors (the ACPI MADT), starting them, and what each does
//! once it is up. The mechanism — APIC, trampoline, per-CPU tables, NMI — is
//! `arch::x86_64::{apic, smp}`; this module is the policy above it.
//!
//! At boot ([`discover`]) the MADT is read through the RSDP the bootloader found, with the pure
//! walker of the `firmware` crate; it gives the local APIC's address and the processors. After
//! the boot CPU is fully set up, [`start_other_cpus`] starts the usable ones in MADT order,
//! one at a time, naming them with dense indexes 1, 2, … as they answer (a CPU that does not
//! answer is reported and left out). Each runs [`ap_main`]: an idle thread of its own, its
//! tick (until its first idle turn stops it), and `sched::ap_idle_loop` — which runs whatever
//! thread of the shared run queue it may, and halts, tickless, until an IPI wakes it.
//!
//! Locks: [`CPUS`] (a `spin::Once`, written once on the boot CPU) and [`LEFT_OUT`] (a `Mutex`
//! taken only on the boot CPU at boot and by the report; a leaf: nothing is taken under it).

use alloc::sync::Arc;
use alloc::vec::Vec;
use crate::sync::Mutex;
use spin::Once;

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

/// The ACPI table with `signature` (checked: length, checksum), found through the RSDP at
/// physical `rsdp` and read through the physical-memory window: for the MADT here and the
/// SRAT/SLIT of `mm::numa`.
pub fn acpi_table(rsdp: Option<u64>, signature: &[u8; 4]) -> Result<&'static [u8], firmware::acpi::Error> {
    let read = |address: u64, len: usize| paging::firmware_bytes(address, len);
    let rsdp = rsdp.ok_or(firmware::acpi::Error::NotFound)?;
    firmware::acpi::find_table(read(rsdp, 36).or_else(|| read(rsdp, 20)).unwrap_or(&[]), read, signature)
}

/// Reads the MADT through the RSDP at physical `rsdp` (from the bootloader). Without one, or
/// with a table that does not parse, the machine is taken to have one CPU with its APIC at the
/// default address (and the reason is logged).
pub fn discover(rsdp: Option<u64>) -> &'static Cpus {
    CPUS.call_once(|| {
        let found = acpi_table(rsdp, b"APIC").and_then(firmware::madt::Madt::parse);
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
    crate::arch::x86_64::ipi::set_sender(|cpu, ipi| {
        let vector = match ipi {
            crate::arch::x86_64::ipi::Ipi::Reschedule => crate::arch::x86_64::apic::RESCHEDULE_VECTOR,
            crate::arch::x86_64::ipi::Ipi::Shootdown => crate::arch::x86_64::apic::TLB_SHOOTDOWN_VECTOR,
        };
        arch_smp::send_ipi(cpu, vector);
    });
    let Some(cpus) = CPUS.get() else { return };
    let boot_apic = percpu::cpu(0).apic_id.load(core::sync::atomic::Ordering::Relaxed);
    let frames = FrameSource { alloc: crate::mm::frame::alloc, free: crate::mm::frame::free };
    let mut next = 1;
    for &apic_id in cpus.apic_ids.iter().filter(|&&id| id != boot_apic) {
        let result = match trampoline {
            None => Err(arch_smp::StartError::NoLowFrame),
            Some(_) if next >= MAX_CPUS => Err(arch_smp::StartError::TooMany),
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
    // One tick before the first idle turn stops it again (idle CPUs are tickless): proof, for
    // the boot report and the tests, that this CPU's timer works.
    while percpu::this_cpu().ticks.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
    task::sched::ap_idle_loop()
}

/// The IPI hook (`trap::Hooks::ipi`): the arch layer has sent the EOI and counted it.
pub fn ipi(frame: &mut TrapFrame, ipi: Ipi) {
    match ipi {
        Ipi::Reschedule => task::sched::reschedule_ipi(frame.interrupted_user_mode()),
        Ipi::TlbShootdown => crate::arch::x86_64::shootdown::serve(),
    }
    if frame.interrupted_user_mode() {
        task::sched::kernel_exit(frame);
    }
}

/// The end-of-run line with every CPU's tick count (`ticks per CPU: 0:1234 1:1300 …`), with
/// several CPUs only.
pub fn report_ticks() {
    use core::fmt::Write;
    if percpu::online_cpus().count() < 2 {
        return;
    }
    let mut line = alloc::string::String::new();
    for cpu in percpu::online_cpus() {
        let _ = write!(line, " {}:{}", cpu.cpu_id, cpu.ticks.load(core::sync::atomic::Ordering::Relaxed));
    }
    crate::log_info!("ticks per CPU (index:count):{line}, {} µs since boot", crate::arch::x86_64::time::micros_since_boot());
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
    for cpu in online.iter().skip(1) {
        if let Some(r) = arch_smp::bring_up_record(cpu.cpu_id as usize) {
            crate::log_debug!(
                "cpu {} (APIC id {}) came up with EFER {:#x} CR0 {:#x} CR4 {:#x} XCR0 {:#x} PAT {:#x} PKRU {:x?}, GS base {:#x} (kernel GS base {:#x}), TSC {} after the boot CPU's start ({})",
                cpu.cpu_id, r.apic_id, r.efer, r.cr0, r.cr4, r.xcr0, r.pat, r.pkru, r.gs_base, r.kernel_gs_base, r.tsc, r.tsc_at_start
            );
        }
    }
    for (apic_id, why) in LEFT_OUT.lock().iter() {
        crate::log_warn!("cpu with APIC id {apic_id} left out: {why:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::{apic, cpu, gdt, time};
    use core::sync::atomic::Ordering;
    use ktest_macros::ktest;
    use x86_64::registers::control::{Cr0, Cr4};
    use x86_64::registers::model_specific::{Efer, GsBase};
    use crate::arch::x86_64::time::wait_until;

    fn others() -> Vec<&'static percpu::PerCpu> {
        let me = percpu::this_cpu().cpu_id;
        percpu::online_cpus().filter(|c| c.cpu_id != me).collect()
    }

    #[ktest(needs = smp)]
    fn every_cpu_answers_a_reschedule_and_a_shootdown_ipi() {
        for cpu in others() {
            let (id, resched, shoot) = (cpu.cpu_id as usize, cpu.reschedule_ipis.load(Ordering::Relaxed), cpu.shootdown_ipis.load(Ordering::Relaxed));
            let served = crate::arch::x86_64::shootdown::SERVED.of(id);
            assert!(arch_smp::send_ipi(id, apic::RESCHEDULE_VECTOR), "CPU {id}: reschedule IPI not sent");
            assert!(arch_smp::send_ipi(id, apic::TLB_SHOOTDOWN_VECTOR), "CPU {id}: shootdown IPI not sent");
            assert!(wait_until(1000, || cpu.reschedule_ipis.load(Ordering::Relaxed) > resched), "CPU {id} took no reschedule IPI");
            assert!(wait_until(1000, || cpu.shootdown_ipis.load(Ordering::Relaxed) > shoot), "CPU {id} took no shootdown IPI");
            // A real request: `shoot` returns only once that CPU has served it.
            let page = percpu::cpu(id) as *const percpu::PerCpu as u64 & !0xfff;
            crate::arch::x86_64::shootdown::shoot(1 << id, None, page, page + 4096);
            assert!(crate::arch::x86_64::shootdown::SERVED.of(id) > served, "CPU {id} served no shootdown request");
        }
        assert!(!arch_smp::send_ipi(MAX_CPUS, apic::RESCHEDULE_VECTOR), "an IPI to a CPU index out of range is refused");
    }

    #[ktest(needs = smp)]
    fn every_cpu_has_its_own_gs_base_tss_and_ist_stacks() {
        let mut seen: Vec<u64> = Vec::new();
        for cpu in percpu::online_cpus() {
            let id = cpu.cpu_id as usize;
            let gs_base = if id == 0 {
                GsBase::read().as_u64()
            } else {
                let r = arch_smp::bring_up_record(id).expect("an AP without a bring-up record");
                assert_eq!(r.kernel_gs_base, 0, "CPU {id}: IA32_KERNEL_GS_BASE");
                assert_eq!(r.apic_id, cpu.apic_id.load(Ordering::Relaxed), "CPU {id}: the APIC id it saw");
                r.gs_base
            };
            assert_eq!(gs_base, cpu as *const percpu::PerCpu as u64, "CPU {id}: GS base is its own PerCpu");
            let (tss, ist) = gdt::tss_of(id);
            for address in [gs_base, tss, ist.double_fault, ist.nmi] {
                assert!(address != 0, "CPU {id}: an address is 0");
                assert!(!seen.contains(&address), "CPU {id}: {address:#x} is shared with another CPU");
                seen.push(address);
            }
        }
        assert!(seen.len() >= 8);
    }

    #[ktest(needs = smp)]
    fn every_ap_came_up_protected_with_the_default_pkru() {
        const EFER_SCE: u64 = 1 << 0;
        const EFER_LMA: u64 = 1 << 10;
        const EFER_NXE: u64 = 1 << 11;
        const CR0_WP: u64 = 1 << 16;
        const CR4_OSFXSR: u64 = 1 << 9;
        const CR4_OSXSAVE: u64 = 1 << 18;
        const CR4_SMEP: u64 = 1 << 20;
        const CR4_SMAP: u64 = 1 << 21;
        const CR4_PKE: u64 = 1 << 22;
        let f = cpu::features();
        for cpu in others() {
            let id = cpu.cpu_id as usize;
            let r = arch_smp::bring_up_record(id).expect("an AP without a bring-up record");
            assert_eq!(r.efer & (EFER_SCE | EFER_LMA | EFER_NXE), EFER_SCE | EFER_LMA | EFER_NXE, "CPU {id}: EFER {:#x}", r.efer);
            assert_eq!(r.efer, Efer::read_raw(), "CPU {id}: EFER differs from the boot CPU's");
            assert!(r.cr0 & CR0_WP != 0, "CPU {id}: CR0.WP");
            assert!(r.cr4 & CR4_OSFXSR != 0, "CPU {id}: CR4.OSFXSR");
            assert_eq!(r.cr4 & CR4_OSXSAVE != 0, f.xsave, "CPU {id}: CR4.OSXSAVE");
            assert_eq!(r.cr4 & CR4_SMEP != 0, f.smep, "CPU {id}: CR4.SMEP");
            assert_eq!(r.cr4 & CR4_SMAP != 0, f.smap, "CPU {id}: CR4.SMAP");
            assert_eq!(r.cr4 & CR4_PKE != 0, f.pku, "CPU {id}: CR4.PKE");
            assert_eq!(r.cr4, Cr4::read_raw(), "CPU {id}: CR4 {:#x} differs from the boot CPU's {:#x}", r.cr4, Cr4::read_raw());
            // Also: caching on (CD and NW clear; INIT sets both, SDM Vol. 3A Table 9-1).
            assert_eq!(r.cr0, Cr0::read_raw(), "CPU {id}: CR0 {:#x} differs from the boot CPU's {:#x}", r.cr0, Cr0::read_raw());
            if f.xsave {
                assert_eq!(r.xcr0, x86_64::registers::xcontrol::XCr0::read_raw(), "CPU {id}: XCR0");
            }
            assert_eq!(r.pat, arch_smp::boot_pat(), "CPU {id}: PAT differs from the boot CPU's");
            let expected_pkru = if cpu::ospke() { Some(pkeys::Pkru::INIT.bits()) } else { None };
            assert_eq!(r.pkru, expected_pkru, "CPU {id}: PKRU after bring-up");
            // One clock: the AP's TSC, read after the boot CPU read its own before the
            // start-up IPIs, is not behind it (`time::micros_since_boot` on any CPU).
            assert!(r.tsc >= r.tsc_at_start, "CPU {id}: TSC {} behind the boot CPU's {}", r.tsc, r.tsc_at_start);
        }
    }

    #[ktest]
    fn the_apic_timer_ticks_on_every_cpu() {
        // The other CPUs ticked from their bring-up on, until they first went idle: an idle
        // CPU stops its tick (`sched::idle_once`), so a halted one must *not* tick now.
        for cpu in others() {
            assert!(cpu.ticks.load(Ordering::Relaxed) > 0, "CPU {}: its APIC timer never ticked", cpu.cpu_id);
        }
        let idle: Vec<(usize, u64)> = others().iter().map(|c| (c.cpu_id as usize, c.ticks.load(Ordering::Relaxed))).collect();
        // This CPU: its tick on for a moment (the in-kernel suite runs without one), halting
        // with interrupts on until a few ticks came.
        let me = percpu::this_cpu();
        let mine = me.ticks.load(Ordering::Relaxed);
        apic::timer_start_periodic();
        let deadline = time::rdtsc() + time::tsc_per_ms() * 1000;
        while me.ticks.load(Ordering::Relaxed) < mine + 3 && time::rdtsc() < deadline {
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
        }
        apic::timer_stop();
        assert!(me.ticks.load(Ordering::Relaxed) >= mine + 3, "this CPU's APIC timer did not tick");
        // A few of this CPU's ticks later (≥ 750 µs at 4 kHz), the idle CPUs have taken none
        // (a wake-up on the way to the halt may still count one).
        for (id, ticks) in idle {
            let now = percpu::cpu(id).ticks.load(Ordering::Relaxed);
            assert!(now <= ticks + 1, "CPU {id}: ticked {} times while idle (tickless idle expected)", now - ticks);
        }
    }

    #[ktest(needs = smp)]
    fn an_nmi_without_a_panic_is_counted_and_returns() {
        for cpu in others() {
            let id = cpu.cpu_id as usize;
            let before = arch_smp::nmis(id);
            assert!(apic::send_nmi(cpu.apic_id.load(Ordering::Relaxed)), "CPU {id}: NMI not sent");
            assert!(wait_until(1000, || arch_smp::nmis(id) > before), "CPU {id}: the NMI was not counted");
            // It returned: the CPU still answers an ordinary IPI.
            let resched = cpu.reschedule_ipis.load(Ordering::Relaxed);
            assert!(arch_smp::send_ipi(id, apic::RESCHEDULE_VECTOR));
            assert!(wait_until(1000, || cpu.reschedule_ipis.load(Ordering::Relaxed) > resched), "CPU {id} stopped after an NMI");
        }
    }

    /// The panic path's first step, taken alone: every other CPU halts on the stop NMI and
    /// answers nothing afterwards. It ends the boot (its CPUs are gone) with the panic it
    /// expects; the harness goes on in a fresh boot.
    #[ktest(needs = smp, panics = "every other CPU halted")]
    fn stopping_the_other_cpus_halts_every_one_of_them() {
        let others = others();
        let before: Vec<u64> = others.iter().map(|c| c.reschedule_ipis.load(Ordering::Relaxed)).collect();
        assert_eq!(arch_smp::stop_other_cpus(), others.len(), "not every CPU reported halting");
        for (cpu, before) in others.iter().zip(before) {
            arch_smp::send_ipi(cpu.cpu_id as usize, apic::RESCHEDULE_VECTOR);
            assert!(
                !wait_until(100, || cpu.reschedule_ipis.load(Ordering::Relaxed) > before),
                "CPU {} still takes interrupts after the stop NMI",
                cpu.cpu_id
            );
        }
        panic!("every other CPU halted ({} of them)", others.len());
    }

    #[ktest]
    fn the_boot_report_counts_the_cpus_the_madt_lists() {
        let listed = CPUS.get().expect("discover ran").apic_ids.len().max(1);
        let online = percpu::online_cpus().count();
        let left_out = LEFT_OUT.lock().len();
        assert_eq!(online + left_out, listed.min(MAX_CPUS), "every usable CPU is online or reported left out");
        assert!(online >= 1);
    }
}
