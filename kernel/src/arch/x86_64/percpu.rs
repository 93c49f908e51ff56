//! Per-CPU data, reached through the GS segment base.
//!
//! Each CPU owns one [`PerCpu`] in a fixed array, named by its **dense CPU index** (0 for the
//! boot CPU, then 1, 2, … in the order the CPUs came up — not the APIC id, which may have
//! holes); its address is written to IA32_GS_BASE (Intel SDM Vol. 3A §3.4.4 "Segment Loading
//! Instructions in IA-32e Mode", MSR 0xC000_0101), and the structure's first word points at
//! itself, so `mov rax, gs:[0]` yields the structure from any context without a global
//! "current CPU" variable. IA32_KERNEL_GS_BASE (what SWAPGS exchanges it with) starts at 0.
//!
//! The SYSCALL entry stub reaches two fields through GS (the kernel stack top, and a scratch slot
//! for the user RSP) at offsets it is handed as `offset_of!` constants; the structure is
//! `repr(C)` so that those offsets are fixed, and the fields are atomics because assembly
//! writes them behind Rust's back. No lock: a CPU writes only its own structure; the counters
//! other CPUs read are atomics.

use alloc::sync::Arc;
use core::marker::PhantomData;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
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
    /// This CPU's dense index (0 = the boot CPU): what names per-CPU data.
    pub cpu_id: u32,
    /// This CPU's local APIC id (what IPIs are addressed to).
    pub apic_id: AtomicU32,
    /// Set once the CPU runs with all its tables loaded (it may then receive IPIs).
    pub online: AtomicBool,
    /// The thread id this CPU runs (0 = none yet), for reports. The thread itself is found
    /// through `task::current()`, a `CpuLocalArc`.
    pub current_tid: AtomicU32,
    /// The thread this CPU runs, borrowed: a raw copy of the pointer in `task`'s `CURRENT`
    /// (which owns the reference), so that a system call reaches its thread with one GS load
    /// ([`with_current_thread`]). Null while no thread is current. Written by this CPU only,
    /// with `current_work`, in [`PerCpu::set_current`].
    current_thread: AtomicPtr<crate::task::Thread>,
    /// The running thread's "work pending" word (`task::Thread`'s `work`), which the SYSCALL
    /// stub tests through GS right before SYSRET — one load for the pointer, one for the word.
    /// Written by this CPU only, whenever it changes its current thread (the context switch,
    /// `task::run_as`), before the new thread runs; [`NO_WORK`] while no thread is current.
    pub current_work: AtomicPtr<AtomicU32>,
    /// The [`AreaCounter`]s' slots: event counts kept in the area itself, so that counting is
    /// one `inc` through GS (the PKRU counts on every `pkey_alloc` and context switch).
    area_counters: [AtomicU64; AREA_COUNTERS],
    /// Timer ticks this CPU took.
    pub ticks: AtomicU64,
    /// Reschedule IPIs this CPU took.
    pub reschedule_ipis: AtomicU64,
    /// TLB-shootdown IPIs this CPU took.
    pub shootdown_ipis: AtomicU64,
    /// The value this CPU last wrote to IA32_PKRS (`pks`): read instead of RDMSR. Only this
    /// CPU writes it.
    pub pkrs: AtomicU32,
    /// How many page-table write windows (`pks::Window`) are open on this CPU, nested: the
    /// outermost opens IA32_PKRS, the outermost close closes it. Only this CPU writes it.
    pub pks_windows: AtomicU32,
}

impl PerCpu {
    const fn new(cpu_id: u32) -> PerCpu {
        PerCpu {
            self_ptr: AtomicU64::new(0),
            kernel_stack_top: AtomicU64::new(0),
            user_rsp_scratch: AtomicU64::new(0),
            cpu_id,
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            current_tid: AtomicU32::new(0),
            current_thread: AtomicPtr::new(core::ptr::null_mut()),
            current_work: AtomicPtr::new(core::ptr::null_mut()),
            area_counters: [const { AtomicU64::new(0) }; AREA_COUNTERS],
            ticks: AtomicU64::new(0),
            reschedule_ipis: AtomicU64::new(0),
            shootdown_ipis: AtomicU64::new(0),
            pkrs: AtomicU32::new(0),
            pks_windows: AtomicU32::new(0),
        }
    }
}

/// How many CPUs the per-CPU tables have room for (more in the MADT are reported and left out).
pub const MAX_CPUS: usize = 16;
const _: () = assert!(MAX_CPUS.is_power_of_two() && MAX_CPUS <= 64, "CPU masks are one u64; per-CPU indexes are masked");

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i].cpu_id = i as u32;
        i += 1;
    }
    cpus
};

/// Points this CPU's GS base at per-CPU area `cpu` (its dense index) and records its APIC id.
/// Call after the CPU's segment registers were loaded (`gdt::init_cpu`): loading GS clears the
/// base. IA32_KERNEL_GS_BASE is set to 0, the value SWAPGS will bring in from user mode.
pub fn init_cpu(cpu: usize, apic_id: u32) {
    let area = &CPUS[cpu];
    area.self_ptr.store(area as *const PerCpu as u64, Ordering::Release);
    area.apic_id.store(apic_id, Ordering::Relaxed);
    area.set_current(core::ptr::null(), 0, &NO_WORK);
    GsBase::write(VirtAddr::from_ptr(area));
    KernelGsBase::write(VirtAddr::new(0));
}

/// Sets up the boot CPU's per-CPU area (index 0; its APIC id is filled in once the APIC is
/// mapped) and points GS at it.
pub fn init_boot_cpu() {
    init_cpu(0, 0);
}

/// CPU `cpu`'s area (any CPU may read another's atomics).
pub fn cpu(cpu: usize) -> &'static PerCpu {
    &CPUS[cpu]
}

/// The areas of every CPU that is online.
pub fn online_cpus() -> impl Iterator<Item = &'static PerCpu> {
    CPUS.iter().filter(|c| c.online.load(Ordering::Acquire))
}

/// Records the kernel stack top for SYSCALL entries from user mode.
pub fn set_kernel_stack_top(top: u64) {
    this_cpu().kernel_stack_top.store(top, Ordering::Relaxed);
}

/// This CPU's per-CPU area.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let ptr: *const PerCpu;
    // SAFETY: after `init_cpu`, the GS-relative `self_ptr` field holds the address of a
    // `PerCpu` that lives forever. The read has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {ptr}, gs:[{self_ptr}]",
            ptr = out(reg) ptr,
            self_ptr = const core::mem::offset_of!(PerCpu, self_ptr),
            options(nostack, readonly, preserves_flags),
        )
    };
    assert!(!ptr.is_null(), "per-CPU data used before percpu::init_cpu");
    // SAFETY: non-null and pointing at a 'static PerCpu (see above).
    unsafe { &*ptr }
}

/// This CPU's dense index, masked into the per-CPU tables' range: one GS-relative load, no
/// pointer chase (Linux: `raw_smp_processor_id()`, also one `gs:` load). What the per-CPU slots
/// below are indexed by, on every system call's way through `task::with_current`.
#[inline]
pub fn this_cpu_index() -> usize {
    debug_assert!(this_cpu().cpu_id < MAX_CPUS as u32);
    let id: u32;
    // SAFETY: GS base points at this CPU's `PerCpu` from `init_cpu` on, which runs before any
    // per-CPU slot is used (the debug assertion above checks it through `self_ptr`); `cpu_id`
    // sits at its `offset_of!` offset (the struct is `repr(C)`) and is never written after
    // boot. The read has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {id:e}, gs:[{cpu_id}]",
            id = out(reg) id,
            cpu_id = const core::mem::offset_of!(PerCpu, cpu_id),
            options(nostack, readonly, preserves_flags),
        )
    };
    id as usize & (MAX_CPUS - 1)
}

/// The work word of "no thread": always 0 (what `current_work` points at before the first
/// thread and between `task::run_as`'s threads). Nobody sets bits in it.
pub static NO_WORK: AtomicU32 = AtomicU32::new(0);

impl PerCpu {
    /// Records which thread runs here (null: none): the thread itself (for
    /// [`with_current_thread`]), its id (for reports) and its work word (for the SYSCALL exit).
    /// `thread` and `work` must stay valid until the next call on this CPU: the caller (`task`)
    /// holds the thread's `Arc` in its `CURRENT` for that long.
    pub fn set_current(&self, thread: *const crate::task::Thread, tid: u32, work: *const AtomicU32) {
        self.current_thread.store(thread.cast_mut(), Ordering::Relaxed);
        self.current_tid.store(tid, Ordering::Relaxed);
        self.current_work.store(work.cast_mut(), Ordering::Relaxed);
    }
}

/// Runs `f` with a borrow of the thread this CPU runs (`None` before the first), taking no
/// reference count: one GS-relative load. `f` must not switch threads — only a switch on this
/// CPU changes the pointer, and that is what would end the borrow. (Linux: `current`, one
/// `mov` from `gs:`.)
#[inline(always)]
pub fn with_current_thread<R>(f: impl FnOnce(Option<&crate::task::Thread>) -> R) -> R {
    let ptr: *const crate::task::Thread;
    // SAFETY: GS base points at this CPU's `PerCpu` (from `init_cpu` on); `current_thread` sits
    // at its `offset_of!` offset. The read has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {ptr}, gs:[{current}]",
            ptr = out(reg) ptr,
            current = const core::mem::offset_of!(PerCpu, current_thread),
            options(nostack, readonly, preserves_flags),
        )
    };
    // SAFETY: a non-null pointer was stored by `set_current` from a thread whose `Arc` the
    // caller keeps in `task`'s `CURRENT` until the next `set_current` on this CPU — which
    // cannot run while `f` does: interrupts are off, other CPUs never write this area, and `f`
    // does not switch threads (the caller's promise, above).
    f(unsafe { ptr.as_ref() })
}

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

    #[inline]
    fn slot(&self) -> &AtomicPtr<T> {
        debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "per-CPU slot used with interrupts on");
        &self.slots[this_cpu_index()]
    }

    /// A new reference to this CPU's value, if it has one.
    #[inline]
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
    #[inline]
    pub fn add(&self, n: u64) {
        // Only this CPU writes its slot, always with interrupts off (the kernel runs so): a load
        // and a store, no locked read-modify-write. (`this_cpu_index` masks the index into
        // range, so there is no bounds check: MAX_CPUS is a power of two.)
        let slot = &self.slots[this_cpu_index()];
        slot.store(slot.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// The sum over every CPU.
    pub fn sum(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// This CPU's own count (what a test running on one CPU compares: other CPUs' events do
    /// not disturb it).
    #[cfg(test)] // the tests compare one CPU's counts
    pub fn here(&self) -> u64 {
        self.slots[this_cpu().cpu_id as usize].load(Ordering::Relaxed)
    }

    /// CPU `cpu`'s own count.
    #[cfg(test)] // the tests compare one CPU's counts
    pub fn of(&self, cpu: usize) -> u64 {
        self.slots.get(cpu).map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

/// How many [`AreaCounter`] slots each [`PerCpu`] has (the slot numbers are in [`area_slot`]).
const AREA_COUNTERS: usize = 5;

/// The slot of each [`AreaCounter`]: one name per slot, so that no two counters share one.
pub mod area_slot {
    pub const RDPKRU_DONE: usize = 0;
    pub const WRPKRU_DONE: usize = 1;
    pub const WRPKRU_SKIPPED: usize = 2;
    pub const SWITCHES: usize = 3;
    pub const SWITCH_WRPKRU: usize = 4;
}

/// A [`Counter`] for the hottest paths, kept in slot `SLOT` of each CPU's own [`PerCpu`]: counting
/// is one `inc qword ptr gs:[…]` (a [`Counter`] takes four instructions: the CPU index, its
/// mask, the array's address, the add). Same rules: only this CPU writes its slot, with
/// interrupts off; a report sums every CPU's.
pub struct AreaCounter<const SLOT: usize>;

impl<const SLOT: usize> AreaCounter<SLOT> {
    /// The slot's offset in [`PerCpu`] (for assembly that counts by itself).
    pub const OFFSET: usize = {
        assert!(SLOT < AREA_COUNTERS, "no such per-CPU counter slot");
        core::mem::offset_of!(PerCpu, area_counters) + SLOT * size_of::<AtomicU64>()
    };

    /// Adds 1 to this CPU's slot.
    #[inline(always)]
    pub fn inc(&self) {
        // SAFETY: GS base points at this CPU's `PerCpu` from `init_cpu` on (before any counted
        // event); the slot is an `AtomicU64` at a fixed offset of the `repr(C)` struct, written
        // only by its own CPU, with interrupts off (so this non-atomic add races with nobody
        // that writes it; readers on other CPUs see the old or the new value).
        unsafe {
            core::arch::asm!(
                "inc qword ptr gs:[{offset}]",
                offset = const Self::OFFSET,
                options(nostack),
            )
        };
    }

    /// The sum over every CPU.
    pub fn sum(&self) -> u64 {
        CPUS.iter().map(|c| c.area_counters[SLOT].load(Ordering::Relaxed)).sum()
    }

    /// This CPU's own count.
    #[cfg(test)] // the tests compare one CPU's counts
    pub fn here(&self) -> u64 {
        this_cpu().area_counters[SLOT].load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// The online CPUs as a mask (bit = dense CPU index): the targets of kernel-wide shootdowns,
/// the CPUs affinity masks are cut to.
pub fn online_mask() -> u64 {
    online_cpus().fold(0, |mask, cpu| mask | 1 << cpu.cpu_id)
}
