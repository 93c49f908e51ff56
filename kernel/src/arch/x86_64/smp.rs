//! The other CPUs: starting them (INIT–SIPI–SIPI through a real-mode trampoline), bringing
//! each up completely, and stopping them all when the kernel panics (NMI).
//!
//! **How an application processor (AP) comes up** (Intel SDM Vol. 3A §8.4 "Multiple-Processor
//! (MP) Initialization", §8.4.4.1 "Typical BSP Initialization Sequence"). After reset the
//! firmware parks every AP in "wait for SIPI". The boot CPU, for one AP at a time:
//!
//! 1. copies the trampoline below (`pikku_ap_trampoline_start` … `_end`) into the frame
//!    reserved below 0xA0000 at boot and patches its data: the 32-bit physical addresses of its
//!    GDT and far-jump targets, CR3 (a tree from [`paging::start_up_tree`]: the kernel half
//!    plus the trampoline page identity-mapped, its root below 4 GiB), the new CPU's stack top,
//!    its dense CPU index, and the address of [`ap_entry`] — the kernel is a static PIE, so the
//!    code uses no absolute address of its own and the boot CPU writes them at run time;
//! 2. sends INIT, waits 10 ms, sends STARTUP with the frame's page number (the AP starts in
//!    real mode at CS = page << 8, IP = 0), waits 200 µs, and sends a second STARTUP if the AP
//!    has not yet claimed the start (§8.4.4.1's INIT–SIPI–SIPI);
//! 3. waits at most [`ANSWER_MS`] for the AP to claim the start (an atomic exchange on the
//!    trampoline's ticket, from 1 to 0). If it does not, the boot CPU takes the ticket back
//!    itself — after that, an AP that wakes late finds 0 and halts, so it can never run on a
//!    stack given to the next one — and the AP is reported and left out.
//!
//! The trampoline goes real mode → protected mode (a flat GDT of its own) → IA-32e mode: CR4.PAE,
//! CR3, EFER.LME|NXE|SCE, CR0.PG|WP (§9.8.5 "Initializing IA-32e Mode"). CR0 is written whole,
//! not or-ed into: INIT leaves CD and NW set (caches off; Table 9-1 "IA-32 and Intel 64
//! Processor States Following Power-up, Reset, or INIT"), which the in-kernel tests caught. Then
//! a far jump to its 64-bit code, which claims the ticket, loads the stack and jumps to [`ap_entry`]. There the
//! CPU gets everything the boot CPU set up, none of which INIT leaves behind (issue #15 item 5):
//! its own GDT and TSS with its own IST stacks (guard-paged kernel stacks), the IDT, the GS base
//! (after the segment loads; KERNEL_GS_BASE 0), the kernel's CR3, PAT, CR0.WP, SSE, XSAVE and
//! XCR0, CR4.PKE and PKRU 0x55555554, SMEP and SMAP, the SYSCALL MSRs, its local APIC and its
//! tick. What it saw is kept in a [`BringUp`] record (tests compare them); then it calls the
//! kernel's entry hook, which gives it an idle thread and never returns.
//!
//! **The panic NMI.** [`stop_other_cpus`] sets a flag and sends an NMI to every other CPU; the
//! NMI handler ([`nmi`]) halts forever with interrupts off when the flag is set, and otherwise
//! counts and returns. It runs on its own IST stack and reads no per-CPU data through GS (it
//! finds its CPU from the APIC id), because an NMI can land at any instruction — between
//! SYSCALL and the entry stub's SWAPGS and stack switch too (see `gdt::NMI_IST_INDEX`).
//!
//! Locks: none of its own. The start-up sequence runs on the boot CPU alone (one AP at a
//! time); the records are `Once`s written by their own CPU; the rest are atomics.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::Once;
use x86_64::registers::control::{Cr0, Cr4};
use x86_64::registers::model_specific::{Efer, GsBase, Msr};
use x86_64::structures::paging::PhysFrame;

use super::context::{FrameSource, KernelStack};
use super::gdt::IstStacks;
use super::percpu::{self, MAX_CPUS};
use super::{apic, cpu, fpu, gdt, paging, pkru, syscall, time, trap};

/// How long an AP has to answer the start-up IPIs before it is left out. Under TCG each vCPU
/// is a host thread, and on a loaded host one may not run for a good fraction of a second:
/// 100 ms left a CPU out now and then. (Linux waits up to 10 s, `do_boot_cpu()`.)
pub const ANSWER_MS: u64 = 1000;

/// IA32_PAT (SDM Vol. 3A §11.12.2 "IA32_PAT MSR"): the boot CPU's value, copied to every AP so
/// that a PTE's PAT/PCD/PWT bits mean the same memory type on every CPU.
const IA32_PAT: u32 = 0x277;
static BOOT_PAT: AtomicU64 = AtomicU64::new(0);

/// What the kernel runs on an AP once it is up (an idle thread; never returns).
static ENTRY_HOOK: Once<fn(usize) -> !> = Once::new();

/// The dense CPU index of each APIC id (`u32::MAX`: none), for the NMI handler.
static CPU_OF_APIC: [AtomicU32; 256] = [const { AtomicU32::new(u32::MAX) }; 256];
/// NMIs each CPU took with the panic flag clear.
static NMIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set by [`stop_other_cpus`]: an NMI now means "halt forever".
static STOPPING: AtomicBool = AtomicBool::new(false);
/// How many CPUs have halted for the panic.
static STOPPED: AtomicUsize = AtomicUsize::new(0);

/// The stacks of each AP: the one it starts (and idles) on, and its two IST stacks. Kept for
/// good: a CPU that came up never gives them back.
static AP_STACKS: [Once<[KernelStack; 3]>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// What a CPU saw in its own registers at the end of its bring-up.
#[derive(Debug, Clone, Copy)]
pub struct BringUp {
    pub apic_id: u32,
    pub efer: u64,
    pub cr0: u64,
    pub cr4: u64,
    pub xcr0: u64,
    pub pat: u64,
    /// RDPKRU, if the CPU has protection keys.
    pub pkru: Option<u32>,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    /// RDTSC when the record was made, and the boot CPU's TSC when it sent the first SIPI (a
    /// CPU's TSC must not run behind the boot CPU's: `time` assumes one clock).
    pub tsc: u64,
    pub tsc_at_start: u64,
}

static RECORDS: [Once<BringUp>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// CPU `cpu`'s bring-up record (the boot CPU has none: it was up before pikku).
pub fn bring_up_record(cpu: usize) -> Option<BringUp> {
    RECORDS.get(cpu)?.get().copied()
}

/// The boot CPU's IA32_PAT, which every AP copies.
#[cfg(test)] // used by the in-kernel tests only
pub fn boot_pat() -> u64 {
    BOOT_PAT.load(Ordering::Relaxed)
}

/// NMIs CPU `cpu` took and returned from.
#[cfg(test)] // used by the in-kernel tests only
pub fn nmis(cpu: usize) -> u64 {
    NMIS.get(cpu).map_or(0, |n| n.load(Ordering::Relaxed))
}

// The trampoline. Copied to a frame below 1 MiB and entered there in real mode; never run
// where the linker put it. Position-independent: every address is a difference of two labels
// (a constant), or a field the boot CPU patches. EBX holds the frame's physical address from
// the first instructions on (CS << 4).
core::arch::global_asm!(
    r#"
.pushsection .rodata.pikku_ap_trampoline, "a"
.balign 16
.code16
.global pikku_ap_trampoline_start
pikku_ap_trampoline_start:
    cli
    cld
    xorl %ebx, %ebx
    movw %cs, %bx
    shll $4, %ebx
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (pikku_ap_tr_gdt_ptr - pikku_ap_trampoline_start)
    movl $0x11, %eax                   # CR0 = PE | ET: protected mode; CD and NW (set by
    movl %eax, %cr0                    # INIT: caches off) cleared
    ljmpl *(pikku_ap_tr_far32 - pikku_ap_trampoline_start)

.code32
.global pikku_ap_tr_32
pikku_ap_tr_32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                    # CR4.PAE
    movl %eax, %cr4
    movl (pikku_ap_tr_cr3 - pikku_ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx             # IA32_EFER
    rdmsr
    orl $0x901, %eax                   # SCE | LME | NXE
    wrmsr
    movl $0x80010033, %eax             # CR0 = PG | WP | NE | ET | MP | PE: IA-32e mode active
    movl %eax, %cr0
    ljmpl *(pikku_ap_tr_far64 - pikku_ap_trampoline_start)(%ebx)

.code64
.global pikku_ap_tr_64
pikku_ap_tr_64:
    movl %ebx, %ebx                    # the frame's address, zero-extended
    xorl %eax, %eax
    lock xchgl %eax, (pikku_ap_tr_ticket - pikku_ap_trampoline_start)(%rbx)
    testl %eax, %eax
    jz 2f                              # the start was taken back (or taken): stop here
    movq (pikku_ap_tr_stack - pikku_ap_trampoline_start)(%rbx), %rsp
    movq (pikku_ap_tr_cpu - pikku_ap_trampoline_start)(%rbx), %rdi
    movq (pikku_ap_tr_entry - pikku_ap_trampoline_start)(%rbx), %rax
    xorl %ebp, %ebp
    pushq $0                           # a null return address ends backtraces
    jmp *%rax
2:
    cli
    hlt
    jmp 2b

.balign 8
.global pikku_ap_tr_gdt
pikku_ap_tr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff           # 0x08: 32-bit code
    .quad 0x00cf92000000ffff           # 0x10: data
    .quad 0x00af9a000000ffff           # 0x18: 64-bit code
.global pikku_ap_tr_gdt_ptr
pikku_ap_tr_gdt_ptr:
    .word 31
    .long 0                            # patched: physical address of pikku_ap_tr_gdt
.global pikku_ap_tr_far32
pikku_ap_tr_far32:
    .long 0                            # patched: physical address of pikku_ap_tr_32
    .word 0x08
.global pikku_ap_tr_far64
pikku_ap_tr_far64:
    .long 0                            # patched: physical address of pikku_ap_tr_64
    .word 0x18
.balign 8
.global pikku_ap_tr_cr3
pikku_ap_tr_cr3:
    .quad 0
.global pikku_ap_tr_stack
pikku_ap_tr_stack:
    .quad 0
.global pikku_ap_tr_cpu
pikku_ap_tr_cpu:
    .quad 0
.global pikku_ap_tr_entry
pikku_ap_tr_entry:
    .quad 0
.global pikku_ap_tr_ticket
pikku_ap_tr_ticket:
    .long 0
.global pikku_ap_trampoline_end
pikku_ap_trampoline_end:
.popsection
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static pikku_ap_trampoline_start: u8;
    static pikku_ap_trampoline_end: u8;
    static pikku_ap_tr_32: u8;
    static pikku_ap_tr_64: u8;
    static pikku_ap_tr_gdt: u8;
    static pikku_ap_tr_gdt_ptr: u8;
    static pikku_ap_tr_far32: u8;
    static pikku_ap_tr_far64: u8;
    static pikku_ap_tr_cr3: u8;
    static pikku_ap_tr_stack: u8;
    static pikku_ap_tr_cpu: u8;
    static pikku_ap_tr_entry: u8;
    static pikku_ap_tr_ticket: u8;
}

/// The offset of a trampoline label from its start.
fn offset(label: *const u8) -> usize {
    label as usize - (&raw const pikku_ap_trampoline_start) as usize
}

/// The trampoline's bytes, as the assembler emitted them.
fn trampoline_image() -> &'static [u8] {
    let start = &raw const pikku_ap_trampoline_start;
    let len = offset(&raw const pikku_ap_trampoline_end);
    // SAFETY: start..end is one block of read-only data the assembler emitted above; it lives
    // forever and is never written.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// Why an AP did not come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// No memory for its stacks or its start-up page tables.
    NoMemory,
    /// The APIC could not send the INIT or STARTUP IPI.
    IpiStuck,
    /// It did not answer within [`ANSWER_MS`].
    NoAnswer,
    /// It claimed the start but did not finish its bring-up within a second.
    Stalled,
    /// No frame below 0xA0000 was free for the trampoline at boot.
    NoLowFrame,
    /// More CPUs than the per-CPU tables have room for (`percpu::MAX_CPUS`).
    TooMany,
}

/// Records, on the boot CPU, what every AP must copy (its PAT), which APIC id it has (CPU 0),
/// and the kernel's hook an AP runs once it is up. Before the first [`start_ap`].
pub fn init_boot_cpu(entry: fn(usize) -> !) {
    ENTRY_HOOK.call_once(|| entry);
    // SAFETY: RDMSR of IA32_PAT, which every x86-64 CPU has (CPUID.1:EDX[16]); no side effects.
    BOOT_PAT.store(unsafe { Msr::new(IA32_PAT).read() }, Ordering::Relaxed);
    let apic_id = apic::id();
    percpu::cpu(0).apic_id.store(apic_id, Ordering::Relaxed);
    CPU_OF_APIC[apic_id as usize & 0xff].store(0, Ordering::Relaxed);
    percpu::cpu(0).online.store(true, Ordering::Release);
}

fn delay_us(us: u64) {
    let end = time::rdtsc().saturating_add(time::tsc_per_ms().max(1).saturating_mul(us) / 1000);
    while time::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Starts the AP with APIC id `apic_id` as CPU `cpu` (the next dense index), through the
/// trampoline frame `trampoline` (below 1 MiB), taking frames from `frames`. Returns once the
/// AP is online, or with the reason it was left out — never later than about two seconds.
pub fn start_ap(cpu: usize, apic_id: u32, trampoline: PhysFrame, frames: FrameSource) -> Result<(), StartError> {
    assert!((1..MAX_CPUS).contains(&cpu), "CPU index {cpu} out of range");
    assert!(trampoline.start_address().as_u64() < 0xa_0000, "the trampoline must lie below 0xA0000");
    let stacks = AP_STACKS[cpu].try_call_once(|| -> Result<[KernelStack; 3], StartError> {
        let stack = || KernelStack::for_cpu().ok_or(StartError::NoMemory);
        Ok([stack()?, stack()?, stack()?])
    })?;
    let mut free = frames.free;
    let tree = paging::start_up_tree(trampoline, frames.alloc, &mut free).ok_or(StartError::NoMemory)?;

    // Copy the trampoline down and patch it (through the physical window: the frame is ours).
    let base = trampoline.start_address().as_u64();
    let image = trampoline_image();
    assert!(image.len() <= 4096, "the trampoline outgrew its page");
    paging::write_frame(trampoline, 0, image);
    let patch32 = |label: *const u8, value: u32| paging::write_frame(trampoline, offset(label), &value.to_le_bytes());
    let patch64 = |label: *const u8, value: u64| paging::write_frame(trampoline, offset(label), &value.to_le_bytes());
    let phys_of = |label: *const u8| (base + offset(label) as u64) as u32;
    // The GDT pointer's base sits 2 bytes in (after the limit); the far pointers' offsets first.
    paging::write_frame(trampoline, offset(&raw const pikku_ap_tr_gdt_ptr) + 2, &phys_of(&raw const pikku_ap_tr_gdt).to_le_bytes());
    patch32(&raw const pikku_ap_tr_far32, phys_of(&raw const pikku_ap_tr_32));
    patch32(&raw const pikku_ap_tr_far64, phys_of(&raw const pikku_ap_tr_64));
    patch64(&raw const pikku_ap_tr_cr3, tree.frame().start_address().as_u64());
    patch64(&raw const pikku_ap_tr_stack, stacks[0].top());
    patch64(&raw const pikku_ap_tr_cpu, cpu as u64);
    patch64(&raw const pikku_ap_tr_entry, ap_entry as *const () as u64);
    // Publish the ticket last; the IPIs below order every store before the AP runs.
    patch32(&raw const pikku_ap_tr_ticket, 1);
    let ticket = paging::frame_atomic_u32(trampoline, offset(&raw const pikku_ap_tr_ticket));

    TSC_AT_START.store(time::rdtsc(), Ordering::Relaxed);
    let page = (base >> 12) as u8;
    let result = (|| {
        if !apic::send_init(apic_id) {
            return Err(StartError::IpiStuck);
        }
        delay_us(10_000);
        for _ in 0..2 {
            if !apic::send_startup(apic_id, page) {
                return Err(StartError::IpiStuck);
            }
            delay_us(200);
            if ticket.load(Ordering::Acquire) == 0 {
                break;
            }
        }
        let deadline = time::rdtsc().saturating_add(time::tsc_per_ms().max(1) * ANSWER_MS);
        while ticket.load(Ordering::Acquire) != 0 && time::rdtsc() < deadline {
            core::hint::spin_loop();
        }
        // Take the start back; if the AP claimed it in the meantime, it is on its way.
        if ticket.swap(0, Ordering::AcqRel) != 0 {
            return Err(StartError::NoAnswer);
        }
        let deadline = time::rdtsc().saturating_add(time::tsc_per_ms().max(1) * 1000);
        while !percpu::cpu(cpu).online.load(Ordering::Acquire) {
            if time::rdtsc() > deadline {
                return Err(StartError::Stalled);
            }
            core::hint::spin_loop();
        }
        Ok(())
    })();
    match result {
        // The AP left the start-up tree for the kernel's before it went online.
        Ok(()) => paging::free_start_up_tree(tree, &mut free),
        // An AP that never claimed the start never uses the tree; one that stalled might be
        // in it still: keep its frames (a root given up frees nothing) rather than free what a
        // CPU may walk.
        Err(StartError::NoAnswer | StartError::IpiStuck) => paging::free_start_up_tree(tree, &mut free),
        Err(_) => {
            let _kept = tree.into_frame();
        }
    }
    result
}

static TSC_AT_START: AtomicU64 = AtomicU64::new(0);

/// Where an AP enters the kernel from the trampoline: 64-bit mode, interrupts off, on its own
/// stack, CR3 = the start-up tree, nothing else set up.
extern "C" fn ap_entry(cpu: u64) -> ! {
    let cpu = cpu as usize;
    let stacks = AP_STACKS[cpu].get().expect("an AP started without stacks");
    // Segments and the TSS first (its own, with its own IST stacks), then the IDT; the GS base
    // only after every selector load, which would clear it.
    gdt::init_cpu(cpu, IstStacks { double_fault: stacks[1].top(), nmi: stacks[2].top() });
    trap::init();
    let apic_id = apic::id();
    percpu::init_cpu(cpu, apic_id);
    CPU_OF_APIC[apic_id as usize & 0xff].store(cpu as u32, Ordering::Relaxed);
    // The kernel's own tree (the start-up tree is freed once this CPU is online).
    paging::activate_kernel_root();
    // SAFETY: the boot CPU's PAT value, valid on every CPU of the machine (the same model).
    unsafe { Msr::new(IA32_PAT).write(BOOT_PAT.load(Ordering::Relaxed)) };
    cpu::enable_write_protect();
    cpu::enable_sse();
    fpu::init();
    cpu::enable_protection_keys();
    cpu::enable_smep_smap();
    super::pks::enable_this_cpu(false);
    syscall::init_this_cpu();
    apic::enable_this_cpu();
    record_bring_up(cpu, apic_id);
    percpu::cpu(cpu).online.store(true, Ordering::Release);
    let entry = ENTRY_HOOK.get().expect("smp::init_boot_cpu not called");
    entry(cpu)
}

fn record_bring_up(cpu: usize, apic_id: u32) {
    // XGETBV is defined once CR4.OSXSAVE is set (fpu::init set it where XSAVE exists).
    let xcr0 = if Cr4::read_raw() & (1 << 18) != 0 { x86_64::registers::xcontrol::XCr0::read_raw() } else { 0 };
    RECORDS[cpu].call_once(|| BringUp {
        apic_id,
        efer: Efer::read_raw(),
        cr0: Cr0::read_raw(),
        cr4: Cr4::read_raw(),
        xcr0,
        // SAFETY: RDMSR of IA32_PAT (see `init_boot_cpu`).
        pat: unsafe { Msr::new(IA32_PAT).read() },
        pkru: cpu::ospke().then(|| pkru::read().bits()),
        gs_base: GsBase::read().as_u64(),
        // SAFETY: RDMSR of IA32_KERNEL_GS_BASE (0xC000_0102), present in 64-bit mode.
        kernel_gs_base: unsafe { Msr::new(0xc000_0102).read() },
        tsc: time::rdtsc(),
        tsc_at_start: TSC_AT_START.load(Ordering::Relaxed),
    });
}

/// Sends IPI `vector` to CPU `cpu` (dense index). Returns `false` if that CPU is not online or
/// the APIC did not send it within 100 ms.
pub fn send_ipi(cpu: usize, vector: u8) -> bool {
    let Some(target) = (cpu < MAX_CPUS).then(|| percpu::cpu(cpu)) else { return false };
    target.online.load(Ordering::Acquire) && apic::send_fixed(target.apic_id.load(Ordering::Relaxed), vector)
}

/// The NMI handler (called first thing from `trap_dispatch`, on the NMI's IST stack). With the
/// panic flag set: halt forever, interrupts off (NMIs stay blocked too: no IRET ever ends this
/// one). Otherwise count it and return. It touches no lock and no GS-relative data — GS may
/// hold the user's base here (an NMI between SYSCALL and SWAPGS) — and prints nothing (the
/// interrupted code may hold the console's lock).
pub fn nmi(_frame: &mut trap::TrapFrame) {
    if STOPPING.load(Ordering::Acquire) {
        STOPPED.fetch_add(1, Ordering::AcqRel);
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
    if apic::ready() {
        let cpu = CPU_OF_APIC[apic::id() as usize & 0xff].load(Ordering::Relaxed);
        if let Some(count) = NMIS.get(cpu as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Stops every other CPU for a panic: sets the flag, sends them an NMI, and waits (at most
/// 100 ms) until each has halted. After this the panicking CPU is alone, so it may break the
/// console's lock. Returns how many stopped.
pub fn stop_other_cpus() -> usize {
    STOPPING.store(true, Ordering::Release);
    let others = percpu::online_cpus().count().saturating_sub(1);
    if others == 0 || !apic::ready() {
        return 0;
    }
    apic::send_nmi_to_others();
    let deadline = time::rdtsc().saturating_add(time::tsc_per_ms().max(1) * 100);
    while STOPPED.load(Ordering::Acquire) < others && time::rdtsc() < deadline {
        core::hint::spin_loop();
    }
    STOPPED.load(Ordering::Acquire)
}
