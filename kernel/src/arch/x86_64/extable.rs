//! Recoverable kernel instructions — Linux's exception table (`fixup_exception()`,
//! `arch/x86/mm/extable.c`).
//!
//! Some kernel instructions may fault *by design*: copying to or from a user buffer that turns
//! out to be unmapped or key-protected, or probing an instruction the CPU might not have. Such an
//! instruction is marked at the place it is written: the assembly emits an entry into the
//! section `pikku_extable` holding two 32-bit offsets — the instruction, and where to resume.
//! When an exception hits kernel code, [`fixup`] (called by the trap dispatcher) looks up the
//! faulting RIP; if an entry matches, the trap frame is rewritten so that the code resumes at
//! the recovery point with the fault described in registers instead of the kernel panicking:
//!
//! * `rax` = [`FAULT_FLAG`] | vector << 32 | error code — decoded by [`Fault::from_rax`];
//! * `rdx` = CR2 (the faulting address) for page faults, 0 otherwise.
//!
//! So every recoverable site declares `rax` (in: 0, out: status) and `rdx` (out) as operands.
//! Offsets are relative to the entry's own fields, like Linux's, so the table needs no
//! relocation in a position-independent kernel. The section is marked `R` (SHF_GNU_RETAIN) so
//! the linker keeps it although no code names it; the linker defines `__start_pikku_extable`
//! and `__stop_pikku_extable` around it.

use super::trap::TrapFrame;
use x86_64::registers::control::Cr2;

/// Set in `rax` at the recovery point when the instruction faulted.
pub const FAULT_FLAG: u64 = 1 << 63;

/// Emits the extable entry for the instruction at local label `$insn`, resuming at `$fixup`
/// (both written as in GNU as, e.g. `"2b"`, `"3f"`). Use inside `asm!` templates.
#[macro_export]
macro_rules! extable_entry {
    ($insn:literal, $fixup:literal) => {
        concat!(
            ".pushsection pikku_extable, \"aR\", @progbits\n",
            ".balign 4\n",
            ".long ", $insn, " - .\n",
            ".long ", $fixup, " - .\n",
            ".popsection\n"
        )
    };
}

// The section exists even in a build with no recoverable instruction (then it is empty), so
// the linker always defines its start/stop symbols.
core::arch::global_asm!(".pushsection pikku_extable, \"aR\", @progbits", ".balign 4", ".popsection");

#[repr(C)]
struct Entry {
    insn: i32,
    fixup: i32,
}

impl Entry {
    fn insn_addr(&self) -> u64 {
        (&raw const self.insn as u64).wrapping_add_signed(self.insn as i64)
    }
    fn fixup_addr(&self) -> u64 {
        (&raw const self.fixup as u64).wrapping_add_signed(self.fixup as i64)
    }
}

unsafe extern "C" {
    static __start_pikku_extable: Entry;
    static __stop_pikku_extable: Entry;
}

fn entries() -> &'static [Entry] {
    let start = &raw const __start_pikku_extable;
    let stop = &raw const __stop_pikku_extable;
    let len = (stop as usize - start as usize) / core::mem::size_of::<Entry>();
    // SAFETY: the linker places every `pikku_extable` entry contiguously between the two
    // symbols; entries are 4-byte aligned pairs of i32 and are never written.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// How many recoverable instructions the kernel has.
#[cfg(test)] // used by the in-kernel tests only
pub fn entry_count() -> usize {
    entries().len()
}

/// If `frame.rip` is a recoverable instruction, redirects the frame to its recovery point and
/// returns `true`. Linux: `fixup_exception()` with an `EX_TYPE_UACCESS`-like handler.
pub fn fixup(frame: &mut TrapFrame) -> bool {
    let Some(entry) = entries().iter().find(|e| e.insn_addr() == frame.rip) else {
        return false;
    };
    frame.rax = FAULT_FLAG | ((frame.vector & 0xff) << 32) | (frame.error_code & 0xffff_ffff);
    frame.rdx = if frame.vector == super::trap::vector::PAGE_FAULT { Cr2::read_raw() } else { 0 };
    frame.rip = entry.fixup_addr();
    true
}

/// A fault taken by a recoverable instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The exception vector (14 = #PF, 6 = #UD, 13 = #GP, …).
    pub vector: u8,
    /// The exception's error code (for #PF: P, W/R, U/S, RSVD, I/D, PK, SS bits).
    pub error_code: u32,
    /// CR2 for page faults: the address that faulted.
    pub address: u64,
}

impl Fault {
    /// Decodes the registers a recovery point receives; `None` if nothing faulted.
    pub fn from_rax(rax: u64, rdx: u64) -> Option<Fault> {
        (rax & FAULT_FLAG != 0).then_some(Fault { vector: (rax >> 32) as u8, error_code: rax as u32, address: rdx })
    }

    /// The page-fault error code, decoded.
    pub fn page_fault_error(&self) -> super::trap::PageFaultError {
        super::trap::PageFaultError::from_bits_retain(self.error_code as u64)
    }
}
