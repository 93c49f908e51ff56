//! Per-CPU data, reached through the GS segment base.
//!
//! Each CPU owns one [`PerCpu`]; its address is written to IA32_GS_BASE (Intel SDM Vol. 3A
//! §3.4.4.x "Segment loading in 64-bit mode", MSR 0xC000_0101), and the structure's first word
//! points at itself, so `mov rax, gs:[0]` yields the structure from any context without a
//! global "current CPU" variable. pikku boots one CPU today; when more come, each gets its own
//! `PerCpu` and its own GS base, and nothing above this module changes.
//!
//! The SYSCALL entry stub reaches two fields by fixed offset (`gs:[8]`, the kernel stack top;
//! `gs:[16]`, a scratch slot for the user RSP), which is why the structure is `repr(C)` and why
//! those fields are atomics: assembly writes them behind Rust's back.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

/// One CPU's private data. `repr(C)`: assembly reaches fields by offset.
#[repr(C)]
pub struct PerCpu {
    /// This structure's own address (offset 0): `gs:[0]`.
    self_ptr: AtomicU64,
    /// Kernel stack top for entries from user mode (offset 8).
    pub kernel_stack_top: AtomicU64,
    /// Scratch slot for the user RSP during SYSCALL entry (offset 16; written by the stub).
    pub user_rsp_scratch: AtomicU64,
    /// This CPU's number.
    pub cpu_id: u32,
    /// The thread id this CPU runs (0 = none yet). The thread itself is found through
    /// `task::current()`, which keeps its own per-CPU slot behind a lock.
    pub current_tid: AtomicU32,
}

static BSP: PerCpu = PerCpu {
    self_ptr: AtomicU64::new(0),
    kernel_stack_top: AtomicU64::new(0),
    user_rsp_scratch: AtomicU64::new(0),
    cpu_id: 0,
    current_tid: AtomicU32::new(0),
};

/// Sets up the boot CPU's per-CPU area and points GS at it.
pub fn init_boot_cpu() {
    let ptr = &BSP as *const PerCpu;
    BSP.self_ptr.store(ptr as u64, Ordering::Release);
    GsBase::write(VirtAddr::from_ptr(ptr));
}

/// Records the kernel stack top for SYSCALL entries from user mode (`gs:[8]`).
pub fn set_kernel_stack_top(top: u64) {
    this_cpu().kernel_stack_top.store(top, Ordering::Relaxed);
}

/// This CPU's per-CPU area.
pub fn this_cpu() -> &'static PerCpu {
    let ptr: *const PerCpu;
    // SAFETY: after `init_boot_cpu`, gs:[0] holds the address of a `PerCpu` that lives forever.
    // The read has no side effects.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    assert!(!ptr.is_null(), "per-CPU data used before percpu::init_boot_cpu");
    // SAFETY: non-null and pointing at a 'static PerCpu (see above).
    unsafe { &*ptr }
}

impl PerCpu {
    /// Records which thread runs here (for reports).
    pub fn set_current_tid(&self, tid: u32) {
        self.current_tid.store(tid, Ordering::Relaxed);
    }
}
