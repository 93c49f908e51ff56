//! The x86-64 rt signal frame as user space sees it, field by field (Linux
//! `arch/x86/include/uapi/asm/sigcontext.h`, `asm/ucontext.h`, `arch/x86/include/asm/sigframe.h`,
//! `include/uapi/asm-generic/siginfo.h`).
//!
//! The kernel never builds one of these: it stores the frame's words straight onto the user
//! stack at the offsets these structures give (`offset_of!`), and `rt_sigreturn` loads them back
//! from there, as Linux's `unsafe_put_user()`s do. `#[repr(C)]` with every field naturally
//! aligned and the ABI's padding spelled out as fields, so the offsets are the ABI's (the tests
//! below pin every offset a program reads).

/// `struct sigcontext` (64-bit): the interrupted registers, 256 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigContext {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub eflags: u64,
    pub cs: u16,
    pub gs: u16,
    pub fs: u16,
    pub ss: u16,
    /// The exception's error code (0 for a signal that is not a fault).
    pub err: u64,
    /// The exception's vector (0 for a signal that is not a fault).
    pub trapno: u64,
    /// The blocked set before the handler (the first word of it).
    pub oldmask: u64,
    /// The faulting address of a page fault.
    pub cr2: u64,
    /// Where the FPU image is (0: none).
    pub fpstate: u64,
    pub reserved1: [u64; 8],
}

/// `stack_t`: the alternate stack as `uc_stack` reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackT {
    pub sp: u64,
    pub flags: i32,
    pub pad: u32,
    pub size: u64,
}

/// `struct ucontext` (the kernel's: `uc_sigmask` is the 8-byte kernel `sigset_t`), 304 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UContext {
    pub flags: u64,
    pub link: u64,
    pub stack: StackT,
    pub mcontext: SigContext,
    pub sigmask: u64,
}

/// `siginfo_t`, 128 bytes, as eight-byte words: `si_signo`, `si_errno` | `si_code`, then a
/// union that differs by signal (for a fault: `si_addr` at word 2, `si_pkey` at word 4).
pub type SigInfoWords = [u64; 16];

/// `struct rt_sigframe` (64-bit): the return address (`sa_restorer`), the ucontext, the
/// siginfo — 440 bytes; the stack pointer a handler starts with points at `pretcode`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtSigframe {
    pub pretcode: u64,
    pub uc: UContext,
    pub info: SigInfoWords,
}

impl RtSigframe {
    /// Where `uc` starts in the frame.
    pub const UC_OFFSET: u64 = 8;
    /// Where `info` starts in the frame.
    pub const INFO_OFFSET: u64 = 8 + 304;
}

/// `struct _fpx_sw_bytes`: what the kernel writes into the legacy XSAVE region's
/// software-available bytes 464..511 to say an extended image follows — 48 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FpxSwBytes {
    /// `FP_XSTATE_MAGIC1`.
    pub magic1: u32,
    /// The image plus `FP_XSTATE_MAGIC2` after it.
    pub extended_size: u32,
    /// The components the image may hold (XCR0).
    pub xfeatures: u64,
    /// The image's size.
    pub xstate_size: u32,
    pub padding: [u32; 7],
}

/// `FP_XSTATE_MAGIC1`: in [`FpxSwBytes::magic1`] of an extended (XSAVE) image.
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2`: the four bytes right after an extended image.
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

impl FpxSwBytes {
    /// Where the software bytes sit in the image (Intel SDM Vol. 1 §13.4.1: bytes 464..511 of
    /// the legacy region are left to software).
    pub const OFFSET: u64 = 464;

    /// The bytes for an image of `xstate_size` bytes holding the components `xfeatures`. Linux:
    /// `fpu__init_prepare_fx_sw_frame()`.
    pub fn new(xfeatures: u64, xstate_size: u32) -> FpxSwBytes {
        FpxSwBytes { magic1: FP_XSTATE_MAGIC1, extended_size: xstate_size + 4, xfeatures, xstate_size, padding: [0; 7] }
    }
}

/// What the kernel writes into a signal frame's XSAVE image *before* the XSAVE: the software
/// bytes (464..511) and a zeroed XSAVE header (512..575) — XSAVE writes neither the software
/// bytes nor the header's reserved bytes (and only the XSTATE_BV bits it saves), while XRSTOR
/// refuses non-zero reserved bytes (SDM Vol. 1 §13.4.2 "XSAVE Header", §13.8). 112 contiguous
/// bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XsavePrologue {
    pub sw: FpxSwBytes,
    pub header: [u64; 8],
}

impl XsavePrologue {
    /// Where it starts in the image.
    pub const OFFSET: u64 = FpxSwBytes::OFFSET;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The sizes and offsets programs and libcs rely on (glibc's `ucontext_t` offsets, Linux's
    /// `struct rt_sigframe`), written as the numbers, not computed from the structures.
    #[test]
    fn the_layout_is_the_abi() {
        assert_eq!(size_of::<SigContext>(), 256);
        assert_eq!(size_of::<StackT>(), 24);
        assert_eq!(size_of::<UContext>(), 304);
        assert_eq!(size_of::<RtSigframe>(), 440);
        assert_eq!(size_of::<FpxSwBytes>(), 48);
        assert_eq!(size_of::<XsavePrologue>(), 112);
        assert_eq!(offset_of!(UContext, stack), 16);
        assert_eq!(offset_of!(UContext, mcontext), 40);
        assert_eq!(offset_of!(UContext, sigmask), 296);
        // glibc's REG_RIP is gregs[16] (at uc + 40 + 128), REG_ERR 19, REG_TRAPNO 20, REG_CR2 22.
        assert_eq!(offset_of!(SigContext, rip), 128);
        assert_eq!(offset_of!(SigContext, eflags), 136);
        assert_eq!(offset_of!(SigContext, cs), 144);
        assert_eq!(offset_of!(SigContext, ss), 150);
        assert_eq!(offset_of!(SigContext, err), 152);
        assert_eq!(offset_of!(SigContext, trapno), 160);
        assert_eq!(offset_of!(SigContext, cr2), 176);
        assert_eq!(offset_of!(SigContext, fpstate), 184);
        assert_eq!(offset_of!(RtSigframe, uc) as u64, RtSigframe::UC_OFFSET);
        assert_eq!(offset_of!(RtSigframe, info) as u64, RtSigframe::INFO_OFFSET);
        assert_eq!(offset_of!(FpxSwBytes, xfeatures), 8);
        assert_eq!(offset_of!(FpxSwBytes, xstate_size), 16);
        assert_eq!(XsavePrologue::OFFSET + offset_of!(XsavePrologue, header) as u64, 512, "the XSAVE header");
    }

    #[test]
    fn software_bytes_count_magic2_in_the_extended_size() {
        let sw = FpxSwBytes::new(0x207, 2696);
        assert_eq!((sw.magic1, sw.extended_size, sw.xfeatures, sw.xstate_size), (0x4650_5853, 2700, 0x207, 2696));
        assert_eq!(sw.padding, [0; 7]);
    }
}
