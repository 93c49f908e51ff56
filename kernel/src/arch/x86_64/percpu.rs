//! Per-CPU data, reached through the GS segment base.
//!
//! Each CPU owns one [`PerCpu`]; its address is written to IA32_GS_BASE (Intel SDM Vol. 3A §3.4.4
//! "Segment Loading Instructions in IA-32e Mode", MSR 0xC000_0101), and the structure's first word
//! points at itself, so `mov rax, gs:[0]` yields the structure from any context without a global
//! "current CPU" variable. pikku boots one CPU today; when more come, each gets its own [`PerCpu`]
//! and its own GS base, and nothing above this module changes.
//!
//! The SYSCALL entry stub reaches two fields through GS (the kernel stack top, and a scratch slot
//! for the user RSP) at offsets it is handed as `offset_of!` constants; the structure is
//! `repr(C)` so that those offsets are fixed, and the fields are atomics because assembly
//! writes them behind Rust's back.

use alloc::sync::Arc;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

/// One CPU's private data. `repr(C)`: assembly reaches fields by offset.
#[repr(C)]
pub struct PerCpu {
    /// This structure's own address, so that one GS-relative load yields the structure.
    self_ptr: AtomicU64,
    /// Kernel stack top for entries from user mode (read by the SYSCALL entry stub).
    pub kernel_stack_top: AtomicU64,
    /// Scratch slot for the user RSP during SYSCALL entry (written by the stub).
    pub user_rsp_scratch: AtomicU64,
    /// This CPU's number.
    pub cpu_id: u32,
    /// The thread id this CPU runs (0 = none yet), for reports. The thread itself is found
    /// through `task::current()`, a `CpuLocalArc`.
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

/// Records the kernel stack top for SYSCALL entries from user mode.
pub fn set_kernel_stack_top(top: u64) {
    this_cpu().kernel_stack_top.store(top, Ordering::Relaxed);
}

/// This CPU's per-CPU area.
pub fn this_cpu() -> &'static PerCpu {
    let ptr: *const PerCpu;
    // SAFETY: after `init_boot_cpu`, the GS-relative `self_ptr` field holds the address of a
    // `PerCpu` that lives forever. The read has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {ptr}, gs:[{self_ptr}]",
            ptr = out(reg) ptr,
            self_ptr = const core::mem::offset_of!(PerCpu, self_ptr),
            options(nostack, readonly, preserves_flags),
        )
    };
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

/// How many CPUs the per-CPU tables have room for. pikku boots one.
pub const MAX_CPUS: usize = 1;

/// One `Arc<T>` per CPU that only its own CPU reads or replaces, always with interrupts off —
/// the shape of Linux's `current` (a per-CPU pointer to the running task, read with one `mov`
/// from `gs:`). Reading needs no lock because there is nobody to race with: another CPU never
/// touches this CPU's slot, and nothing else runs on this CPU in between, since interrupts are
/// off (the kernel is not preemptible; the checks below enforce it in debug builds). A read
/// costs one load and one reference-count increment.
pub struct CpuLocalArc<T> {
    slots: [AtomicPtr<T>; MAX_CPUS],
    /// Shared between CPUs like the `Arc<T>`s it holds (so only for `T: Send + Sync`).
    _holds: PhantomData<Arc<T>>,
}

impl<T> CpuLocalArc<T> {
    /// Every CPU's slot empty.
    pub const fn new() -> Self {
        CpuLocalArc { slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS], _holds: PhantomData }
    }

    fn slot(&self) -> &AtomicPtr<T> {
        debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "per-CPU slot used with interrupts on");
        &self.slots[this_cpu().cpu_id as usize]
    }

    /// A new reference to this CPU's value, if it has one.
    pub fn get(&self) -> Option<Arc<T>> {
        let ptr = self.slot().load(Ordering::Relaxed);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` came from `Arc::into_raw` in `replace`, and the slot still owns that
        // reference: only `replace`/`take` on this CPU give it up, and they cannot run before
        // this returns (interrupts are off; other CPUs never use this slot). So the count is at
        // least 1 while we add ours, and the `Arc` we make owns exactly the one we added.
        unsafe {
            Arc::increment_strong_count(ptr);
            Some(Arc::from_raw(ptr))
        }
    }

    /// Makes `value` this CPU's value; returns the previous one.
    pub fn replace(&self, value: Arc<T>) -> Option<Arc<T>> {
        Self::owned(self.slot().swap(Arc::into_raw(value).cast_mut(), Ordering::Relaxed))
    }

    /// Empties this CPU's slot; returns what it held.
    pub fn take(&self) -> Option<Arc<T>> {
        Self::owned(self.slot().swap(core::ptr::null_mut(), Ordering::Relaxed))
    }

    fn owned(ptr: *mut T) -> Option<Arc<T>> {
        // SAFETY: a non-null slot pointer came from `Arc::into_raw` and carries the slot's own
        // reference, which the swap that produced `ptr` has just handed to us.
        (!ptr.is_null()).then(|| unsafe { Arc::from_raw(ptr) })
    }
}

/// An event counter with one slot per CPU: each CPU adds to its own slot (no cache line
/// bounces, no lock), and a report sums them. Linux: `DEFINE_PER_CPU` counters read with
/// `for_each_possible_cpu`.
pub struct Counter {
    slots: [AtomicU64; MAX_CPUS],
}

impl Counter {
    /// Every slot zero.
    pub const fn new() -> Self {
        Counter { slots: [const { AtomicU64::new(0) }; MAX_CPUS] }
    }

    /// Adds `n` to this CPU's slot.
    pub fn add(&self, n: u64) {
        self.slots[this_cpu().cpu_id as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over every CPU.
    pub fn sum(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// This CPU's own count (what a test running on one CPU compares: other CPUs' events do
    /// not disturb it).
    pub fn here(&self) -> u64 {
        self.slots[this_cpu().cpu_id as usize].load(Ordering::Relaxed)
    }

    /// CPU `cpu`'s own count.
    pub fn of(&self, cpu: usize) -> u64 {
        self.slots.get(cpu).map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPUs that are up (bit = dense CPU index): the boot CPU from the start, each AP once it
/// runs kernel code. Targets of kernel-wide shootdowns and of "kick an idle CPU".
static ONLINE: AtomicU64 = AtomicU64::new(1);

/// The mask of online CPUs.
pub fn online_mask() -> u64 {
    ONLINE.load(Ordering::Acquire)
}

/// Marks CPU `cpu` online (an AP, once its per-CPU data works).
pub fn set_online(cpu: u32) {
    ONLINE.fetch_or(1 << cpu, Ordering::Release);
}
