//! User FPU/SSE/AVX state per thread: XSAVE and XRSTOR (or FXSAVE/FXRSTOR without XSAVE).
//!
//! The kernel itself never touches these registers (it is built soft-float), so a thread's
//! floating-point state stays in the CPU from its user mode through syscalls and interrupts;
//! only a context switch between two user threads must save one and load the other (eagerly,
//! on every switch, as Linux does since 4.x).
//!
//! XSAVE (Intel SDM Vol. 1 chapter 13 "Managing State Using the XSAVE Feature Set"; the
//! instructions in Vol. 2C "XSAVE" / "XRSTOR", and Vol. 2A "FXSAVE" / "FXRSTOR" for the legacy
//! 512-byte form) saves the components enabled in XCR0 (Vol. 3A §2.6 "Extended Control Registers
//! (Including XCR0)") and selected by an instruction mask EDX:EAX. pikku enables x87 | SSE | AVX
//! (as the CPU offers) **and PKRU** (component 9) in XCR0, so that a signal frame's XSAVE area can
//! hold PKRU exactly where Linux puts it (CPUID.(0Dh,9).EBX, 2688 under `-cpu max`). But the
//! context switch masks PKRU *out* of both XSAVE and XRSTOR: PKRU is switched eagerly by
//! `task::switch_pkru` (Linux: `x86_pkru_load()`; its `XFEATURE_MASK_USER_RESTORE` excludes PKRU
//! for the same reason), so an XRSTOR can never overwrite the live PKRU behind the scheduler's
//! back.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use spin::Once;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};

use super::cpu;

/// How state is saved on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// XSAVE/XRSTOR with this XCR0 and area size.
    Xsave { xcr0: u64, size: usize },
    /// FXSAVE/FXRSTOR: x87 and SSE only, 512 bytes.
    Fxsave,
}

static METHOD: Once<Method> = Once::new();
static INITIAL: Once<FpuState> = Once::new();
static PKRU_OFFSET: Once<Option<usize>> = Once::new();

/// XCR0 bit of PKRU.
pub const XFEATURE_PKRU: u64 = 1 << 9;

/// Turns on XSAVE on *this* CPU with the components the first call (the boot CPU's) picked,
/// once, for the whole system (call on every CPU, after SSE is enabled).
pub fn init() -> Method {
    let method = *METHOD.call_once(|| {
        if !cpu::features().xsave {
            return Method::Fxsave;
        }
        // CPUID.(0Dh,0).EDX:EAX: the components XCR0 may enable (SDM Vol. 1 §13.2
        // "Enumeration of CPU Support for XSAVE Instructions and XSAVE-Supported Features").
        let supported = {
            let r = cpu::cpuid(0xd, 0);
            (r.edx as u64) << 32 | r.eax as u64
        };
        let wanted = XCr0Flags::X87.bits() | XCr0Flags::SSE.bits() | XCr0Flags::AVX.bits() | XFEATURE_PKRU;
        let xcr0 = supported & wanted;
        enable_xsave(xcr0);
        // CPUID.(0Dh,0).EBX: the XSAVE area size for the components now enabled.
        let size = cpu::cpuid(0xd, 0).ebx as usize;
        Method::Xsave { xcr0, size }
    });
    if let Method::Xsave { xcr0, .. } = method {
        enable_xsave(xcr0); // every CPU: CR4 and XCR0 are per CPU (again on the first: harmless)
    }
    // The template signal handlers start from, made now rather than at the first signal, so
    // that the heap a program leaves behind is the heap it found.
    INITIAL.call_once(FpuState::new_initial);
    method
}

/// CR4.OSXSAVE and XCR0 = `xcr0` on this CPU.
fn enable_xsave(xcr0: u64) {
    // CR4.OSXSAVE (bit 18; SDM Vol. 3A §2.5 "Control Registers", Vol. 1 §13.3 "Enabling the
    // XSAVE Feature Set and XSAVE-Enabled Features").
    // SAFETY: the CPU reports XSAVE, so CR4.OSXSAVE (bit 18) is defined; setting it lets
    // XGETBV/XSETBV/XSAVE run and makes CPUID report OSXSAVE to user programs.
    unsafe { Cr4::update(|c| c.insert(Cr4Flags::OSXSAVE)) };
    // XSETBV (SDM Vol. 2C "XSETBV—Set Extended Control Register").
    // SAFETY: only components the CPU supports are enabled (x87 is always among them);
    // AVX only together with SSE, as XSETBV requires.
    unsafe { XCr0::write_raw(xcr0) };
}

/// The components an XRSTOR from a signal frame must always cover besides what the frame
/// asks for (x87 and SSE: the legacy region is always there).
pub fn user_restore_mask() -> u64 {
    match method() {
        Method::Xsave { xcr0, .. } => xcr0 & 0b11,
        Method::Fxsave => 0,
    }
}

/// Loads the initial FPU state into the CPU — every component in its initial configuration,
/// FCW 0x37F, MXCSR 0x1F80 — leaving PKRU alone: what a signal handler starts with. One XRSTOR
/// from a template made once (Linux `restore_fpregs_from_init_fpstate()` from `init_fpstate`).
pub fn load_initial() {
    INITIAL.call_once(FpuState::new_initial).restore();
}

/// The method in use (after [`init`]).
pub fn method() -> Method {
    METHOD.get().copied().unwrap_or(Method::Fxsave)
}

/// The byte offset of PKRU in the standard-format XSAVE area: CPUID.(0Dh,9).EBX.
pub fn pkru_offset() -> Option<usize> {
    // CPUID once: every signal frame asks, and CPUID is slow (in a VM, an exit).
    *PKRU_OFFSET.call_once(|| match method() {
        Method::Xsave { xcr0, .. } if xcr0 & XFEATURE_PKRU != 0 => Some(cpu::cpuid(0xd, 9).ebx as usize),
        _ => None,
    })
}

/// An XSAVE image [`FpuState::set_image`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidImage;

/// The components XCR0 enables (0 without XSAVE): what an XSAVE image may hold.
pub fn xcr0() -> u64 {
    match method() {
        Method::Xsave { xcr0, .. } => xcr0,
        Method::Fxsave => 0,
    }
}

/// One thread's saved FPU/SSE/AVX state: a 64-byte aligned save area.
pub struct FpuState {
    area: *mut u8,
    layout: Layout,
}

// SAFETY: the area is owned by exactly one FpuState and only touched through `&mut self`
// (save) or `&self` while the thread is not running (restore), so moving the owner to another
// CPU moves the only access path with it.
unsafe impl Send for FpuState {}
// SAFETY: every `&self` method (`restore`'s XRSTOR, `duplicate`'s copy, the test-only
// `bytes`) only reads the area, so two CPUs holding `&FpuState` can only read it at once.
unsafe impl Sync for FpuState {}

impl core::fmt::Debug for FpuState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FpuState({} bytes)", self.layout.size())
    }
}

impl FpuState {
    /// The state a new program starts with: every component in its initial configuration
    /// (XSTATE_BV = 0), with FCW = 0x37F and MXCSR = 0x1F80 as the ABI requires.
    pub fn new_initial() -> FpuState {
        let size = match method() {
            Method::Xsave { size, .. } => size.max(576),
            Method::Fxsave => 512,
        };
        let layout = Layout::from_size_align(size, 64).expect("valid layout");
        // SAFETY: non-zero size, valid alignment.
        let area = unsafe { alloc_zeroed(layout) };
        assert!(!area.is_null(), "out of memory for an FPU save area");
        let state = FpuState { area, layout };
        // SAFETY: offsets 0 (FCW, u16) and 24 (MXCSR, u32) lie in the legacy region of the area.
        unsafe {
            state.area.cast::<u16>().write(0x037f);
            state.area.add(24).cast::<u32>().write(0x1f80);
        }
        state
    }

    /// The raw save area: the standard-format XSAVE image (PKRU left out: see the module
    /// docs), or the 512-byte FXSAVE image. What ptrace's `NT_X86_XSTATE` shows, once PKRU is
    /// merged in.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the area is `layout.size()` bytes, owned by self.
        unsafe { core::slice::from_raw_parts(self.area, self.layout.size()) }
    }

    /// Replaces the saved state with a tracer's XSAVE image (ptrace `SETREGSET` of
    /// `NT_X86_XSTATE`; the thread is stopped, so this area is what it resumes with). `image`
    /// must be the whole area, in the standard format, and pass XRSTOR's checks, which this
    /// makes here rather than letting the context switch's XRSTOR raise #GP in the kernel (SDM
    /// Vol. 1 §13.8 "Operation of XRSTOR"): XSTATE_BV within XCR0, the rest of the header
    /// (XCOMP_BV and the reserved bytes, 520..576) zero, no reserved MXCSR bit set (Linux
    /// `copy_uabi_to_xstate()` → `validate_user_xstate_header()`: `EINVAL`). The PKRU
    /// component is dropped (XSTATE_BV bit 9 cleared): PKRU lives outside this area.
    pub fn set_image(&mut self, image: &[u8]) -> Result<(), InvalidImage> {
        let Method::Xsave { xcr0, .. } = method() else { return Err(InvalidImage) };
        if image.len() != self.layout.size() {
            return Err(InvalidImage);
        }
        let word = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes"));
        let mxcsr = u32::from_le_bytes(image[24..28].try_into().expect("4 bytes"));
        const MXCSR_RESERVED: u32 = !0xffbf;
        if word(512) & !xcr0 != 0 || image[520..576].iter().any(|&b| b != 0) || mxcsr & MXCSR_RESERVED != 0 {
            return Err(InvalidImage);
        }
        // SAFETY: the area is `layout.size()` bytes, owned by self (`&mut`), the same length as
        // `image`, which it cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), self.area, image.len()) };
        // SAFETY: byte 512 (XSTATE_BV) is inside the area (XSAVE areas are at least 576 bytes).
        unsafe { self.area.add(512).cast::<u64>().write_unaligned(word(512) & !XFEATURE_PKRU) };
        Ok(())
    }

    /// Saves the CPU's current user FPU state here (XSAVE with PKRU masked out).
    pub fn save(&mut self) {
        match method() {
            Method::Xsave { xcr0, .. } => {
                let mask = xcr0 & !XFEATURE_PKRU;
                // SAFETY: the area is 64-byte aligned and at least CPUID.(0Dh,0).EBX bytes;
                // OSXSAVE is on. EDX:EAX = mask selects the components.
                unsafe { core::arch::asm!("xsave64 [{}]", in(reg) self.area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack)) };
            }
            // SAFETY: 512-byte, 16-byte aligned (64 here) area; SSE is enabled.
            Method::Fxsave => unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.area, options(nostack)) },
        }
    }

    /// Loads this state into the CPU (XRSTOR with PKRU masked out: the live PKRU stays).
    pub fn restore(&self) {
        match method() {
            Method::Xsave { xcr0, .. } => {
                let mask = xcr0 & !XFEATURE_PKRU;
                // SAFETY: the area was written by XSAVE or is the initial template (valid
                // header: XSTATE_BV = 0, XCOMP_BV = 0); PKRU is not in the mask, so it is not
                // touched.
                unsafe { core::arch::asm!("xrstor64 [{}]", in(reg) self.area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack)) };
            }
            // SAFETY: as for FXSAVE; the area holds a valid FXSAVE image (MXCSR valid).
            Method::Fxsave => unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) self.area, options(nostack)) },
        }
    }

    /// A copy of this state (a new thread starts with its creator's FPU state).
    pub fn duplicate(&self) -> FpuState {
        let copy = FpuState::new_initial();
        // SAFETY: both areas have the same size (same method); they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(self.area, copy.area, self.layout.size()) };
        copy
    }
}

impl Drop for FpuState {
    fn drop(&mut self) {
        // SAFETY: allocated in `new_initial` with this layout, freed once.
        unsafe { dealloc(self.area, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;
    use pkeys::Pkru;

    /// XCR0 has PKRU (so signal frames can carry it), yet the context switch's XRSTOR never
    /// changes the live PKRU.
    #[ktest(needs = pku)]
    fn xrstor_in_the_switch_leaves_pkru_alone() {
        let Method::Xsave { xcr0, size } = method() else { panic!("-cpu max has XSAVE") };
        assert!(xcr0 & XFEATURE_PKRU != 0, "XCR0.PKRU enabled: {xcr0:#x}");
        assert_eq!(pkru_offset(), Some(2688), "CPUID.(0Dh,9).EBX under -cpu max");
        assert!(size >= 2688 + 8, "the area covers PKRU: {size}");
        let saved = super::super::pkru::read();
        super::super::pkru::write(Pkru::from_bits(0x0000_0030));
        let mut state = FpuState::new_initial();
        state.save();
        // XSTATE_BV (byte 512) must not claim PKRU: it was masked out of the XSAVE.
        assert_eq!(state.bytes()[512 + 1] & 0x02, 0, "XSTATE_BV bit 9 clear");
        super::super::pkru::write(Pkru::from_bits(0x5555_5554));
        state.restore();
        assert_eq!(super::super::pkru::read().bits(), 0x5555_5554, "XRSTOR did not load PKRU");
        super::super::pkru::write(saved);
    }

    #[ktest]
    fn a_new_state_has_the_abi_initial_control_words() {
        let s = FpuState::new_initial();
        assert_eq!(u16::from_le_bytes([s.bytes()[0], s.bytes()[1]]), 0x037f, "FCW");
        assert_eq!(u32::from_le_bytes(s.bytes()[24..28].try_into().unwrap()), 0x1f80, "MXCSR");
        let copy = s.duplicate();
        assert_eq!(copy.bytes(), s.bytes());
    }
}
