//! Exceptions: the IDT, the entry stubs, the trap frame, and the reports.
//!
//! Every one of the 32 exception vectors enters through a small assembly stub that makes the
//! stack look the same for all of them (Intel SDM Vol. 3A §6.14 "Exception and Interrupt
//! Handling in 64-bit Mode"):
//!
//! ```text
//!   higher addresses
//!   ss, rsp, rflags, cs, rip   pushed by the CPU (§6.14.2 "64-Bit Mode Stack Frame")
//!   error code                 pushed by the CPU for vectors 8, 10-14, 17, 21, 29, 30; else a 0 by the stub
//!   vector number              pushed by the stub
//!   r15 … rax                  pushed by `trap_common`
//!   lower addresses            ← rsp = &TrapFrame, passed to `trap_dispatch`
//! ```
//!
//! `trap_dispatch` sees the whole interrupted register state as a [`TrapFrame`] and may change
//! it: fault recovery ([`super::extable`]) rewrites `rip` and `rax`; signal delivery
//! rewrites the user context the same way. Every unrecoverable exception in the kernel prints a
//! decoded report and panics; the page-fault report decodes every error-code bit, including
//! PK (bit 5), the protection-key bit.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::{Lazy, Once};
use x86_64::registers::control::Cr2;

/// The register state at the moment of the exception. Field order = push order, reversed.
#[repr(C)]
#[derive(Debug, Clone)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The system-call number this frame entered with (Linux: `pt_regs.orig_ax`), or `u64::MAX`
    /// (-1) for a frame of an exception or interrupt. The SYSCALL entry stores the number in
    /// the error-code slot; `rt_sigreturn` and ptrace may set it to -1 so that no restart
    /// happens.
    pub fn orig_rax(&self) -> u64 {
        if self.vector == super::syscall::SYSCALL_VECTOR { self.error_code } else { u64::MAX }
    }

    /// Sets [`Self::orig_rax`] of a system-call frame (nothing for other frames).
    pub fn set_orig_rax(&mut self, value: u64) {
        if self.vector == super::syscall::SYSCALL_VECTOR {
            self.error_code = value;
        }
    }

    /// Did the exception interrupt user mode (CPL 3)?
    pub fn interrupted_user_mode(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Exception vectors by name (SDM Vol. 3A Table 6-1 "Protected-Mode Exceptions and
/// Interrupts"; that edition reserves 21–31 — #CP, #VC and #SX are later Intel and AMD names).
pub mod vector {
    pub const NMI: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const DOUBLE_FAULT: u64 = 8;
    pub const PAGE_FAULT: u64 = 14;
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating-point error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point",
    "#VE virtualization",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

/// The name of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

// The 32 entry stubs and the common path. `ISR_ERR` is for vectors where the CPU pushes an
// error code; `ISR_NOERR` pushes a 0 in its place so the frame has one shape.
/// The frame's layout is a contract with the assembly below and in `syscall`: fifteen general
/// registers (pushed by [`push_gprs!`](crate::push_gprs!), `rax` lowest), then the vector and error
/// code (pushed by the stubs), then the five words the CPU pushes. The compiler checks it here, so
/// a field moved in the struct cannot silently disagree with the stubs.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(TrapFrame, rax) == 0);
    assert!(offset_of!(TrapFrame, r15) == 14 * 8);
    assert!(offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(offset_of!(TrapFrame, error_code) == 16 * 8);
    assert!(offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(offset_of!(TrapFrame, ss) == 21 * 8);
    assert!(size_of::<TrapFrame>() == 22 * 8);
};

/// Where the interrupted CS sits while the stubs hold RSP at the frame's `vector` word (before
/// the general registers are pushed, and after they are popped again): its low two bits are
/// the CPL the exception came from.
const CS_ABOVE_VECTOR: usize = core::mem::offset_of!(TrapFrame, cs) - core::mem::offset_of!(TrapFrame, vector);

/// The general registers in [`TrapFrame`] order, pushed (`rax` ends up at the lowest address).
/// Shared by the exception stubs and the SYSCALL entry, so both build the same frame.
#[macro_export]
macro_rules! push_gprs {
    () => {
        "push r15\npush r14\npush r13\npush r12\npush r11\npush r10\npush r9\npush r8\npush rbp\npush rdi\npush rsi\npush rdx\npush rcx\npush rbx\npush rax\n"
    };
}

/// The inverse of [`push_gprs!`](crate::push_gprs!).
#[macro_export]
macro_rules! pop_gprs {
    () => {
        "pop rax\npop rbx\npop rcx\npop rdx\npop rsi\npop rdi\npop rbp\npop r8\npop r9\npop r10\npop r11\npop r12\npop r13\npop r14\npop r15\n"
    };
}

core::arch::global_asm!(
    concat!(
        r#"
.macro ISR_NOERR n
    .global pikku_isr\n
pikku_isr\n:
    push 0
    push \n
    jmp pikku_trap_common
.endm
.macro ISR_ERR n
    .global pikku_isr\n
pikku_isr\n:
    push \n
    jmp pikku_trap_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31
ISR_NOERR 32
ISR_NOERR 33
ISR_NOERR 34
ISR_NOERR 35
ISR_NOERR 36
ISR_NOERR 37
ISR_NOERR 38
ISR_NOERR 39
ISR_NOERR 40
ISR_NOERR 41
ISR_NOERR 42
ISR_NOERR 43
ISR_NOERR 44
ISR_NOERR 45
ISR_NOERR 46
ISR_NOERR 47
ISR_NOERR 48
ISR_NOERR 49

// Vectors 50-255: nothing is wired to them (the 8259s are masked); a stray one returns. The
// local APIC's spurious vector (0xFF) is one of them: it must return without an EOI.
.global pikku_isr_spurious
pikku_isr_spurious:
    iretq

pikku_trap_common:
    // From user mode, GS still holds the user's base: swap in the kernel's per-CPU base
    // (SWAPGS, SDM Vol. 2B "SWAPGS—Swap GS Base Register"; the way back is IRETQ, Vol. 3A §6.14.3
    // "IRET in IA-32e Mode").
    // (cs is above vector, error code and rip.)
    test byte ptr [rsp + {cs_above_vector}], 3
    jz 1f
    swapgs
1:
"#,
        push_gprs!(),
        r#"    mov rdi, rsp          // &mut TrapFrame
    cld                   // the Rust ABI expects DF = 0
    call {dispatch}
    // Fall through: the one way back from any trap, also used by the SYSCALL exit's IRET path
    // and by a new thread's first entry to user mode (rsp = &TrapFrame).
.global pikku_trap_return
pikku_trap_return:
"#,
        pop_gprs!(),
        r#"    test byte ptr [rsp + {cs_above_vector}], 3
    jz 2f
    swapgs
2:
    add rsp, 16           // vector and error code
    iretq
"#
    ),
    dispatch = sym trap_dispatch,
    cs_above_vector = const CS_ABOVE_VECTOR,
);

/// Stubs: the 32 exceptions, the 16 IRQ vectors (32–47: where the PICs were moved; the local
/// APIC timer uses 32) and the two IPI vectors (48 reschedule, 49 TLB shootdown: `apic`).
const STUBS: usize = 50;

/// First vector of the remapped PIC IRQs.
pub const IRQ_BASE: u64 = 32;

/// One IDT gate (SDM Vol. 3A §6.14.1 "64-Bit Mode IDT", Figure 6-7 "64-Bit IDT Gate
/// Descriptors").
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate { offset_low: 0, selector: 0, ist: 0, type_attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// A present interrupt gate (type 0xE: IF is cleared on entry) for ring 0.
    fn interrupt(handler: u64, selector: u16, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist,
            type_attr: 0x8e, // P=1, DPL=0, type=0xE
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

unsafe extern "C" {
    /// 32 `i32` offsets, stub address minus the table's own address (emitted below). Offsets
    /// instead of absolute addresses: the kernel is position-independent and this way the table
    /// needs no relocation.
    static pikku_isr_table: [i32; STUBS];
    static pikku_isr_spurious: u8;
}

core::arch::global_asm!(
    r#"
.macro ISR_ENTRY n
    .long pikku_isr\n - pikku_isr_table
.endm
.pushsection .rodata
.balign 4
.global pikku_isr_table
pikku_isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49
    ISR_ENTRY \n
    .endr
.popsection
"#
);

static IDT: Lazy<Idt> = Lazy::new(|| {
    let table = &raw const pikku_isr_table;
    // SAFETY: the assembler emitted STUBS offsets at this address; reading has no side effects.
    let offsets: [i32; STUBS] = unsafe { table.read() };
    let cs = super::gdt::selectors().kernel_code.0;
    let mut idt = Idt([Gate::MISSING; 256]);
    for (v, &offset) in offsets.iter().enumerate() {
        let addr = (table as u64).wrapping_add_signed(offset as i64);
        // The double fault and the NMI run on their own known-good stacks (IST numbers are
        // 1-based in the gate; see `gdt::NMI_IST_INDEX` for why the NMI needs one).
        let ist = match v as u64 {
            vector::DOUBLE_FAULT => super::gdt::DOUBLE_FAULT_IST_INDEX as u8 + 1,
            vector::NMI => super::gdt::NMI_IST_INDEX as u8 + 1,
            _ => 0,
        };
        idt.0[v] = Gate::interrupt(addr, cs, ist);
    }
    let spurious = &raw const pikku_isr_spurious as u64;
    for gate in idt.0.iter_mut().skip(STUBS) {
        *gate = Gate::interrupt(spurious, cs, 0);
    }
    idt
});

/// Loads the IDT (SDM Vol. 3A §6.10 "Interrupt Descriptor Table (IDT)"; Vol. 2A "LGDT/LIDT").
pub fn init() {
    let idt: &'static Idt = &IDT;
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(idt),
    };
    // SAFETY: the table lives forever (static) and every present gate points at a stub above
    // that ends in IRETQ with the stack as the CPU left it.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

/// Ends the machine with a triple fault, on purpose: with an empty IDT every exception becomes
/// a double fault, then a triple fault (SDM Vol. 3A §6.15, "Interrupt 8—Double Fault
/// Exception"), which `-no-reboot` turns into QEMU exiting with status 0. Exists only for the
/// test harness's self-test, which proves the host reports such a boot as a failure.
#[cfg(test)] // used by the in-kernel tests only
pub fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately destroys the machine state: an empty IDT and a breakpoint leave the
    // CPU no way to deliver the exception, so it shuts down; nothing after it runs.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(noreturn));
    }
}

/// How many exceptions of each vector the kernel recovered from (fault recovery), for tests.
static RECOVERED: [AtomicU64; STUBS] = [const { AtomicU64::new(0) }; STUBS];

/// Number of recovered exceptions of `vector` so far.
#[cfg(test)] // used by the in-kernel tests only
pub fn recovered_count(vector: u64) -> u64 {
    RECOVERED.get(vector as usize).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// What the layers above `arch` decide about traps. `arch` provides the mechanism (entry,
/// frame, return); the kernel registers the policy once at boot, so this module never needs to
/// know what a process is.
pub struct Hooks {
    /// An exception from user mode (the frame is the user's registers; `cr2` is valid for page
    /// faults). Returns to retry the instruction, or never returns if the thread was ended.
    pub user_exception: fn(&mut TrapFrame, u64),
    /// A kernel-mode page fault on a user address (a user copy touching a page not mapped
    /// yet): returns `true` if the page is now mapped and the instruction can be retried.
    /// Linux handles these in `do_user_addr_fault()` before trying the exception table.
    pub kernel_fault_on_user_address: fn(u64, PageFaultError) -> bool,
    /// A hardware interrupt (IRQ number 0–15; 0 is this CPU's timer tick); the frame says
    /// whether user code was running. The hook sends the end of interrupt.
    pub irq: fn(&mut TrapFrame, u8),
    /// An inter-processor interrupt, already acknowledged (EOI sent) and counted.
    pub ipi: fn(&mut TrapFrame, Ipi),
}

/// The inter-processor interrupts the kernel handles (vectors in `apic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipi {
    /// Another CPU made a thread ready here: look at the run queue.
    Reschedule,
    /// Another CPU changed page tables this CPU may cache: flush.
    TlbShootdown,
}

static HOOKS: Once<Hooks> = Once::new();

/// Registers the kernel's trap policy (once, at boot).
pub fn set_hooks(hooks: Hooks) {
    HOOKS.call_once(|| hooks);
}

fn ipi_of(vector: u64) -> Option<Ipi> {
    match vector {
        v if v == u64::from(super::apic::RESCHEDULE_VECTOR) => Some(Ipi::Reschedule),
        v if v == u64::from(super::apic::TLB_SHOOTDOWN_VECTOR) => Some(Ipi::TlbShootdown),
        _ => None,
    }
}

/// The Rust side of every exception.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let v = frame.vector;
    // First, before anything reads per-CPU data: an NMI may have interrupted the SYSCALL entry
    // before its SWAPGS, when GS still holds the user's base (see `smp::nmi`).
    if v == vector::NMI {
        let interrupted = super::pks::nmi_enter();
        super::smp::nmi(frame);
        return super::pks::nmi_exit(interrupted);
    }
    // An exception inside a page-table write window runs its handler with the window closed;
    // the window opens again when this is dropped, on the way back (`pks`).
    let pkrs = super::pks::ExceptionPkrs::enter();
    if let Some(ipi) = ipi_of(v) {
        super::apic::end_of_interrupt();
        let cpu = super::percpu::this_cpu();
        match ipi {
            Ipi::Reschedule => cpu.reschedule_ipis.fetch_add(1, Ordering::Relaxed),
            Ipi::TlbShootdown => cpu.shootdown_ipis.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(hooks) = HOOKS.get() {
            (hooks.ipi)(frame, ipi);
        }
        return;
    }
    if (IRQ_BASE..IRQ_BASE + 16).contains(&v) {
        match HOOKS.get() {
            Some(hooks) => return (hooks.irq)(frame, (v - IRQ_BASE) as u8),
            None => return super::timer::end_of_interrupt(),
        }
    }
    // CR2 holds the faulting linear address (SDM Vol. 3A §6.15 "Interrupt 14—Page-Fault
    // Exception (#PF)").
    let cr2 = if v == vector::PAGE_FAULT { Cr2::read_raw() } else { 0 };
    if frame.interrupted_user_mode() {
        match HOOKS.get() {
            Some(hooks) => return (hooks.user_exception)(frame, cr2),
            None => panic!("exception {} from user mode before trap hooks were set", vector_name(v)),
        }
    }
    if v == vector::BREAKPOINT {
        super::pks::note_breakpoint(super::pks::interrupted_pkrs(&pkrs));
        crate::log_info!("breakpoint at {:#x}", frame.rip);
        return;
    }
    if v == vector::PAGE_FAULT && cr2 < super::paging::USER_END {
        let error = PageFaultError::from_bits_retain(frame.error_code);
        if HOOKS.get().is_some_and(|h| (h.kernel_fault_on_user_address)(cr2, error)) {
            return;
        }
    }
    if v != vector::DOUBLE_FAULT {
        // A kernel instruction that was marked as allowed to fault (user-memory access, probing
        // an instruction): resume at its recovery point with the fault in rax.
        if super::extable::fixup(frame) {
            RECOVERED[v as usize].fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // A kernel stack overflow: the push that touched the guard below a thread's kernel stack
    // faulted, delivering that page fault needed the same stack and faulted again, and the CPU
    // turned the pair into a double fault (SDM Vol. 3A §6.15, Table 6-5), which runs on the IST
    // stack. CR2 still holds the guard address (§6.15, "Interrupt 14").
    let fault_addr = if v == vector::DOUBLE_FAULT { Cr2::read_raw() } else { cr2 };
    if v == vector::DOUBLE_FAULT || v == vector::PAGE_FAULT {
        if let Some(tid) = super::context::guard_owner(fault_addr) {
            panic!(
                "kernel stack overflow: thread {tid} ran off the bottom of its kernel stack ({} handler; guard page at {fault_addr:#x})\n{}",
                vector_name(v),
                FrameReport(frame)
            );
        }
    }
    if v == vector::PAGE_FAULT {
        let error = PageFaultError::from_bits_retain(frame.error_code);
        if error.contains(PageFaultError::PROTECTION_KEY) && !error.contains(PageFaultError::USER) {
            // The error code names no key: the kernel's own entry for CR2 does.
            let key = super::paging::kernel_key_of(cr2);
            panic!(
                "PKS violation: a kernel {} of {cr2:#x}, a page with supervisor key {}{} (IA32_PKRS {:#x}), at rip {:#x}\n{}",
                if error.contains(PageFaultError::WRITE) { "write" } else { "read" },
                key.map_or(-1, |k| i32::from(k.index())),
                if key == Some(super::pks::PAGE_TABLE_KEY) { " (page tables: written outside a write window)" } else { "" },
                super::percpu::this_cpu().pkrs.load(Ordering::Relaxed),
                frame.rip,
                PageFaultReport { frame, addr: cr2 }
            );
        }
        panic!("unhandled page fault in the kernel\n{}", PageFaultReport { frame, addr: cr2 });
    }
    panic!("unhandled exception {} (vector {v})\n{}", vector_name(v), FrameReport(frame));
}

bitflags::bitflags! {
    /// The page-fault error code (SDM Vol. 3A §4.7 "Page-Fault Exceptions", Figure 4-12 "Page-Fault
    /// Error Code").
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PageFaultError: u64 {
        /// P: 0 = the page was not present; 1 = a protection violation.
        const PRESENT = 1 << 0;
        /// W/R: the access was a write.
        const WRITE = 1 << 1;
        /// U/S: the access came from user mode (CPL 3).
        const USER = 1 << 2;
        /// RSVD: a reserved bit was set in a paging-structure entry.
        const RESERVED = 1 << 3;
        /// I/D: the access was an instruction fetch.
        const INSTRUCTION = 1 << 4;
        /// PK: protection keys forbade the access (PKRU for user pages, PKRS for supervisor).
        const PROTECTION_KEY = 1 << 5;
        /// SS: a shadow-stack access.
        const SHADOW_STACK = 1 << 6;
        /// HLAT: the fault happened during HLAT paging.
        const HLAT = 1 << 7;
        /// SGX: an SGX-specific access-control violation.
        const SGX = 1 << 15;
    }
}

impl fmt::Display for PageFaultError {
    /// Every bit, spelled out: `not-present read user-mode data …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = *self;
        write!(
            f,
            "P={} ({}) W/R={} ({}) U/S={} ({}) RSVD={} I/D={} ({}) PK={}{} SS={}",
            e.contains(Self::PRESENT) as u8,
            if e.contains(Self::PRESENT) { "protection violation" } else { "page not present" },
            e.contains(Self::WRITE) as u8,
            if e.contains(Self::WRITE) { "write" } else { "read" },
            e.contains(Self::USER) as u8,
            if e.contains(Self::USER) { "user mode" } else { "supervisor mode" },
            e.contains(Self::RESERVED) as u8,
            e.contains(Self::INSTRUCTION) as u8,
            if e.contains(Self::INSTRUCTION) { "instruction fetch" } else { "data access" },
            e.contains(Self::PROTECTION_KEY) as u8,
            if e.contains(Self::PROTECTION_KEY) { " (protection key)" } else { "" },
            e.contains(Self::SHADOW_STACK) as u8,
        )
    }
}

/// The registers of a frame, for reports.
pub struct FrameReport<'a>(pub &'a TrapFrame);

impl fmt::Display for FrameReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        writeln!(f, "  rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x} error={:#x}", t.rip, t.cs, t.rflags, t.rsp, t.ss, t.error_code)?;
        writeln!(f, "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}", t.rax, t.rbx, t.rcx, t.rdx)?;
        writeln!(f, "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}", t.rsi, t.rdi, t.rbp, t.r8)?;
        writeln!(f, "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}", t.r9, t.r10, t.r11, t.r12)?;
        write!(f, "  r13={:#018x} r14={:#018x} r15={:#018x}", t.r13, t.r14, t.r15)
    }
}

/// A page fault, decoded.
pub struct PageFaultReport<'a> {
    pub frame: &'a TrapFrame,
    pub addr: u64,
}

impl fmt::Display for PageFaultReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = PageFaultError::from_bits_retain(self.frame.error_code);
        writeln!(f, "  address (CR2)={:#018x}", self.addr)?;
        writeln!(f, "  error code {:#x}: {}", self.frame.error_code, e)?;
        write!(f, "{}", FrameReport(self.frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn a_breakpoint_returns_to_the_next_instruction() {
        let mut x = 1u64;
        // SAFETY: int3 traps to the breakpoint handler, which logs and returns.
        unsafe { core::arch::asm!("int3", "add {0}, 1", inout(reg) x) };
        assert_eq!(x, 2);
    }

    #[ktest]
    fn page_fault_error_codes_are_decoded_bit_by_bit() {
        let text = alloc::format!("{}", PageFaultError::from_bits_retain(0x23));
        assert!(text.contains("P=1 (protection violation)"), "{text}");
        assert!(text.contains("W/R=1 (write)"), "{text}");
        assert!(text.contains("U/S=0 (supervisor mode)"), "{text}");
        assert!(text.contains("PK=1 (protection key)"), "{text}");
        let text = alloc::format!("{}", PageFaultError::from_bits_retain(0x14));
        assert!(text.contains("P=0 (page not present)") && text.contains("U/S=1 (user mode)") && text.contains("I/D=1 (instruction fetch)"), "{text}");
    }
}
