//! Supervisor protection keys (PKS): the kernel guards its own page tables with a key.
//!
//! PKU's other half. A supervisor page (U/S = 0 in its leaf entry) carries a protection key in
//! bits 62:59 of that entry exactly as a user page does; with CR4.PKS set, the CPU checks every
//! supervisor-mode access to it against the per-CPU MSR **IA32_PKRS** (0x6E1) instead of PKRU:
//! two bits per key, AD (access-disable, bit 2k) and WD (write-disable, bit 2k+1). A blocked
//! access is a page fault with PK (bit 5) in the error code; the key is not in the error code,
//! only in the page's entry. WD stops supervisor writes only while CR0.WP = 1. (Intel SDM
//! Vol. 3A §4.6.2 "Protection Keys"; CR4.PKS is bit 24, §2.5 "Control Registers"; the MSR:
//! Vol. 4 Table 2-2 "IA-32 Architectural MSRs"; the CPUID bit: `CPUID.(7,0):ECX[31]` — cited
//! from the edition named in `docs/ARCHITECTURE.md`, "Which SDM", since the June 2016 one
//! predates PKS.)
//!
//! pikku's supervisor keys (room for 14 more):
//!
//! | key | what carries it                                   | default rights in IA32_PKRS |
//! |-----|---------------------------------------------------|-----------------------------|
//! | 0   | all ordinary kernel memory                        | read, write                 |
//! | 1   | every page-table frame, in the physical map       | read only (WD set)          |
//!
//! `paging` is the one writer of page tables; before it writes, it opens a [`Window`], which
//! clears key 1's WD bit in this CPU's IA32_PKRS and sets it again when dropped. Windows nest
//! (a per-CPU count in `PerCpu::pks_windows`): only the outermost open and close write the MSR,
//! so an address-space operation costs two WRMSRs however many entries it writes. Any other
//! write to a page table — a stray pointer, a use-after-free of a table frame — faults.
//!
//! IA32_PKRS is per CPU, and only WRMSR (ring 0, serializing) changes it: unlike WRPKRU, user
//! code cannot open a window. A window is open on one CPU only; another CPU, even in the same
//! address space, still has the default. The value last written is kept in `PerCpu::pkrs`, so no
//! RDMSR is ever needed to know it.
//!
//! Exceptions and NMIs: the kernel runs with interrupts off, but an exception (a test's `int3`,
//! a fault) or an NMI can arrive inside a window. [`ExceptionPkrs`] (for everything but the
//! NMI) saves the window state on the handler's stack, runs the handler with the default and a
//! count of 0, and restores both on return; the NMI, which may arrive before the SYSCALL entry's
//! SWAPGS (so GS cannot be trusted), does the same with RDMSR/WRMSR alone ([`nmi_enter`]). The
//! trap frame is unchanged. A context switch asserts that no window is open
//! ([`assert_no_window`]).
//!
//! Without PKS (`-cpu qemu64`), or with the boot option `pks=off`, nothing here touches an MSR
//! or CR4: a window is a counter increment and a decrement.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use pkeys::Pkey;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::Msr;

use super::percpu::{self, PerCpu};

/// IA32_PKRS: the supervisor keys' rights (SDM Vol. 4 Table 2-2).
const IA32_PKRS: u32 = 0x6e1;

/// The key every page-table frame carries in the physical map.
pub const PAGE_TABLE_KEY: Pkey = match Pkey::new(1) {
    Some(key) => key,
    None => panic!("key 1 exists"),
};

/// The write-disable bit of `key` in IA32_PKRS (bit 2k+1: the layout of PKRU, SDM Vol. 3A
/// §4.6.2).
const fn write_disable(key: Pkey) -> u32 {
    1 << (2 * key.index() as u32 + 1)
}

/// IA32_PKRS outside windows: the page-table key write-disabled, every other key open.
pub const PKRS_DEFAULT: u32 = write_disable(PAGE_TABLE_KEY);
/// IA32_PKRS inside a window: every key open.
pub const PKRS_WINDOW: u32 = PKRS_DEFAULT & !write_disable(PAGE_TABLE_KEY);

/// Set once the boot CPU has keyed the page tables and set CR4.PKS: then every CPU runs with
/// it and every page-table frame carries [`PAGE_TABLE_KEY`].
static ENABLED: AtomicBool = AtomicBool::new(false);

/// WRMSRs to IA32_PKRS (for tests and the run report: the cost of the windows).
pub static WRMSR_DONE: percpu::Counter = percpu::Counter::new();

/// Does this system guard its page tables with PKS?
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes IA32_PKRS and its shadow. WRMSR to IA32_PKRS takes effect for the next access (SDM
/// Vol. 3A §4.6.2; measured under QEMU: `../shared/reference/qemu-notes.md`, and the tests below).
fn write_pkrs(cpu: &PerCpu, value: u32) {
    cpu.pkrs.store(value, Ordering::Relaxed);
    WRMSR_DONE.add(1);
    // SAFETY: only called with CR4.PKS on a CPU that has PKS (ENABLED), where IA32_PKRS exists;
    // its value only changes which supervisor writes are allowed, and no key is access-disabled.
    unsafe { Msr::new(IA32_PKRS).write(u64::from(value)) };
}

/// Reads IA32_PKRS itself (RDMSR): only the NMI path and tests need the hardware's word.
pub fn read_pkrs_msr() -> u32 {
    // SAFETY: only called with PKS enabled (checked by every caller), where the MSR exists;
    // reading has no side effects.
    unsafe { Msr::new(IA32_PKRS).read() as u32 }
}

/// Turns PKS on for this CPU: IA32_PKRS at [`PKRS_DEFAULT`] first, then CR4.PKS. The boot CPU
/// calls it with `first = true` once the page tables are keyed (`paging::guard_page_tables`),
/// which decides for the system; every other CPU then follows as it comes up. Linux's
/// unmerged PKS series: `setup_pks()`.
pub fn enable_this_cpu(first: bool) {
    if first {
        ENABLED.store(true, Ordering::Release);
    }
    if !enabled() {
        return;
    }
    write_pkrs(percpu::this_cpu(), PKRS_DEFAULT);
    // SAFETY: the system enables PKS only on a CPU that reports it (`cpu::features().pks`, the
    // same model on every CPU); setting CR4.PKS makes key bits of supervisor entries count,
    // and every supervisor entry carries key 0 (open) except page-table frames' (read-only).
    unsafe { Cr4::update(|f| f.insert(Cr4Flags::PROTECTION_KEY_SUPERVISOR)) };
}

/// Is CR4.PKS set on this CPU?
pub fn cr4_pks() -> bool {
    Cr4::read().contains(Cr4Flags::PROTECTION_KEY_SUPERVISOR)
}

/// An open page-table write window on this CPU: while it lives, the page-table key is writable
/// here (and only here). Not `Send`: it must be closed on the CPU that opened it.
#[must_use = "the window closes when this is dropped"]
#[derive(Debug)]
pub struct Window {
    _this_cpu: core::marker::PhantomData<*const ()>,
}

impl Window {
    /// Opens a window (or nests into the one already open on this CPU).
    #[inline]
    pub fn open() -> Window {
        let cpu = percpu::this_cpu();
        let depth = cpu.pks_windows.load(Ordering::Relaxed);
        cpu.pks_windows.store(depth + 1, Ordering::Relaxed);
        if depth == 0 && enabled() {
            write_pkrs(cpu, PKRS_WINDOW);
        }
        Window { _this_cpu: core::marker::PhantomData }
    }
}

impl Drop for Window {
    #[inline]
    fn drop(&mut self) {
        let cpu = percpu::this_cpu();
        let depth = cpu.pks_windows.load(Ordering::Relaxed);
        if depth == 1 && enabled() {
            write_pkrs(cpu, PKRS_DEFAULT);
        }
        cpu.pks_windows.store(depth - 1, Ordering::Relaxed);
    }
}

/// How many windows are open on this CPU.
pub fn windows_open() -> u32 {
    percpu::this_cpu().pks_windows.load(Ordering::Relaxed)
}

/// A thread never takes an open window to another thread: called by the context switch.
#[inline]
pub fn assert_no_window() {
    assert_eq!(windows_open(), 0, "a context switch with a page-table write window open");
}

/// The window state an exception handler interrupted, saved on the handler's stack: restored
/// when dropped (just before IRETQ). Linux's PKS series kept it in `pt_regs` instead (an
/// auxiliary field); here the trap frame stays as it is, shared with the SYSCALL path.
pub struct ExceptionPkrs {
    saved: Option<(u32, u32)>,
}

impl ExceptionPkrs {
    /// On entry to any handler but the NMI's: if a window is open, closes it for the handler
    /// (IA32_PKRS back to the default, the count to 0), remembering both.
    #[inline]
    pub fn enter() -> ExceptionPkrs {
        if !enabled() {
            return ExceptionPkrs { saved: None };
        }
        let cpu = percpu::this_cpu();
        let depth = cpu.pks_windows.load(Ordering::Relaxed);
        let pkrs = cpu.pkrs.load(Ordering::Relaxed);
        if depth == 0 && pkrs == PKRS_DEFAULT {
            return ExceptionPkrs { saved: None };
        }
        cpu.pks_windows.store(0, Ordering::Relaxed);
        if pkrs != PKRS_DEFAULT {
            write_pkrs(cpu, PKRS_DEFAULT);
        }
        ExceptionPkrs { saved: Some((pkrs, depth)) }
    }
}

impl Drop for ExceptionPkrs {
    fn drop(&mut self) {
        if let Some((pkrs, depth)) = self.saved {
            let cpu = percpu::this_cpu();
            if cpu.pkrs.load(Ordering::Relaxed) != pkrs {
                write_pkrs(cpu, pkrs);
            }
            cpu.pks_windows.store(depth, Ordering::Relaxed);
        }
    }
}

/// What the latest NMI or breakpoint handler found: IA32_PKRS as interrupted (high half) and as
/// the handler ran (low half) — what the tests check. `u64::MAX` until one ran with PKS.
static HANDLER_SAW: AtomicU64 = AtomicU64::new(u64::MAX);

/// IA32_PKRS as interrupted and as run by the latest NMI or breakpoint handler.
#[cfg(test)] // the in-kernel tests check it
pub fn handler_saw() -> Option<(u32, u32)> {
    let word = HANDLER_SAW.load(Ordering::Acquire);
    (word != u64::MAX).then_some(((word >> 32) as u32, word as u32))
}

/// Called by the breakpoint handler (after [`ExceptionPkrs::enter`]): records what it runs with.
pub fn note_breakpoint(interrupted: u32) {
    if enabled() {
        HANDLER_SAW.store(u64::from(interrupted) << 32 | u64::from(read_pkrs_msr()), Ordering::Release);
    }
}

/// The value [`ExceptionPkrs`] found on entry (the default when it changed nothing).
pub fn interrupted_pkrs(entry: &ExceptionPkrs) -> u32 {
    entry.saved.map_or(PKRS_DEFAULT, |(pkrs, _)| pkrs)
}

/// On NMI entry: IA32_PKRS as interrupted, read with RDMSR (GS may still be the user's, so no
/// per-CPU data), with the default written for the handler. `None` without PKS. The NMI
/// handler opens no window, so the count needs no saving.
pub fn nmi_enter() -> Option<u32> {
    if !enabled() {
        return None;
    }
    let interrupted = read_pkrs_msr();
    if interrupted != PKRS_DEFAULT {
        // SAFETY: PKS is enabled (checked above), so the MSR exists; the default only closes.
        unsafe { Msr::new(IA32_PKRS).write(u64::from(PKRS_DEFAULT)) };
    }
    HANDLER_SAW.store(u64::from(interrupted) << 32 | u64::from(read_pkrs_msr()), Ordering::Release);
    Some(interrupted)
}

/// On NMI exit: IA32_PKRS back to what the NMI interrupted.
pub fn nmi_exit(interrupted: Option<u32>) {
    if let Some(value) = interrupted.filter(|&v| v != PKRS_DEFAULT) {
        // SAFETY: as in `nmi_enter`; the value is the one this CPU held before the NMI.
        unsafe { Msr::new(IA32_PKRS).write(u64::from(value)) };
    }
}

/// What became of PKS at boot (for the boot report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The CPU has no PKS (`CPUID.(7,0):ECX[31]` clear).
    Absent,
    /// The CPU has it; the boot option `pks=off` left it off.
    Off,
    /// The page tables could not be keyed (the reason); PKS stays off.
    Failed(&'static str),
    /// On: CR4.PKS set on every CPU, this many page tables keyed at boot.
    Enabled { tables: usize },
}

static STATUS: spin::Once<Status> = spin::Once::new();

/// Turns PKS on for the system, on the boot CPU, if the CPU has it and `wanted` (the boot
/// option): keys every page table (`paging::guard_page_tables`, which takes the frames it
/// needs from `alloc` and splits the physical map over `usable`), then IA32_PKRS and CR4.PKS.
/// CR0.WP must already be set: without it write-disable does not stop supervisor writes (SDM
/// Vol. 3A §4.6.1 "Determination of Access Rights").
pub fn enable(wanted: bool, usable: &mut dyn Iterator<Item = (u64, u64)>, alloc: &mut dyn FnMut() -> Option<x86_64::structures::paging::PhysFrame>) -> Status {
    let status = if !super::cpu::features().pks {
        Status::Absent
    } else if !wanted {
        Status::Off
    } else {
        match super::paging::guard_page_tables(usable, alloc) {
            Ok(tables) => {
                enable_this_cpu(true);
                Status::Enabled { tables }
            }
            Err(why) => Status::Failed(why),
        }
    };
    *STATUS.call_once(|| status)
}

/// What [`enable`] did (`Absent` before it ran).
pub fn status() -> Status {
    STATUS.get().copied().unwrap_or(Status::Absent)
}

/// Writes `value` to `*addr`, recovering from the fault a guarded page raises (extable): what
/// the tests use to show that a page-table write outside a window faults.
#[cfg(test)] // used by the in-kernel tests only
fn probe_write(addr: *mut u64, value: u64) -> Result<(), super::extable::Fault> {
    let status: u64;
    let cr2: u64;
    // SAFETY: the store either writes one u64 at `addr` — a page-table entry the test owns,
    // written with the value it already holds — or faults, and the extable entry resumes at
    // label 3 with the fault in rax/rdx (see extable).
    unsafe {
        core::arch::asm!(
            "2: mov [{addr}], {value}",
            "xor eax, eax",
            "3:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            value = in(reg) value,
            inout("rax") 0u64 => status,
            out("rdx") cr2,
            options(nostack),
        );
    }
    match super::extable::Fault::from_rax(status, cr2) {
        Some(fault) => Err(fault),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::time::wait_until;
    use crate::arch::x86_64::{apic, paging, smp, trap};
    use ktest_macros::ktest;
    use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
    use x86_64::VirtAddr;

    /// A fresh (empty) user tree, and the address of its PML4's first entry in the physical
    /// map: a page-table word the test may write (with the 0 it holds) without harm.
    fn scratch_table() -> (paging::PageTableRoot, *mut u64) {
        let root = paging::PageTableRoot::new_user(crate::mm::frame::alloc).expect("a frame for a PML4");
        let word = paging::phys_to_virt(root.frame().start_address()).as_mut_ptr::<u64>();
        (root, word)
    }

    fn release(root: paging::PageTableRoot) {
        root.free(|_, _| {}, crate::mm::frame::free);
    }


    #[ktest]
    fn a_window_writes_the_msr_only_where_pks_is_on() {
        // With PKS: two WRMSRs and CR4.PKS set. Without (`-cpu qemu64`, `pks=off`): no MSR
        // touched at all — IA32_PKRS may not even exist.
        let writes = WRMSR_DONE.here();
        drop(Window::open());
        assert_eq!(WRMSR_DONE.here() - writes, if enabled() { 2 } else { 0 });
        assert_eq!(cr4_pks(), enabled(), "CR4.PKS");
        assert_eq!(windows_open(), 0);
    }

    #[ktest(needs = pks)]
    fn pks_is_on_with_page_tables_write_disabled() {
        assert!(cr4_pks(), "CR4.PKS (bit 24)");
        assert_eq!(read_pkrs_msr(), PKRS_DEFAULT, "IA32_PKRS outside windows");
        assert_eq!(PKRS_DEFAULT, 0b1000, "WD of key 1 (bit 3), nothing else");
        assert_eq!(percpu::this_cpu().pkrs.load(Ordering::Relaxed), read_pkrs_msr(), "the shadow is the MSR");
        // The bootloader's tables are guarded too: the kernel's PML4, and the table that
        // maps the physical map itself.
        let pml4 = paging::phys_to_virt(paging::active_root_frame().start_address()).as_u64();
        assert_eq!(paging::kernel_key_of(pml4), Some(PAGE_TABLE_KEY));
        // Ordinary kernel data is key 0.
        let data = percpu::this_cpu() as *const PerCpu as u64;
        assert_eq!(paging::kernel_key_of(data), Some(Pkey::DEFAULT));
    }

    #[ktest(needs = pks)]
    fn a_page_table_write_faults_outside_a_window_and_succeeds_inside() {
        let (root, word) = scratch_table();
        assert_eq!(paging::kernel_key_of(word as u64), Some(PAGE_TABLE_KEY), "a new table is keyed");
        // SAFETY: `word` is the first entry of a PML4 this test owns; reads are never blocked.
        assert_eq!(unsafe { word.read_volatile() }, 0, "reading a guarded table works");
        let recovered = trap::recovered_count(trap::vector::PAGE_FAULT);
        let fault = probe_write(word, 0).expect_err("a write outside a window must fault");
        assert_eq!(fault.vector, 14, "#PF");
        assert_eq!(fault.error_code, 0x23, "P | W/R | PK, supervisor: {}", fault.page_fault_error());
        assert_eq!(fault.address, word as u64, "CR2");
        assert_eq!(paging::kernel_key_of(fault.address), Some(PAGE_TABLE_KEY), "the key, from the kernel's entry");
        assert_eq!(trap::recovered_count(trap::vector::PAGE_FAULT), recovered + 1);
        {
            let _window = Window::open();
            assert_eq!(probe_write(word, 0), Ok(()), "inside a window the write goes through");
        }
        assert!(probe_write(word, 0).is_err(), "closed again");
        // A frame that stops being a table goes back to key 0 before it is reused.
        let frame = root.frame();
        release(root);
        let virt = paging::phys_to_virt(frame.start_address()).as_u64();
        assert_eq!(paging::kernel_key_of(virt), Some(Pkey::DEFAULT), "a freed table frame is key 0 again");
    }

    #[ktest(needs = pks)]
    fn nested_windows_close_only_at_the_outermost() {
        let (root, word) = scratch_table();
        let writes = WRMSR_DONE.here();
        let outer = Window::open();
        let inner = Window::open();
        assert_eq!(windows_open(), 2);
        drop(inner);
        assert_eq!(read_pkrs_msr(), PKRS_WINDOW, "the inner close leaves the outer window open");
        assert_eq!(probe_write(word, 0), Ok(()));
        drop(outer);
        assert_eq!(read_pkrs_msr(), PKRS_DEFAULT);
        assert!(probe_write(word, 0).is_err());
        assert_eq!(WRMSR_DONE.here() - writes, 2, "one WRMSR to open, one to close, however deep");
        release(root);
    }

    #[ktest(needs = pks)]
    fn an_address_space_operation_costs_two_wrmsrs() {
        // Mapping a page into an empty tree writes three new tables and a leaf; changing the
        // key of 512 pages rewrites 512 leaves: one window each.
        let (mut root, _) = scratch_table();
        let base = 0x4000_0000u64;
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        let mut frames = alloc::vec::Vec::new();
        let writes = WRMSR_DONE.here();
        for i in 0..512u64 {
            let frame = crate::mm::frame::alloc().expect("a frame");
            frames.push(frame);
            root.map(Page::containing_address(VirtAddr::new(base + i * 4096)), frame, flags, crate::mm::frame::alloc).expect("mapped");
        }
        assert_eq!(WRMSR_DONE.here() - writes, 2 * 512, "two per map call");
        let writes = WRMSR_DONE.here();
        let mut tlb = paging::TlbBatch::new(&root, 0);
        root.update_leaves(base, base + 512 * 4096, &mut tlb, |_, old| pkeys::pte::with_pkey(old, Pkey::new(3).unwrap()));
        tlb.flush();
        assert_eq!(WRMSR_DONE.here() - writes, 2, "512 leaves, one window");
        // A call that rewrites several areas (pkey_mprotect over four areas: four walks) does
        // so under its one TLB batch, which is its one window.
        let writes = WRMSR_DONE.here();
        let mut tlb = paging::TlbBatch::new(&root, 0);
        for area in 0..4u64 {
            let start = base + area * 128 * 4096;
            root.update_leaves(start, start + 128 * 4096, &mut tlb, |_, old| pkeys::pte::with_pkey(old, Pkey::new(4).unwrap()));
        }
        tlb.flush();
        assert_eq!(WRMSR_DONE.here() - writes, 2, "four areas, one batch, one window");
        let mut returned = 0;
        root.free(|_, _| returned += 1, crate::mm::frame::free);
        assert_eq!(returned, 512);
        frames.into_iter().for_each(crate::mm::frame::free);
    }

    #[ktest(needs = pks)]
    fn an_exception_inside_a_window_runs_with_the_default_and_the_window_reopens() {
        let (root, word) = scratch_table();
        let window = Window::open();
        // A breakpoint: its handler records IA32_PKRS as interrupted and as it ran.
        // SAFETY: int3 traps to the breakpoint handler, which logs and returns.
        unsafe { core::arch::asm!("int3") };
        assert_eq!(handler_saw(), Some((PKRS_WINDOW, PKRS_DEFAULT)), "the handler ran with the window closed");
        assert_eq!(read_pkrs_msr(), PKRS_WINDOW, "open again after IRETQ");
        assert_eq!(windows_open(), 1);
        assert_eq!(probe_write(word, 0), Ok(()));
        // An NMI sent to this CPU (a self-IPI): its handler, which may not trust GS, saves
        // IA32_PKRS with RDMSR.
        let me = percpu::this_cpu().cpu_id as usize;
        let before = smp::nmis(me);
        assert!(apic::send_nmi(apic::id()), "NMI not sent");
        assert!(wait_until(1000, || smp::nmis(me) > before), "the NMI did not arrive");
        assert_eq!(handler_saw(), Some((PKRS_WINDOW, PKRS_DEFAULT)), "the NMI handler ran with the window closed");
        assert_eq!(read_pkrs_msr(), PKRS_WINDOW, "open again after the NMI");
        assert_eq!(probe_write(word, 0), Ok(()));
        drop(window);
        release(root);
    }

    #[ktest(needs = pks_smp)]
    fn a_window_on_one_cpu_leaves_the_others_closed() {
        let (root, word) = scratch_table();
        let _window = Window::open();
        assert_eq!(probe_write(word, 0), Ok(()));
        let me = percpu::this_cpu().cpu_id;
        for cpu in percpu::online_cpus().filter(|c| c.cpu_id != me) {
            let id = cpu.cpu_id as usize;
            assert_eq!(cpu.pks_windows.load(Ordering::Relaxed), 0, "CPU {id}: no window");
            let before = smp::nmis(id);
            assert!(apic::send_nmi(cpu.apic_id.load(Ordering::Relaxed)), "CPU {id}: NMI not sent");
            assert!(wait_until(1000, || smp::nmis(id) > before), "CPU {id}: the NMI did not arrive");
            // What that CPU's own IA32_PKRS held when the NMI interrupted it (read there).
            assert_eq!(handler_saw().map(|(interrupted, _)| interrupted), Some(PKRS_DEFAULT), "CPU {id} stayed closed");
        }
        drop(_window);
        release(root);
    }

    #[ktest(needs = pks, panics = "supervisor key 1 (page tables: written outside a write window)")]
    fn a_stray_page_table_write_is_reported_as_a_pks_violation() {
        let (_root, word) = scratch_table();
        // SAFETY: none — this write is the bug the key exists to catch: it faults, and the
        // report ends the boot (the harness goes on in a fresh one).
        unsafe { word.write_volatile(0) };
        unreachable!("the write went through");
    }

    #[ktest(needs = pks)]
    fn every_table_of_a_freed_tree_is_key_0_when_handed_back() {
        let (mut root, _) = scratch_table();
        let frame = crate::mm::frame::alloc().expect("a frame");
        let flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        root.map(Page::containing_address(VirtAddr::new(0x1234_5000)), frame, flags, crate::mm::frame::alloc).expect("mapped");
        let keyed = |f: PhysFrame| paging::kernel_key_of(paging::phys_to_virt(f.start_address()).as_u64());
        let mut tables = alloc::vec::Vec::new();
        root.free(|_, _| {}, |t| tables.push((t, keyed(t))));
        assert_eq!(tables.len(), 4, "PT, PD, PDPT, PML4");
        for (t, key) in tables {
            assert_eq!(key, Some(Pkey::DEFAULT), "{t:?} is key 0 when handed back");
            crate::mm::frame::free(t);
        }
        crate::mm::frame::free(frame);
    }
}
