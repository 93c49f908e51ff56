//! The x86-64 rt signal frame: building it (Linux `x64_setup_rt_frame()`, `get_sigframe()`,
//! `copy_fpstate_to_sigframe()`) and taking it down (`rt_sigreturn`, `restore_sigcontext()`,
//! `fpu__restore_sig()`).
//!
//! The FPU image goes straight between the CPU and the user stack, as in Linux: XSAVE into the
//! frame, XRSTOR out of it, both recoverable ([`uaccess::fpu_save_to_user`]). The thread's FPU
//! state lives in the CPU while it runs (the context switch saves it), so nothing passes
//! through the thread's kernel save area. Around the XSAVE the kernel adds what the CPU does
//! not write: a zeroed XSAVE header first (XSAVE writes only XSTATE_BV, and XRSTOR refuses
//! non-zero reserved bytes), the `_fpx_sw_bytes` in the legacy region's software bytes 464..511,
//! FP_XSTATE_MAGIC2 after the area, and the PKRU the interrupted code had (Linux
//! `update_pkru_in_sigframe()`): the live PKRU is 0 while the frame is written.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use pkeys::{Errno, Pkru};

use super::{AltStack, SigAction, SigInfo, SA_ONSTACK, SA_RESTORER};
use crate::arch::x86_64::fpu::{self, Method, XFEATURE_PKRU};
use crate::arch::x86_64::gdt::{USER_CS, USER_SS};
use crate::arch::x86_64::paging::USER_END;
use crate::arch::x86_64::pkru;
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::uaccess::{self, FpImage};
use crate::mm::user;
use crate::task::Thread;
use vma::UserRange;

const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
/// pretcode (8) + ucontext (304) + siginfo (128).
const FRAME_SIZE: u64 = 440;
const UC_OFFSET: u64 = 8;
const SIGCONTEXT_OFFSET: u64 = UC_OFFSET + 40;
const SIGMASK_OFFSET: u64 = UC_OFFSET + 296;
const SIGINFO_OFFSET: u64 = UC_OFFSET + 304;
/// RFLAGS bits a signal frame may change (Linux `FIX_EFLAGS`): AC, OF, DF, TF, SF, ZF, AF, PF,
/// CF, RF.
const FIX_EFLAGS: u64 = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000;

/// Offsets in the XSAVE image (Intel SDM Vol. 1 §13.4 "XSAVE Area", §13.4.1 "Legacy Region of an
/// XSAVE Area"): the legacy region's software-available bytes, which Linux fills with `struct
/// _fpx_sw_bytes`, and the XSAVE header.
const SW_BYTES: u64 = 464;
const XSAVE_HEADER: u64 = 512;
const XSAVE_HEADER_SIZE: usize = 64;

/// The image size (CPUID.(0Dh,0).EBX for the enabled components, or FXSAVE's 512 bytes).
fn xstate_size() -> usize {
    match fpu::method() {
        Method::Xsave { size, .. } => size,
        Method::Fxsave => 512,
    }
}

/// The bytes the FPU image takes in a signal frame: the image, plus FP_XSTATE_MAGIC2 after an
/// XSAVE one. Linux: `xstate_sigframe_size()`.
fn fp_frame_size() -> u64 {
    let magic2 = if matches!(fpu::method(), Method::Xsave { .. }) { 4 } else { 0 };
    xstate_size() as u64 + magic2
}

/// `struct _fpx_sw_bytes` (arch/x86/include/uapi/asm/sigcontext.h): magic1, extended_size (the
/// image plus MAGIC2), xfeatures, xstate_size, then 28 reserved bytes that stay zero.
fn sw_bytes(xcr0: u64, xsize: u64) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    b[4..8].copy_from_slice(&((xsize + 4) as u32).to_le_bytes());
    b[8..16].copy_from_slice(&xcr0.to_le_bytes());
    b[16..20].copy_from_slice(&(xsize as u32).to_le_bytes());
    b
}

/// Writes the FPU image for a signal frame at `fx` (Linux `copy_fpstate_to_sigframe()`),
/// with `interrupted_pkru` in its PKRU slot. Runs with PKRU all open. `fx` spans
/// [`fp_frame_size`] bytes of user space, so every offset below stays inside it.
fn save_fpstate(fx: UserRange, interrupted_pkru: Pkru) -> Result<(), Errno> {
    let buf_fx = fx.start();
    let xsize = xstate_size() as u64;
    match fpu::method() {
        Method::Fxsave => uaccess::fpu_save_to_user(buf_fx, FpImage::Fxsave, xsize as usize)?,
        Method::Xsave { xcr0, .. } => {
            user::copy_to_user(buf_fx + XSAVE_HEADER, &[0u8; XSAVE_HEADER_SIZE])?;
            // PKRU is masked out: the live value is the "all open" one used for writing.
            uaccess::fpu_save_to_user(buf_fx, FpImage::Xsave(xcr0 & !XFEATURE_PKRU), xsize as usize)?;
            user::copy_to_user(buf_fx + SW_BYTES, &sw_bytes(xcr0, xsize))?;
            user::copy_to_user(buf_fx + xsize, &FP_XSTATE_MAGIC2.to_le_bytes())?;
            if let Some(off) = fpu::pkru_offset() {
                user::copy_to_user(buf_fx + off as u64, &interrupted_pkru.bits().to_le_bytes())?;
                let bv = user::read_u64(buf_fx + XSAVE_HEADER)?;
                user::write_u64(buf_fx + XSAVE_HEADER, bv | XFEATURE_PKRU)?;
            }
        }
    }
    Ok(())
}

/// The sigcontext registers in their ABI order (r8 … rip, eflags).
fn regs_of(f: &TrapFrame) -> [u64; 18] {
    [f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15, f.rdi, f.rsi, f.rbp, f.rbx, f.rdx, f.rax, f.rcx, f.rsp, f.rip, f.rflags]
}

/// Builds the frame for `info` on the user stack (or the alternate stack) and points the
/// thread's registers at the handler.
pub fn setup(thread: &Arc<Thread>, frame: &mut TrapFrame, info: &SigInfo, action: &SigAction, blocked: u64) -> Result<(), Errno> {
    if action.flags & SA_RESTORER == 0 {
        // x86-64 has no kernel-provided return trampoline: Linux refuses (-EFAULT).
        return Err(Errno::EFAULT);
    }
    // Linux `get_sigframe()`: the alternate stack is entered only by a handler with
    // SA_ONSTACK, from outside it (judged below the red zone); a frame that ends up off the
    // alternate stack it was meant for ("overflowed sigaltstack") is refused — SIGSEGV.
    // One look at the alternate stack (one lock): where it is, and whether we are on it.
    let alt: Option<AltStack> = *thread.signals.altstack.lock();
    let on_alt = alt.is_some_and(|s| s.contains(frame.rsp));
    let mut sp = frame.rsp.wrapping_sub(128); // skip the red zone
    let mut entering_alt = false;
    if let Some(stack) = alt.filter(|s| action.flags & SA_ONSTACK != 0 && !s.contains(sp)) {
        sp = stack.top();
        entering_alt = true;
    }
    sp = sp.wrapping_sub(fp_frame_size()) & !63;
    let buf_fx = sp;
    sp = (sp.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);
    let frame_addr = sp;
    if (on_alt || entering_alt) && !alt.is_some_and(|s| s.contains(frame_addr)) {
        return Err(Errno::EFAULT);
    }
    // Both pieces wholly in user space before any offset is added (Linux: `access_ok()`).
    let fx = UserRange::new(buf_fx, fp_frame_size()).ok_or(Errno::EFAULT)?;
    UserRange::new(frame_addr, FRAME_SIZE).ok_or(Errno::EFAULT)?;

    let orig_pkru = pkru::read();
    let xsave = matches!(fpu::method(), Method::Xsave { .. });

    // ucontext, siginfo: built on the kernel stack, copied out in one piece.
    let mut f = [0u8; FRAME_SIZE as usize];
    let mut put = |at: u64, bytes: &[u8]| f[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    put(0, &action.restorer.to_le_bytes());
    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xsave { UC_FP_XSTATE } else { 0 };
    put(UC_OFFSET, &uc_flags.to_le_bytes());
    let (ss_sp, ss_flags, ss_size) = match alt {
        Some(AltStack { sp, size }) => (sp, i32::from(on_alt), size),
        None => (0, 2, 0),
    };
    put(UC_OFFSET + 16, &ss_sp.to_le_bytes());
    put(UC_OFFSET + 24, &ss_flags.to_le_bytes());
    put(UC_OFFSET + 32, &ss_size.to_le_bytes());
    for (i, r) in regs_of(frame).iter().enumerate() {
        put(SIGCONTEXT_OFFSET + 8 * i as u64, &r.to_le_bytes());
    }
    put(SIGCONTEXT_OFFSET + 144, &(frame.cs as u16).to_le_bytes());
    put(SIGCONTEXT_OFFSET + 150, &(frame.ss as u16).to_le_bytes());
    // `err`: an exception's error code (a system-call frame keeps its number in that slot).
    put(SIGCONTEXT_OFFSET + 152, &(if frame.orig_rax() == u64::MAX { frame.error_code } else { 0 }).to_le_bytes());
    put(SIGCONTEXT_OFFSET + 160, &(if frame.vector < 32 { frame.vector } else { 0 }).to_le_bytes());
    put(SIGCONTEXT_OFFSET + 168, &blocked.to_le_bytes());
    put(SIGCONTEXT_OFFSET + 176, &(if frame.vector == 14 { info.addr } else { 0 }).to_le_bytes());
    put(SIGCONTEXT_OFFSET + 184, &buf_fx.to_le_bytes());
    put(SIGMASK_OFFSET, &blocked.to_le_bytes());
    put(SIGINFO_OFFSET, &info.to_bytes());

    // Write it all with every key open (Linux `sig_prepare_pkru()`): a stack guarded by a key
    // can still take the frame.
    pkru::write(Pkru::ALL_OPEN);
    let written = save_fpstate(fx, orig_pkru).and_then(|()| user::copy_to_user(frame_addr, &f));
    if let Err(e) = written {
        pkru::write(orig_pkru);
        return Err(e);
    }
    // The handler runs with the default PKRU and a clean FPU (Linux `fpu__clear_user_states()`).
    pkru::write(Pkru::INIT);
    if thread.fpu.is_some() {
        fpu::load_initial();
    }
    frame.rip = action.handler;
    frame.rsp = frame_addr;
    frame.rdi = info.signo as u64;
    frame.rsi = frame_addr + SIGINFO_OFFSET;
    frame.rdx = frame_addr + UC_OFFSET;
    frame.rax = 0;
    frame.rflags &= !(0x100 | 0x400 | 0x10000); // TF, DF, RF
    frame.cs = USER_CS as u64;
    frame.ss = USER_SS as u64;
    Ok(())
}

/// `rt_sigreturn()`: restores what the frame at `rsp - 8` says — registers (only user
/// selectors and a canonical RIP are accepted), the signal mask, the alternate stack, and the
/// FPU state *including PKRU* from the frame's XSAVE area. A frame that fails any check kills
/// the process with SIGSEGV (Linux: `badframe` → `signal_fault()`). Returns the restored `rax`.
pub fn sigreturn(thread: &Arc<Thread>, frame: &mut TrapFrame) -> Result<u64, Errno> {
    // The frame sits at rsp - 8 (rsp in 0..7 wraps to the top of the address space): the
    // whole frame must be user memory before any offset is added (Linux: `access_ok()`).
    let rt = UserRange::new(frame.rsp.wrapping_sub(8), FRAME_SIZE).ok_or(Errno::EFAULT)?;
    let mut uc = [0u8; 304];
    user::copy_from_user(&mut uc, rt.start() + UC_OFFSET)?;
    let word = |at: usize| u64::from_le_bytes(uc[at..at + 8].try_into().unwrap());
    let sc = |i: usize| word(40 + 8 * i);
    let cs = u16::from_le_bytes(uc[40 + 144..40 + 146].try_into().unwrap()) as u64 | 3;
    let ss = u16::from_le_bytes(uc[40 + 150..40 + 152].try_into().unwrap()) as u64 | 3;
    let rip = sc(16);
    if cs != USER_CS as u64 || ss != USER_SS as u64 || rip >= USER_END {
        return Err(Errno::EFAULT);
    }
    let fpstate = word(40 + 184);
    restore_fpu(thread, fpstate)?;
    // The alternate stack, unless we are running on it (Linux ignores all but EFAULT there).
    let (ss_sp, ss_flags, ss_size) = (word(16), i32::from_le_bytes(uc[24..28].try_into().unwrap()), word(32));
    // (One lock for the look and the change.)
    let mut altstack = thread.signals.altstack.lock();
    if !altstack.is_some_and(|s| s.contains(frame.rsp)) {
        *altstack = if ss_flags & 2 != 0 || ss_size < 2048 { None } else { Some(AltStack { sp: ss_sp, size: ss_size }) };
    }
    drop(altstack);
    let mask = word(296) & !((1 << 8) | (1 << 18));
    thread.blocked.store(mask, Ordering::Relaxed);
    let [r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, _, eflags] = core::array::from_fn(sc);
    *frame = TrapFrame {
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rbp,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
        vector: frame.vector,
        // orig_rax = -1: the restored rax is a value, never a call to restart (Linux
        // `restore_sigcontext()`: `regs->orig_ax = -1`).
        error_code: u64::MAX,
        rip,
        cs,
        rflags: (frame.rflags & !FIX_EFLAGS) | (eflags & FIX_EFLAGS) | 0x200,
        rsp,
        ss,
    };
    Ok(rax)
}

/// Loads the FPU state (and PKRU) from the frame's image (Linux `fpu__restore_sig()`): the
/// software bytes say which components the image holds (without MAGIC1, a legacy-only image:
/// x87|SSE); one XRSTOR straight from user memory loads them — PKRU included — and puts the
/// components the mask covers but the image's XSTATE_BV lacks in their initial state. Whatever
/// XRSTOR refuses (reserved header bytes, XSTATE_BV outside XCR0, reserved MXCSR bits, a
/// misaligned area) faults, is recovered, and becomes SIGSEGV, as on Linux. No image at all:
/// the initial state and the default PKRU (Linux `fpu__clear_user_states()`).
///
/// (Measured: QEMU 7.2's XRSTOR does not check MXCSR's reserved bits, so there a frame with
/// one loads — on Linux and pikku alike; a real CPU raises #GP, and both kernels kill.)
fn restore_fpu(thread: &Arc<Thread>, fpstate: u64) -> Result<(), Errno> {
    if thread.fpu.is_none() {
        return Ok(());
    }
    if fpstate == 0 {
        fpu::load_initial();
        pkru::write(Pkru::INIT);
        return Ok(());
    }
    // The whole image in user space before any offset is added (Linux `fpu__restore_sig()`:
    // `access_ok(buf, size)`): a forged `fpstate` near ~0 is EFAULT, not a wrapped sum.
    let fx = UserRange::new(fpstate, fp_frame_size()).ok_or(Errno::EFAULT)?;
    let xsize = xstate_size();
    match fpu::method() {
        Method::Fxsave => uaccess::fpu_restore_from_user(fx.start(), FpImage::Fxsave, xsize)?,
        Method::Xsave { xcr0, .. } => {
            let mut sw = [0u8; 48];
            user::copy_from_user(&mut sw, fx.start() + SW_BYTES)?;
            let magic_ok = u32::from_le_bytes(sw[0..4].try_into().unwrap()) == FP_XSTATE_MAGIC1;
            let xfeatures = if magic_ok { u64::from_le_bytes(sw[8..16].try_into().unwrap()) } else { 0b11 };
            let mask = (xfeatures & xcr0) | fpu::user_restore_mask();
            uaccess::fpu_restore_from_user(fx.start(), FpImage::Xsave(mask), xsize)?;
        }
    }
    Ok(())
}
