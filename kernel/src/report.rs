//! The boot report: what machine this is and what pikku found (and switched on) for protection
//! keys. Printed at every boot at `log=info`.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};

use crate::arch::x86_64::{cpu, pks, pkru};
use crate::mm::{frame, heap};

/// Prints the report.
pub fn print(regions: &MemoryRegions, kernel_addr: u64) {
    let f = cpu::features();
    crate::log_info!(
        "cpu: {} \"{}\" family {:#x} model {:#x} stepping {}",
        cpu::text(&f.vendor),
        cpu::text(&f.brand),
        f.family,
        f.model,
        f.stepping
    );

    // Sizes by kind. "Bootloader" regions hold the kernel image, the bootloader's page tables,
    // the boot info and the ramdisk; "firmware" regions are reserved by the BIOS/UEFI (including
    // ACPI tables and MMIO the firmware reports).
    let (mut usable, mut bootloader, mut firmware) = (0u64, 0u64, 0u64);
    for r in regions.iter() {
        crate::log_debug!("  region {:#012x}..{:#012x} {:?}", r.start, r.end, r.kind);
        match r.kind {
            MemoryRegionKind::Usable => usable += r.end - r.start,
            MemoryRegionKind::Bootloader => bootloader += r.end - r.start,
            _ => firmware += r.end - r.start,
        }
    }
    crate::log_info!(
        "memory: {} regions: {} MiB usable, {} KiB used by the bootloader, {} MiB reserved (firmware, MMIO holes); \
         {} frames free after a {} MiB initial heap (it grows on demand to at most {} MiB)",
        regions.len(),
        usable >> 20,
        bootloader >> 10,
        firmware >> 20,
        frame::free_count(),
        heap::HEAP_INITIAL >> 20,
        heap::HEAP_LIMIT >> 20
    );
    crate::log_info!("kernel image at {:#x} (upper half: the lower half is left to user space)", kernel_addr);

    let yes = |b: bool| if b { "yes" } else { "no" };
    let pks = match pks::status() {
        pks::Status::Absent => alloc::string::String::from("no (CPUID.7.0:ECX[31])"),
        pks::Status::Off => alloc::string::String::from("yes (CPUID.7.0:ECX[31], not enabled: pks=off)"),
        pks::Status::Failed(why) => alloc::format!("yes (CPUID.7.0:ECX[31], not enabled: {why})"),
        pks::Status::Enabled { tables } => alloc::format!(
            "yes (CPUID.7.0:ECX[31], CR4.PKS {}, enabled, page tables guarded by key {}: {tables} at boot, IA32_PKRS {:#x} outside write windows)",
            if pks::cr4_pks() { "set" } else { "clear" },
            pks::PAGE_TABLE_KEY.index(),
            pks::PKRS_DEFAULT
        ),
    };
    crate::log_info!(
        "protection keys: PKU {} (CPUID.7.0:ECX[3]), OSPKE {} (CR4.PKE {}), PKS {pks}",
        yes(f.pku),
        yes(cpu::cpuid_ospke()),
        if cpu::cr4_pke() { "set" } else { "clear" },
    );
    if cpu::ospke() {
        let value = pkru::read();
        crate::log_info!("PKRU at boot (the default every program starts with): {:#010x} = {}", value.bits(), value.decode());
    } else {
        crate::log_info!("no PKRU: pkey_alloc will return ENOSPC, and no RDPKRU/WRPKRU will run");
    }
    crate::log_info!("other: SMEP {}, SMAP {}, XSAVE {}", yes(f.smep), yes(f.smap), yes(f.xsave));
}
