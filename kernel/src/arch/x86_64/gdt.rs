//! The GDT, the TSS, and the stack a double fault runs on.
//!
//! In 64-bit mode segmentation is mostly gone, but the CPU still needs (Intel SDM Vol. 3A §3.4.5
//! "Segment Descriptors", §7.2.3 "TSS Descriptor in 64-bit mode"): a code segment for each
//! privilege level, a data segment, and a TSS — which no longer holds task state, only stack
//! pointers: RSP0 (the stack ring 3 → ring 0 transitions switch to) and the Interrupt Stack Table
//! (IST, §6.14.5 "Interrupt Stack Table"), seven known-good stacks an IDT gate can demand. The
//! double-fault gate uses IST slot 0, so a kernel stack overflow (which faults again while pushing
//! the exception frame) still reaches a handler that prints a report.
//!
//! The segment order is fixed by SYSCALL/SYSRET (§5.8.8): kernel code, kernel data; then user
//! data, user code, because SYSRET loads SS = `STAR[63:48]+8` and CS = `STAR[63:48]+16`. pikku uses
//! Linux's x86-64 layout exactly (`arch/x86/include/asm/segment.h`), so user programs see the
//! same selectors — in `%cs`, and in every signal frame's `sigcontext`:
//!
//! | index | selector | segment |
//! |---|---|---|
//! | 1 | 0x08 | kernel 32-bit code (unused) |
//! | 2 | 0x10 | kernel code |
//! | 3 | 0x18 | kernel data |
//! | 4 | 0x23 | user 32-bit code (unused: SYSRET's base) |
//! | 5 | 0x2b | user data |
//! | 6 | 0x33 | user code |
//! | 7 | 0x38 | TSS (two slots) |

use core::cell::UnsafeCell;
use spin::Lazy;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// The IST slot (0-based, as the `x86_64` crate counts) of the double-fault stack.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
const DOUBLE_FAULT_STACK_SIZE: usize = 5 * 4096;

/// The double-fault stack. Aligned so the frame the CPU pushes is 16-byte aligned.
#[repr(align(16))]
struct Stack(#[allow(dead_code)] [u8; DOUBLE_FAULT_STACK_SIZE]); // used only through its address
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; DOUBLE_FAULT_STACK_SIZE]);

/// The TSS. The CPU reads it from memory on every ring 3 → ring 0 transition, and the scheduler
/// rewrites RSP0 on every switch, so it lives in an [`UnsafeCell`] rather than behind a lock.
struct Tss(UnsafeCell<TaskStateSegment>);

// SAFETY: only the CPU that owns this TSS writes it ([`set_kernel_stack`], with interrupts off
// during a switch); the hardware reads it. One CPU today; each CPU will get its own TSS.
unsafe impl Sync for Tss {}

static TSS: Lazy<Tss> = Lazy::new(|| {
    let mut tss = TaskStateSegment::new();
    let start = VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK);
    tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = start + DOUBLE_FAULT_STACK_SIZE as u64;
    Tss(UnsafeCell::new(tss))
});

/// User code selector (GDT index 6, RPL 3: Linux's `__USER_CS`), as SYSRET and IRET load it.
pub const USER_CS: u16 = 0x30 | 3;
/// User data/stack selector (GDT index 5, RPL 3: Linux's `__USER_DS`).
pub const USER_SS: u16 = 0x28 | 3;
/// Kernel code selector (Linux's `__KERNEL_CS`); `STAR[47:32]`.
pub const KERNEL_CS: u16 = 0x10;
/// Base for SYSRET (`STAR[63:48]`): SS = base + 8, CS = base + 16 (SDM Vol. 2B "SYSRET—Return From
/// Fast System Call").
pub const SYSRET_BASE: u16 = 0x20;

/// Sets the stack the CPU switches to when an interrupt or exception arrives from ring 3
/// (TSS.RSP0, SDM Vol. 3A §7.7 "Task Management in 64-bit Mode", Figure 7-11 "64-Bit TSS Format") —
/// the current thread's kernel stack.
pub fn set_kernel_stack(top: u64) {
    // SAFETY: see `Tss`: this CPU's own TSS, written between instructions that could read it
    // (we are in ring 0, so no ring transition reads RSP0 concurrently).
    unsafe { (*TSS.0.get()).privilege_stack_table[0] = VirtAddr::new(top) };
}

/// The selectors the rest of the kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub tss: SegmentSelector,
}

static GDT: Lazy<(GlobalDescriptorTable<10>, Selectors)> = Lazy::new(|| {
    let mut gdt = GlobalDescriptorTable::<10>::empty();
    // 0x08: a 32-bit kernel code segment, as in Linux's table (never loaded).
    gdt.append(Descriptor::UserSegment(0x00cf_9b00_0000_ffff));
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    // 0x23: 32-bit user code (SYSRET's base slot; pikku runs no 32-bit code).
    gdt.append(Descriptor::UserSegment(0x00cf_fb00_0000_ffff));
    gdt.append(Descriptor::user_data_segment());
    gdt.append(Descriptor::user_code_segment());
    // SAFETY: the TSS lives forever; the descriptor only records its address and size.
    let tss = gdt.append(Descriptor::tss_segment(unsafe { &*TSS.0.get() }));
    (gdt, Selectors { kernel_code, kernel_data, tss })
});

/// Loads the GDT and the TSS and reloads the segment registers.
pub fn init() {
    GDT.0.load();
    let sel = GDT.1;
    debug_assert_eq!(sel.kernel_code.0, KERNEL_CS);
    // SAFETY: the selectors come from the GDT just loaded and describe valid 64-bit kernel
    // code/data segments and an available TSS that lives forever (static).
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        // LTR (SDM Vol. 2A "LTR"; Vol. 3A §7.7: 64-bit mode still needs a loaded TSS).
        load_tss(sel.tss);
    }
}

/// The selectors (valid after [`init`]).
pub fn selectors() -> Selectors {
    GDT.1
}
