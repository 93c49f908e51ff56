//! # pikku — a small x86-64 kernel about memory protection keys
//!
//! This file is the boot sequence, one readable step after another. Where things live:
//!
//! * [`arch::x86_64`] — every hardware access (and almost every `unsafe`): serial, CPUID/CR4,
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
// The house rules, checked by the compiler: `unsafe` (including `#[no_mangle]`,
// `#[export_name]`, `#[link_section]`, `unsafe extern` and `unsafe impl`) only in `arch`, which
// opts back in below; every `unsafe` block there carries a `// SAFETY:` comment.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[allow(unsafe_code)] // the one layer that touches hardware (see `arch`'s module doc)
mod arch;
pub use arch::x86_64::sync;
mod console;
mod fs;
#[cfg(test)]
mod ktest;
mod loader;
mod mm;
mod panic;
mod report;
mod signal;
mod smp;
mod syscall;
mod task;
#[cfg(test)]
mod tests;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};
use bootproto::exit::ExitCode;
use bootproto::options::{BootOptions, Mode, CMDLINE_PATH};
use spin::Once;

use arch::x86_64::{apic, cpu, gdt, paging, percpu, pic, qemu, rtc, serial, time, trap};

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
    arch::x86_64::timer::set_heartbeat(options.heartbeat);
    log_info!("pikku booting (ramdisk {} bytes, tsc {} kHz)", ramdisk.len(), time::tsc_per_ms());

    // 3. The CPU's tables: segments and the TSS (IST stacks for double faults and NMIs),
    //    exception handlers, per-CPU data (GS, after the segment loads).
    gdt::init_cpu(0, gdt::boot_ist_stacks());
    trap::init();
    percpu::init_boot_cpu();
    arch::x86_64::shootdown::init();

    // 4. Memory: the page tables the bootloader built, free frames, the heap.
    let phys_offset = boot_info.physical_memory_offset.into_option().expect("bootloader gave no physical-memory mapping");
    paging::init(phys_offset);
    // The NUMA nodes (ACPI SRAT, SLIT) first: the frame allocator counts each node's frames.
    mm::numa::init(boot_info.rsdp_addr.into_option());
    mm::frame::init(&boot_info.memory_regions);
    // The page other CPUs start in (real mode: below 1 MiB), taken before the heap takes
    // every low frame.
    let trampoline = mm::frame::alloc_below(0xa_0000);
    mm::heap::init();
    arch::x86_64::context::init_kernel_stacks(
        mm::frame::alloc().expect("no frame for the kernel stacks' PDPT"),
        arch::x86_64::context::FrameSource { alloc: mm::frame::alloc, free: mm::frame::free },
    );
    mm::frame::init_refcounts(&boot_info.memory_regions);
    mm::frame::init_zero_frame();
    if options.hugepages != 0 {
        // Linux's `hugepages=`: the pool is filled at boot, while memory is least fragmented.
        let reached = mm::hugetlb::set_nr_hugepages(options.hugepages);
        log_info!("huge pages: {reached} of 2 MiB in the pool (hugepages={} asked)", options.hugepages);
    }

    // 4b. The processors (ACPI MADT) and this CPU's local APIC, mapped uncached; its timer,
    //     calibrated against the PIT, will be the tick.
    let cpus = smp::discover(boot_info.rsdp_addr.into_option());
    apic::init(
        cpus.local_apic_address,
        mm::frame::alloc().expect("no frame for the device region's PDPT"),
        mm::frame::alloc,
    );
    apic::enable_this_cpu();
    arch::x86_64::smp::init_boot_cpu(smp::ap_main);
    let apic_per_ms = apic::calibrate_timer();
    log_debug!("local APIC at {:#x}: timer {} counts/ms (divided by 16)", cpus.local_apic_address, apic_per_ms);

    // 5. Protection: supervisor writes honour read-only pages and PKRU's WD bits (CR0.WP),
    //    protection keys are switched on where the CPU has them (CR4.PKE), and the kernel can
    //    neither run nor (outside the user-copy functions) touch user pages (SMEP, SMAP).
    cpu::enable_write_protect();
    let support = cpu::enable_protection_keys();
    let (smep, smap) = cpu::enable_smep_smap();
    log_debug!("protection keys: {:?}; SMEP {smep}, SMAP {smap}", support);
    // 5b. Supervisor protection keys guard the page tables (CR4.PKS, IA32_PKRS) where the CPU
    //     has them and `pks=off` does not say otherwise: every table is keyed first — the
    //     physical map split to 4-KiB pages wherever a table may live — then PKS goes on.
    let mut usable = boot_info
        .memory_regions
        .iter()
        .filter(|r| r.kind == bootloader_api::info::MemoryRegionKind::Usable)
        .map(|r| (r.start, r.end));
    let pks = arch::x86_64::pks::enable(options.pks, &mut usable, &mut mm::frame::alloc);
    log_debug!("supervisor protection keys: {pks:?}");

    // 6. What user programs need: SSE, the legacy PICs out of the way, the clock, the files,
    //    and the kernel's policy for system calls and user faults.
    cpu::enable_sse();
    let fpu = arch::x86_64::fpu::init();
    log_debug!("FPU state: {fpu:?}");
    pic::remap_and_mask();
    rtc::init();
    fs::ramdisk::init(ramdisk);
    trap::set_hooks(trap::Hooks {
        user_exception: task::fault::user_exception,
        kernel_fault_on_user_address: task::fault::kernel_fault_on_user_address,
        irq: task::interrupt,
        ipi: smp::ipi,
    });
    syscall::init();
    arch::x86_64::context::set_first_entry_hook(task::sched::first_entry);

    // 7. A first thread in a fresh address space, with a new program's PKRU (0x55555554).
    let mm = mm::address_space::Mm::new().expect("no memory for the first address space").into_ref();
    task::install_idle_thread(task::Thread::boot(mm));

    // 8. The other CPUs, one at a time: each comes up completely and idles (the boot CPU
    //    depends on none of them).
    smp::start_other_cpus(trampoline);

    // 9. Say what we found.
    report::print(&boot_info.memory_regions, boot_info.kernel_image_offset);
    smp::report();
    mm::numa::report();

    // 10. Do what the options ask.
    match options.mode {
        Mode::Run => run_init(),
        Mode::Test => run_tests(),
    }
}

/// Runs `/init` from the ramdisk (with the arguments in `pikku/argv` and the environment in
/// `pikku/envp`, NUL-separated, as `boot` packs them), waits for it, reports how it ended and
/// powers off. The report line — `init exited with status N` or `init killed by signal N
/// (NAME)` — is printed at every log level; `boot` turns it into its own exit status.
fn run_init() -> ! {
    let Ok(fs::Node::File { .. }) = fs::ramdisk::lookup(b"/init") else {
        log_info!("no /init in the ramdisk: nothing to run, powering off");
        qemu::exit(ExitCode::Success)
    };
    let list = |path: &[u8]| -> alloc::vec::Vec<&'static [u8]> {
        match fs::ramdisk::lookup(path) {
            Ok(fs::Node::File { file, .. }) => file.data.split(|&b| b == 0).filter(|s| !s.is_empty()).collect(),
            _ => alloc::vec::Vec::new(),
        }
    };
    let mut argv = list(b"/pikku/argv");
    if argv.is_empty() {
        argv.push(b"/init");
    }
    let envp = list(b"/pikku/envp");
    let before = MemoryBalance::now();
    let (process, thread) = match loader::spawn_process(b"/init", &argv, &envp) {
        Ok(p) => p,
        Err(e) => {
            console::announce(format_args!("init could not be started: {e}"));
            qemu::exit(ExitCode::Failed)
        }
    };
    log_info!("starting /init as pid {}", process.pid);
    task::sched::spawn(thread);
    arch::x86_64::timer::start();
    let status = task::sched::wait_for(&process);
    x86_64::instructions::interrupts::disable();
    drop(process);
    task::sched::release_spare_capacity();
    console::finish_user_output();
    let left: alloc::vec::Vec<u32> = task::process::all().iter().map(|p| p.pid).filter(|&pid| pid > 0).collect();
    let after = MemoryBalance::now();
    log_info!(
        "memory: {} frames free before /init was loaded, {} after it ended; the heap and the kernel-stack page tables held \
         {} frames before, {} after, with {} heap bytes in use before, {} after; processes left: {:?}",
        before.free_frames,
        after.free_frames,
        before.heap_frames,
        after.heap_frames,
        before.heap_bytes,
        after.heap_bytes,
        left
    );
    log_info!(
        "kernel stacks: {} in use, deepest use {} of {} bytes; tasks: {} (threads-max {})",
        arch::x86_64::context::kernel_stacks_in_use(),
        arch::x86_64::context::deepest_kernel_stack_use(),
        arch::x86_64::context::KERNEL_STACK_SIZE,
        task::limits::tasks(),
        task::limits::max_tasks()
    );
    log_info!(
        "scheduler: {} switches, {} preemptive ({} ticks at {} Hz); WRPKRU {} done, {} skipped by PKRU updates, {} by switches; {} migrations, {} idle CPUs woken; \
         TLB shootdowns: {} needed another CPU, {} requests served",
        task::SWITCHES.sum(),
        task::sched::PREEMPTIONS.sum(),
        arch::x86_64::timer::ticks(),
        arch::x86_64::timer::HZ,
        arch::x86_64::pkru::WRPKRU_DONE.sum(),
        arch::x86_64::pkru::WRPKRU_SKIPPED.sum(),
        // Every switch with OSPKE compares; those that did not write found the value there.
        if arch::x86_64::cpu::ospke() { task::SWITCHES.sum().saturating_sub(arch::x86_64::pkru::SWITCH_WRPKRU.sum()) } else { 0 },
        task::sched::MIGRATIONS.sum(),
        task::sched::KICKS.sum(),
        arch::x86_64::shootdown::SENT.sum(),
        arch::x86_64::shootdown::SERVED.sum(),
    );
    if arch::x86_64::pks::enabled() {
        log_info!("page tables: {} WRMSRs to IA32_PKRS (two per write window)", arch::x86_64::pks::WRMSR_DONE.sum());
    }
    crate::smp::report_ticks();
    match status {
        task::ExitStatus::Exited(code) => console::announce(format_args!("init exited with status {code}")),
        task::ExitStatus::Signaled(sig) => {
            console::announce(format_args!("init killed by signal {sig} ({})", signal::sig::name(sig)))
        }
    }
    qemu::exit(ExitCode::Success)
}

/// What a program must give back: free frames, and the heap's frames and bytes in use. (The
/// heap keeps pages it grew by, and the kernel-stack region the page tables it needed, so
/// "every frame back" means free + held frames are as before; both count as held. The free
/// pages of the huge-page pool count as free frames: a program may resize the pool, and what
/// it must give back is the pages it mapped.)
struct MemoryBalance {
    free_frames: usize,
    heap_frames: usize,
    heap_bytes: usize,
}

impl MemoryBalance {
    fn now() -> MemoryBalance {
        MemoryBalance {
            free_frames: mm::frame::free_count() + mm::hugetlb::free_hugepages() as usize * mm::frame::CONTIGUOUS_FRAMES,
            heap_frames: mm::heap::frames_held() + arch::x86_64::context::kernel_stack_table_frames(),
            heap_bytes: mm::heap::used(),
        }
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
