//! x86-64: registers, instructions, descriptor tables, exception entry, page-table writes.
//!
//! Intel SDM citations are to the June 2016 edition (Vol. 1 253665-059US, Vol. 2 325383-059US,
//! Vol. 3 325384-059US), with section and table titles so that a reader with a newer edition
//! can find them (see `docs/ARCHITECTURE.md`, "Which SDM").
//!
//! | module       | what it owns                                        | Intel SDM (June 2016)        |
//! |--------------|-----------------------------------------------------|------------------------------|
//! | [`allocator`]| the kernel heap's `GlobalAlloc` (its policy: `mm::heap`) | —                        |
//! | [`serial`]   | the 16550 UART on COM1, the console's wire          | —                            |
//! | [`qemu`]     | ending QEMU through `isa-debug-exit`                 | —                            |
//! | [`time`]     | the TSC, calibrated against the PIT                  | Vol. 3B §17.15               |
//! | [`rtc`]      | the CMOS clock, read once for CLOCK_REALTIME         | —                            |
//! | [`cpu`]      | CPUID features, CR4 (PKE, SMEP, SMAP), OSPKE         | Vol. 3A §2.5, §4.1.3; Vol. 2A CPUID |
//! | [`gdt`]      | each CPU's GDT, TSS and IST stacks (double fault, NMI) | Vol. 3A §3.4.5, §7.2.3, §7.7 |
//! | [`trap`]     | IDT, exception entry stubs, the trap frame, reports  | Vol. 3A §6.14, §6.15         |
//! | [`extable`]  | recoverable instructions (Linux's exception table)   | —                            |
//! | [`pkru`]     | RDPKRU / WRPKRU                                      | Vol. 3A §2.7; Vol. 2B, 2C    |
//! | [`pks`]      | CR4.PKS, IA32_PKRS, the page-table write window      | Vol. 3A §4.6.2 (a newer edition: see "Which SDM") |
//! | [`paging`]   | page-table writes, CR3, TLB invalidation             | Vol. 3A §4.5, §4.10          |
//! | [`uaccess`]  | kernel accesses to user memory (STAC/CLAC + extable) | Vol. 3A §4.6                 |
//! | [`percpu`]   | per-CPU data reached through GS                      | Vol. 3A §3.4.4               |
//! | [`ipi`]      | inter-processor interrupts by purpose               | —                            |
//! | [`shootdown`]| asking other CPUs to invalidate TLB entries, waiting | Vol. 3A §4.10.5              |
//! | [`sync`]     | the kernel's spin locks (they serve shootdowns)      | Vol. 2B PAUSE                |
//! | [`pic`]      | the legacy 8259s, remapped and masked                | —                            |
//! | [`syscall`]  | SYSCALL entry, SYSRET/IRET exit                      | Vol. 3A §5.8.8               |
//! | [`context`]  | kernel stacks, the context switch                    | —                            |
//! | [`fpu`]      | XSAVE/XRSTOR of user FPU state (PKRU masked out)     | Vol. 1 ch. 13                |
//! | [`timer`]    | each CPU's tick (its local APIC timer)               | Vol. 3A §10.5.4              |
//! | [`apic`]     | the local APIC (xAPIC): EOI, timer, IPIs             | Vol. 3A ch. 10               |
//! | [`smp`]      | starting the other CPUs; the panic NMI               | Vol. 3A §8.4, §9.8.5         |
pub mod allocator;
pub mod apic;
pub mod context;
pub mod cpu;
pub mod extable;
pub mod fpu;
pub mod gdt;
pub mod ipi;
pub mod paging;
pub mod percpu;
pub mod pic;
pub mod pks;
pub mod pkru;
pub mod qemu;
pub mod rtc;
pub mod serial;
pub mod shootdown;
pub mod sync;
pub mod smp;
pub mod syscall;
pub mod time;
pub mod timer;
pub mod trap;
pub mod uaccess;

/// The ramdisk the bootloader loaded (the cpio archive `boot` packed), or an empty slice.
pub fn boot_ramdisk(boot_info: &bootloader_api::BootInfo) -> &'static [u8] {
    match boot_info.ramdisk_addr.into_option() {
        // SAFETY: the bootloader mapped the ramdisk at this address for `ramdisk_len` bytes and
        // never unmaps it; pikku never writes it.
        Some(addr) if boot_info.ramdisk_len > 0 => unsafe {
            core::slice::from_raw_parts(addr as *const u8, boot_info.ramdisk_len as usize)
        },
        _ => &[],
    }
}

/// Stops the CPU until the next interrupt, forever. Used after the kernel has nothing left to
/// do and QEMU did not end (e.g. no exit device).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
