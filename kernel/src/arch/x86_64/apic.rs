//! The local APIC in xAPIC mode: each CPU's tick, its end-of-interrupt, and inter-processor
//! interrupts (IPIs).
//!
//! Every CPU has a local APIC (Intel SDM Vol. 3A chapter 10 "Advanced Programmable Interrupt
//! Controller (APIC)"). In xAPIC mode its registers are 4 KiB of memory-mapped I/O at the
//! address the ACPI MADT gives (normally 0xFEE00000, §10.4.1 "The Local APIC Block Diagram",
//! Table 10-1 "Local APIC Register Address Map"); every CPU sees *its own* APIC at that same
//! address, so one mapping serves all of them. The page is mapped uncached (PCD|PWT: PAT entry
//! 3, UC — §11.12.3 "Selecting a Memory Type from the PAT") through
//! [`paging::map_device_registers`], which maps nothing else.
//!
//! QEMU 7.2 under TCG offers neither x2APIC (`CPUID.1:ECX[21]` = 0) nor the TSC-deadline timer
//! (`CPUID.1:ECX[24]` = 0), so pikku writes the few registers it needs itself (the `x2apic`
//! crate's xAPIC mode would put an IPI's destination in ICR bits 32–63 instead of 56–63):
//!
//! | offset | register (Table 10-1)              | what pikku does with it                       |
//! |--------|------------------------------------|-----------------------------------------------|
//! | 0x020  | Local APIC ID                      | bits 24–31: this CPU's APIC id                |
//! | 0x080  | Task Priority (TPR)                | 0: every vector may interrupt                 |
//! | 0x0B0  | EOI                                | write 0 at the end of each interrupt          |
//! | 0x0F0  | Spurious Interrupt Vector (SVR)    | bit 8 enables the APIC; vector 0xFF           |
//! | 0x300/0x310 | Interrupt Command (ICR)       | send INIT, STARTUP, fixed and NMI IPIs        |
//! | 0x320  | LVT Timer                          | vector 32, periodic                           |
//! | 0x350/0x360 | LVT LINT0/LINT1               | masked (the 8259s stay silent)                |
//! | 0x370  | LVT Error                          | masked                                        |
//! | 0x380/0x390 | timer initial/current count   | the period, calibrated against the PIT        |
//! | 0x3E0  | timer Divide Configuration         | divide by 16                                  |
//!
//! The timer (§10.5.4 "APIC Timer") counts down at the bus clock divided by 16 and, in periodic
//! mode, reloads itself: calibrated once, on the boot CPU, against PIT channel 2 (the same
//! stopwatch the TSC uses, [`super::time::measure_against_pit`]), it then gives every CPU a
//! tick at [`super::timer::HZ`] on vector [`TIMER_VECTOR`] (32, where PIT IRQ 0 used to arrive,
//! so the trap path is the one the PIT used).
//!
//! No lock: each CPU writes only its own APIC's registers; the ICR is per CPU too, and an IPI
//! is sent with interrupts off, so nothing on this CPU can interleave a second one.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

use super::paging;

/// The vector of each CPU's timer tick (where the PIT's IRQ 0 was: the IRQ path serves it).
pub const TIMER_VECTOR: u8 = 32;
/// The reschedule IPI: "look at your run queue" (Linux: `RESCHEDULE_VECTOR`).
pub const RESCHEDULE_VECTOR: u8 = 48;
/// The TLB-shootdown IPI: "flush stale translations" (Linux: `CALL_FUNCTION_VECTOR` running
/// `flush_tlb_func()`).
pub const TLB_SHOOTDOWN_VECTOR: u8 = 49;
/// The APIC's spurious-interrupt vector (§10.9 "Spurious Interrupt"): its handler must *not*
/// send an EOI; the stub for it is a bare IRETQ.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const ID: usize = 0x020;
const TPR: usize = 0x080;
const EOI: usize = 0x0b0;
const SVR: usize = 0x0f0;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_ERROR: usize = 0x370;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;

/// LVT mask bit (Figure 10-8 "Local Vector Table (LVT)").
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer mode bits 17–18 = 01: periodic.
const LVT_PERIODIC: u32 = 1 << 17;
/// SVR bit 8: APIC software enable (§10.4.3 "Enabling or Disabling the Local APIC").
const SVR_ENABLE: u32 = 1 << 8;
/// Divide Configuration 0b0011: divide by 16 (Figure 10-10 "Divide Configuration Register").
const DIVIDE_BY_16: u32 = 0b0011;

/// ICR fields (§10.6.1 "Interrupt Command Register (ICR)", Figure 10-12).
mod icr {
    #[allow(dead_code)] // see `send_fixed`
    pub const FIXED: u32 = 0b000 << 8;
    pub const NMI: u32 = 0b100 << 8;
    pub const INIT: u32 = 0b101 << 8;
    pub const STARTUP: u32 = 0b110 << 8;
    /// Delivery status: 1 = send pending.
    pub const PENDING: u32 = 1 << 12;
    /// Level: assert (must be 1 for every mode but INIT de-assert).
    pub const ASSERT: u32 = 1 << 14;
    /// Destination shorthand 11: all excluding self.
    pub const ALL_BUT_SELF: u32 = 0b11 << 18;
}

/// Where the APIC's registers are mapped (0 until [`init`]).
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer counts per tick at divide-by-16, measured once by [`calibrate_timer`].
static COUNT_PER_TICK: AtomicU32 = AtomicU32::new(0);

fn register(offset: usize) -> *mut u32 {
    let base = BASE.load(Ordering::Relaxed);
    assert!(base != 0, "local APIC used before apic::init");
    (base + offset as u64) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: `register` points into the APIC page mapped uncached by `init`; APIC registers
    // are 32-bit, 16-byte aligned, and must be accessed with aligned 32-bit loads (§10.4.1).
    unsafe { core::ptr::read_volatile(register(offset)) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; the writes pikku makes are the ones the table in the module docs
    // lists, each with the field values §10 defines.
    unsafe { core::ptr::write_volatile(register(offset), value) }
}

/// Creates the device region (with `pdpt` as its PDPT) and maps the APIC's registers (at
/// `phys`, from the MADT) uncached at its start, taking page-table frames from `table_frames`.
/// Once, on the boot CPU, before any address space is made.
pub fn init(phys: u64, pdpt: PhysFrame, table_frames: impl FnMut() -> Option<PhysFrame>) {
    let virt = VirtAddr::new(paging::DEVICE_REGION_START);
    paging::create_kernel_region_slot(virt, pdpt);
    paging::map_device_registers(virt, PhysAddr::new(phys), table_frames);
    BASE.store(virt.as_u64(), Ordering::Release);
}

/// Is the APIC mapped (so its registers may be used)?
pub fn ready() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Switches this CPU's APIC on for pikku: software-enabled with the spurious vector, TPR 0
/// (accept every priority class, §10.8.3.1 "Task and Processor Priorities"), LINT0/LINT1 and
/// the error LVT masked, the timer stopped. Every CPU, once.
pub fn enable_this_cpu() {
    write(TPR, 0);
    write(LVT_LINT0, LVT_MASKED);
    write(LVT_LINT1, LVT_MASKED);
    write(LVT_ERROR, LVT_MASKED);
    write(LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// This CPU's APIC id (Local APIC ID register bits 24–31, §10.4.6 "Local APIC ID"). Needs no
/// per-CPU data (GS), so the NMI handler may use it at any instruction.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Ends the interrupt being handled (§10.8.5 "Signaling Interrupt Servicing Completion").
pub fn end_of_interrupt() {
    write(EOI, 0);
}

/// Measures the timer's rate against the PIT, on the boot CPU with interrupts off, and sets the
/// period every CPU's tick uses. Returns the timer's counts per millisecond (divided by 16).
pub fn calibrate_timer() -> u64 {
    const MS: u64 = 10;
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(TIMER_INITIAL, u32::MAX);
    // The current count runs down from the initial count: count how far.
    let elapsed = super::time::measure_against_pit(MS, || u64::from(u32::MAX - read(TIMER_CURRENT)));
    write(TIMER_INITIAL, 0);
    let per_ms = (elapsed / MS).max(1);
    let per_tick = (per_ms * 1000 / super::timer::HZ).clamp(1, u64::from(u32::MAX));
    COUNT_PER_TICK.store(per_tick as u32, Ordering::Relaxed);
    per_ms
}

/// Starts this CPU's periodic tick at [`super::timer::HZ`] (after [`calibrate_timer`]).
pub fn timer_start_periodic() {
    let count = COUNT_PER_TICK.load(Ordering::Relaxed);
    assert!(count != 0, "apic::timer_start_periodic before calibrate_timer");
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    // Writing the initial count starts the countdown (§10.5.4).
    write(TIMER_INITIAL, count);
}

/// Stops this CPU's tick (an idle CPU needs none): an initial count of 0 stops the timer
/// (§10.5.4), and the LVT entry is masked.
pub fn timer_stop() {
    write(LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(TIMER_INITIAL, 0);
}

/// Waits until the previous IPI has left this APIC (delivery status idle). Bounded: a stuck
/// bit is reported by the caller rather than spun on forever.
fn wait_for_delivery() -> bool {
    let deadline = super::time::rdtsc().saturating_add(super::time::tsc_per_ms().max(1) * 100);
    while read(ICR_LOW) & icr::PENDING != 0 {
        if super::time::rdtsc() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Writes the ICR: destination (xAPIC: bits 56–63, i.e. bits 24–31 of the high word) first,
/// since writing the low word sends (§10.6.1). Interrupts must be off (one IPI at a time).
fn send(apic_id: u32, low: u32) -> bool {
    debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "IPI sent with interrupts on");
    write(ICR_HIGH, (apic_id & 0xff) << 24);
    write(ICR_LOW, low);
    wait_for_delivery()
}

/// Sends `vector` to the CPU with APIC id `apic_id` (fixed delivery, physical destination),
/// and waits until the APIC has sent it. Returns `false` if it was still pending after 100 ms.
pub fn send_fixed(apic_id: u32, vector: u8) -> bool {
    send(apic_id, icr::FIXED | icr::ASSERT | u32::from(vector))
}

/// Sends an NMI to every CPU but this one (shorthand "all excluding self").
pub fn send_nmi_to_others() -> bool {
    debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "IPI sent with interrupts on");
    write(ICR_LOW, icr::NMI | icr::ASSERT | icr::ALL_BUT_SELF);
    wait_for_delivery()
}

/// Sends an NMI to one CPU.
#[cfg(test)] // used by the in-kernel tests only
pub fn send_nmi(apic_id: u32) -> bool {
    send(apic_id, icr::NMI | icr::ASSERT)
}

/// INIT IPI (assert): resets the target into its wait-for-SIPI state (§8.4.4.1 "Typical BSP
/// Initialization Sequence").
pub fn send_init(apic_id: u32) -> bool {
    send(apic_id, icr::INIT | icr::ASSERT)
}

/// STARTUP IPI: the target starts in real mode at `page * 0x1000` (CS = page << 8, IP = 0;
/// §8.4.4.1, and §10.6.1's "Start-Up" delivery mode).
pub fn send_startup(apic_id: u32, page: u8) -> bool {
    send(apic_id, icr::STARTUP | icr::ASSERT | u32::from(page))
}
