//! # pikku — a small x86-64 kernel about memory protection keys
//!
//! This file is the boot sequence, one readable step after another. Where things live:
//!
//! * `arch::x86_64` — every hardware access (and almost every `unsafe`): serial, CPUID/CR4,
//!   GDT/IDT, exception stubs, fault recovery, RDPKRU/WRPKRU, page tables.
//! * `mm` — frames, the heap, address spaces (`Mm`: page tables + the key allocation map).
//! * `task` — threads and the PKRU part of a context switch.
//! * `syscall` — Linux's numbers → handlers (`pkey_alloc`, `pkey_free`, …).
//! * `ktest` — the in-kernel test harness (`#[ktest]` functions, in the test build).
//! * the `pkeys` crate — the protection-key rules themselves, pure and host-tested.
//!
//! The bootloader (rust-osdev `bootloader` 0.11) enters [`kernel_main`] in 64-bit mode with
//! paging on, interrupts off, the kernel, its stack, the boot info and a map of all physical
//! memory placed in the upper half (see [`BOOTLOADER_CONFIG`]).
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(crate::ktest::runner)]
#![reexport_test_harness_main = "test_main"]
// Until user mode arrives, several services (user copies, syscall dispatch, address-space
// editing) are exercised only by the test build; the plain build would warn about each.
#![cfg_attr(not(test), allow(dead_code))]

extern crate alloc;

mod arch;
mod console;
mod ktest;
mod mm;
mod panic;
mod report;
mod syscall;
mod task;
#[cfg(test)]
mod tests;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};
use bootproto::exit::ExitCode;
use bootproto::options::{BootOptions, Mode, CMDLINE_PATH};
use spin::Once;

use arch::x86_64::{cpu, gdt, paging, percpu, qemu, serial, time, trap};

/// Where the bootloader puts things: everything it maps for the kernel goes to the upper half
/// (from `0xffff_8000_0000_0000`), so the whole lower half stays free for user space.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.dynamic_range_start = Some(0xffff_8000_0000_0000);
    config.kernel_stack_size = 256 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

static BOOT_OPTIONS: Once<BootOptions<'static>> = Once::new();

/// The boot options (defaults until the ramdisk has been read).
pub fn boot_options() -> BootOptions<'static> {
    BOOT_OPTIONS.get().copied().unwrap_or_default()
}

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    // 1. A console, and a clock for its timestamps.
    serial::init();
    time::calibrate();

    // 2. The boot options, from the ramdisk `boot` packed.
    let ramdisk = arch::x86_64::boot_ramdisk(boot_info);
    let options = read_boot_options(ramdisk);
    console::set_log_level(options.log);
    log_info!("pikku booting (ramdisk {} bytes, tsc {} kHz)", ramdisk.len(), time::tsc_per_ms());

    // 3. The CPU's tables: segments and the TSS, exception handlers, per-CPU data.
    gdt::init();
    trap::init();
    percpu::init_boot_cpu();

    // 4. Memory: the page tables the bootloader built, free frames, the heap.
    let phys_offset = boot_info.physical_memory_offset.into_option().expect("bootloader gave no physical-memory mapping");
    paging::init(phys_offset);
    mm::frame::init(&boot_info.memory_regions);
    mm::heap::init();

    // 5. Protection: supervisor writes honour read-only pages and PKRU's WD bits (CR0.WP),
    //    and protection keys are switched on where the CPU has them (CR4.PKE).
    cpu::enable_write_protect();
    let support = cpu::enable_protection_keys();
    log_debug!("protection keys: {:?}", support);

    // 6. A first thread in a fresh address space, with a new program's PKRU (0x55555554).
    let mm = mm::address_space::Mm::new().expect("no memory for the first address space").into_ref();
    task::install_boot_thread(task::Thread::new_program(mm));

    // 7. Say what we found.
    report::print(&boot_info.memory_regions, boot_info.kernel_image_offset);

    // 8. Do what the options ask.
    match options.mode {
        Mode::Run => {
            log_info!("nothing more to run yet: powering off");
            qemu::exit(ExitCode::Success)
        }
        Mode::Test => run_tests(),
    }
}

fn read_boot_options(ramdisk: &'static [u8]) -> BootOptions<'static> {
    let text = match bootproto::cpio::find(ramdisk, CMDLINE_PATH) {
        Ok(Some(entry)) => core::str::from_utf8(entry.data).unwrap_or_else(|_| {
            log_warn!("{CMDLINE_PATH} is not UTF-8; using defaults");
            ""
        }),
        Ok(None) => "",
        Err(e) => {
            log_warn!("ramdisk unreadable ({e:?}); using default options");
            ""
        }
    };
    let options = BootOptions::parse(text, |unknown| log_warn!("unknown boot option '{}' ignored", unknown.0));
    *BOOT_OPTIONS.call_once(|| options)
}

#[cfg(test)]
fn run_tests() -> ! {
    test_main();
    // The runner ends QEMU itself; reaching here means it returned early.
    qemu::exit(ExitCode::Failed)
}

#[cfg(not(test))]
fn run_tests() -> ! {
    log_error!("mode=test, but this kernel was built without tests (use the test build)");
    qemu::exit(ExitCode::Failed)
}
