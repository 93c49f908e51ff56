//! Each CPU's GDT and TSS, and the stacks a double fault and an NMI run on.
//!
//! In 64-bit mode segmentation is mostly gone, but the CPU still needs (Intel SDM Vol. 3A §3.4.5
//! "Segment Descriptors", §7.2.3 "TSS Descriptor in 64-bit mode"): a code segment for each
//! privilege level, a data segment, and a TSS — which no longer holds task state, only stack
//! pointers: RSP0 (the stack ring 3 → ring 0 transitions switch to) and the Interrupt Stack Table
//! (IST, §6.14.5 "Interrupt Stack Table"), seven known-good stacks an IDT gate can demand. The
//! double-fault gate uses IST slot 0, so a kernel stack overflow (which faults again while pushing
//! the exception frame) still reaches a handler that prints a report; the NMI gate uses slot 1
//! (see [`NMI_IST_INDEX`] for why). Every CPU has its own GDT and TSS (so its own RSP0 and IST
//! stacks), indexed by the dense CPU index.
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
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use super::percpu::MAX_CPUS;

/// The IST slot (0-based, as the `x86_64` crate counts) of the double-fault stack.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
/// The IST slot of the NMI stack. An NMI can arrive at *any* instruction — also the first
/// instructions of the SYSCALL entry, where RSP still holds the user's stack pointer and GS the
/// user's base (SYSCALL switches neither, SDM Vol. 3A §5.8.8). An interrupt from ring 0 does
/// not switch stacks (§6.14.2), so without an IST slot the CPU would push the NMI's frame onto
/// the user's stack. The IST slot makes the CPU always load a known-good stack (§6.14.5).
pub const NMI_IST_INDEX: u16 = 1;
const BOOT_IST_STACK_SIZE: usize = 5 * 4096;

/// The boot CPU's IST stacks (the other CPUs get guard-paged kernel stacks: see `smp`). Aligned
/// so the frame the CPU pushes is 16-byte aligned.
#[repr(align(16))]
struct Stack(#[allow(dead_code)] [u8; BOOT_IST_STACK_SIZE]); // used only through its address
static mut BOOT_DOUBLE_FAULT_STACK: Stack = Stack([0; BOOT_IST_STACK_SIZE]);
static mut BOOT_NMI_STACK: Stack = Stack([0; BOOT_IST_STACK_SIZE]);

/// A CPU's TSS. The CPU reads it from memory on every ring 3 → ring 0 transition, and the
/// scheduler rewrites RSP0 on every switch, so it lives in an [`UnsafeCell`] rather than behind
/// a lock.
struct Tss(UnsafeCell<TaskStateSegment>);

// SAFETY: each CPU writes only its own TSS (`init_cpu` before loading it, `set_kernel_stack`
// with interrupts off during a switch); the hardware reads it. No CPU touches another's.
unsafe impl Sync for Tss {}

/// One TSS per CPU, indexed by the dense CPU index (a TSS descriptor is marked busy once
/// loaded, so CPUs cannot share one: SDM Vol. 3A §7.2.3).
static TSS: [Tss; MAX_CPUS] = [const { Tss(UnsafeCell::new(TaskStateSegment::new())) }; MAX_CPUS];

/// One GDT per CPU (each holds its own CPU's TSS descriptor), made by [`init_cpu`].
static GDT: [Once<(GlobalDescriptorTable<10>, Selectors)>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// The tops of the two IST stacks a CPU gets.
#[derive(Debug, Clone, Copy)]
pub struct IstStacks {
    pub double_fault: u64,
    pub nmi: u64,
}

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
/// the current thread's kernel stack — in *this* CPU's TSS.
pub fn set_kernel_stack(top: u64) {
    let cpu = super::percpu::this_cpu().cpu_id as usize;
    // SAFETY: see `Tss`: this CPU's own TSS, written between instructions that could read it
    // (we are in ring 0, so no ring transition reads RSP0 concurrently).
    unsafe { (*TSS[cpu].0.get()).privilege_stack_table[0] = VirtAddr::new(top) };
}

/// The selectors the rest of the kernel needs.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub tss: SegmentSelector,
}

fn build(cpu: usize, ist: IstStacks) -> (GlobalDescriptorTable<10>, Selectors) {
    // SAFETY: `init_cpu` for `cpu` runs once (the `Once` around this call), on that CPU, before
    // its TSS is loaded: nothing else reads or writes this TSS yet.
    let tss = unsafe { &mut *TSS[cpu].0.get() };
    tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = VirtAddr::new(ist.double_fault);
    tss.interrupt_stack_table[NMI_IST_INDEX as usize] = VirtAddr::new(ist.nmi);
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
    let tss = gdt.append(Descriptor::tss_segment(unsafe { &*TSS[cpu].0.get() }));
    (gdt, Selectors { kernel_code, kernel_data, tss })
}

/// The boot CPU's IST stacks (static: it needs them before there is a frame allocator).
pub fn boot_ist_stacks() -> IstStacks {
    let top = |stack: *const Stack| VirtAddr::from_ptr(stack).as_u64() + BOOT_IST_STACK_SIZE as u64;
    IstStacks { double_fault: top(&raw const BOOT_DOUBLE_FAULT_STACK), nmi: top(&raw const BOOT_NMI_STACK) }
}

/// Builds CPU `cpu`'s GDT and TSS (with `ist`), loads them and reloads the segment registers.
/// Once per CPU, on that CPU. Loading a segment register clears the GS base, so the per-CPU
/// base is written after this (`percpu::init_cpu`).
pub fn init_cpu(cpu: usize, ist: IstStacks) {
    let (gdt, sel) = GDT[cpu].call_once(|| build(cpu, ist));
    gdt.load();
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

/// The selectors (the same on every CPU; valid after the boot CPU's [`init_cpu`]).
pub fn selectors() -> Selectors {
    GDT[0].get().expect("gdt::init_cpu(0) not called").1
}

/// CPU `cpu`'s TSS address and its IST stack tops (double fault, NMI), for tests.
#[cfg(test)] // used by the in-kernel tests only
pub fn tss_of(cpu: usize) -> (u64, IstStacks) {
    let tss = TSS[cpu].0.get();
    // SAFETY: the IST slots are written once by `init_cpu`, before the CPU came up (which the
    // caller waited for); only RSP0 changes afterwards, and it is not read here.
    let ist = unsafe { (*tss).interrupt_stack_table };
    (tss as u64, IstStacks { double_fault: ist[0].as_u64(), nmi: ist[1].as_u64() })
}
