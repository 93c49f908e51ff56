//! The x86-64 rt signal frame: building it (Linux `x64_setup_rt_frame()`, `get_sigframe()`,
//! `copy_fpstate_to_sigframe()`) and taking it down (`rt_sigreturn`, `restore_sigcontext()`,
//! `fpu__restore_sig()`).
//!
//! The frame's layout is `uapi::sigframe` (`struct rt_sigframe` and what it holds, field by
//! field). Delivery stores each field straight onto the user stack, in one user-access window
//! ([`UserWindow`], Linux's `user_access_begin()` and `unsafe_put_user()`s): no copy of the
//! frame is built in the kernel; `rt_sigreturn` loads the fields back the same way, the
//! registers straight into the trap frame. The FPU image goes
//! straight between the CPU and the user stack, as in Linux: XSAVE into the frame, XRSTOR out of
//! it, both recoverable ([`uaccess::xsave_to_sigframe`], [`uaccess::fpu_restore_from_user`]).
//! The thread's FPU state lives in the CPU while it runs (the context switch saves it), so
//! nothing passes through the thread's kernel save area. Around the XSAVE the kernel adds, in
//! the same user-access window, what the CPU does not write: the `_fpx_sw_bytes` in the legacy
//! region's software bytes 464..511 and a zeroed XSAVE header (XSAVE writes only XSTATE_BV, and
//! XRSTOR refuses non-zero reserved bytes) before it, FP_XSTATE_MAGIC2 after the area, and the
//! PKRU the interrupted code had (Linux `update_pkru_in_sigframe()`): the live PKRU is 0 while
//! the frame is written.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use pkeys::{Errno, Pkru};

use super::{AltStack, SigAction, SigInfo, SA_ONSTACK, SA_RESTORER, SS_DISABLE, SS_ONSTACK};
use crate::arch::x86_64::fpu::{self, Method, XFEATURE_PKRU};
use crate::arch::x86_64::gdt::{USER_CS, USER_SS};
use crate::arch::x86_64::paging::USER_END;
use crate::arch::x86_64::pkru;
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::uaccess::{self, FpImage, UserWindow};
use crate::task::Thread;
use uapi::sigframe::{FpxSwBytes, RtSigframe, XsavePrologue, FP_XSTATE_MAGIC1};
use vma::UserRange;

/// The frame's size (440 bytes).
const FRAME_SIZE: u64 = core::mem::size_of::<RtSigframe>() as u64;

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
/// RFLAGS bits a signal frame may change (Linux `FIX_EFLAGS`): AC, OF, DF, TF, SF, ZF, AF, PF,
/// CF, RF.
const FIX_EFLAGS: u64 = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000;

/// The FPU image's size (CPUID.(0Dh,0).EBX for the enabled components, or FXSAVE's 512 bytes)
/// and the bytes it takes in a signal frame: the image, plus FP_XSTATE_MAGIC2 after an XSAVE
/// one (Linux `xstate_sigframe_size()`).
fn fp_sizes(method: Method) -> (usize, u64) {
    match method {
        Method::Xsave { size, .. } => (size, size as u64 + 4),
        Method::Fxsave => (512, 512),
    }
}

/// Writes the FPU image for a signal frame at `fx` (Linux `copy_fpstate_to_sigframe()`),
/// with `interrupted_pkru` in its PKRU slot. Runs with PKRU all open. `fx` spans the image's
/// bytes in the frame ([`fp_sizes`]).
fn save_fpstate(method: Method, fx: UserRange, interrupted_pkru: Pkru) -> Result<(), Errno> {
    let (xsize, _) = fp_sizes(method);
    match method {
        Method::Fxsave => uaccess::fpu_save_to_user(fx.start(), FpImage::Fxsave, xsize)?,
        Method::Xsave { xcr0, .. } => {
            let prologue = XsavePrologue { sw: FpxSwBytes::new(xcr0, xsize as u32), header: [0; 8] };
            let pkru = fpu::pkru_offset().map(|offset| (offset, interrupted_pkru.bits()));
            // PKRU is masked out of the XSAVE: the live value is the "all open" one used for
            // writing; the interrupted one goes into its slot instead.
            uaccess::xsave_to_sigframe(fx.start(), xsize, xcr0 & !XFEATURE_PKRU, &prologue, pkru)?;
        }
    }
    Ok(())
}

/// Stores `$value` in the frame word of `$field` (a path in [`RtSigframe`], with an optional
/// word index), through a [`UserWindow`]: `put!(w, uc.mcontext.rip = f.rip)`. One store, at an
/// offset computed when compiled.
macro_rules! put {
    ($w:expr, $($field:ident).+ $([$i:literal])? = $value:expr) => {
        $w.put::<{ core::mem::offset_of!(RtSigframe, $($field).+) $(+ 8 * $i)? }>($value)
    };
}

/// Loads the frame word of `$field` (a path in [`RtSigframe`], or in the structure named
/// first) through a [`UserWindow`].
macro_rules! get {
    ($w:expr, $($field:ident).+) => {
        get!($w, RtSigframe, $($field).+)
    };
    ($w:expr, $structure:ty, $($field:ident).+) => {
        $w.get::<{ core::mem::offset_of!($structure, $($field).+) }>()
    };
}

/// The four selectors of `struct sigcontext` (cs, gs, fs, ss: 16 bits each) as the one word
/// they share; gs and fs are 0 on x86-64.
fn selectors(cs: u64, ss: u64) -> u64 {
    (cs & 0xffff) | (ss & 0xffff) << 48
}

/// Stores the interrupted registers as `struct sigcontext` through `w` (Linux
/// `unsafe_put_sigcontext()`): `err`, `trapno` and `cr2` describe the exception a fault signal
/// comes from (a system-call frame keeps its number in the error-code slot: `err` 0 there);
/// `reserved1` is left as it is found, as Linux leaves it.
#[inline(always)] // inside the window: its status stays in registers
fn put_sigcontext(w: &mut UserWindow<RtSigframe>, f: &TrapFrame, info: &SigInfo, blocked: u64, fpstate: u64) {
    put!(w, uc.mcontext.r8 = f.r8);
    put!(w, uc.mcontext.r9 = f.r9);
    put!(w, uc.mcontext.r10 = f.r10);
    put!(w, uc.mcontext.r11 = f.r11);
    put!(w, uc.mcontext.r12 = f.r12);
    put!(w, uc.mcontext.r13 = f.r13);
    put!(w, uc.mcontext.r14 = f.r14);
    put!(w, uc.mcontext.r15 = f.r15);
    put!(w, uc.mcontext.rdi = f.rdi);
    put!(w, uc.mcontext.rsi = f.rsi);
    put!(w, uc.mcontext.rbp = f.rbp);
    put!(w, uc.mcontext.rbx = f.rbx);
    put!(w, uc.mcontext.rdx = f.rdx);
    put!(w, uc.mcontext.rax = f.rax);
    put!(w, uc.mcontext.rcx = f.rcx);
    put!(w, uc.mcontext.rsp = f.rsp);
    put!(w, uc.mcontext.rip = f.rip);
    put!(w, uc.mcontext.eflags = f.rflags);
    put!(w, uc.mcontext.cs = selectors(f.cs, f.ss));
    put!(w, uc.mcontext.err = if f.orig_rax() == u64::MAX { f.error_code } else { 0 });
    put!(w, uc.mcontext.trapno = if f.vector < 32 { f.vector } else { 0 });
    put!(w, uc.mcontext.oldmask = blocked);
    put!(w, uc.mcontext.cr2 = if f.vector == 14 { info.addr } else { 0 });
    put!(w, uc.mcontext.fpstate = fpstate);
}

/// Stores the 128 bytes of `siginfo_t` through `w` (Linux `copy_siginfo_to_user()`).
#[inline(always)] // inside the window: its status stays in registers
fn put_siginfo(w: &mut UserWindow<RtSigframe>, info: &SigInfo) {
    let words = info.to_words();
    put!(w, info[0] = words[0]);
    put!(w, info[1] = words[1]);
    put!(w, info[2] = words[2]);
    put!(w, info[3] = words[3]);
    put!(w, info[4] = words[4]);
    put!(w, info[5] = words[5]);
    put!(w, info[6] = words[6]);
    put!(w, info[7] = words[7]);
    put!(w, info[8] = words[8]);
    put!(w, info[9] = words[9]);
    put!(w, info[10] = words[10]);
    put!(w, info[11] = words[11]);
    put!(w, info[12] = words[12]);
    put!(w, info[13] = words[13]);
    put!(w, info[14] = words[14]);
    put!(w, info[15] = words[15]);
}

/// Builds the frame for `info` on the user stack (or the alternate stack) and points the
/// thread's registers at the handler.
pub fn setup(thread: &Arc<Thread>, frame: &mut TrapFrame, info: &SigInfo, action: &SigAction, blocked: u64) -> Result<(), Errno> {
    if action.flags & SA_RESTORER == 0 {
        // x86-64 has no kernel-provided return trampoline: Linux refuses (-EFAULT).
        return Err(Errno::EFAULT);
    }
    // The handler's address becomes the user RIP, and `rt_sigaction` takes any value. One that
    // is not a user address must never reach IRETQ: a non-canonical RIP makes IRETQ fault *in
    // ring 0*, after SWAPGS, on real CPUs (SDM Vol. 2A "IRET/IRETD/IRETQ—Interrupt Return":
    // #GP(0) if the return RIP is non-canonical; QEMU's TCG does not model it). Linux lets the
    // IRET fault and turns it into SIGSEGV in its `bad_iret` fixup; pikku refuses the frame
    // before writing it — the same SIGSEGV end for the program (the `hostile` case, step 10),
    // the same check `sigreturn` makes below.
    if action.handler >= USER_END {
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
    let method = fpu::method();
    let (_, fp_size) = fp_sizes(method);
    sp = sp.wrapping_sub(fp_size) & !63;
    let buf_fx = sp;
    sp = (sp.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);
    let frame_addr = sp;
    if (on_alt || entering_alt) && !alt.is_some_and(|s| s.contains(frame_addr)) {
        return Err(Errno::EFAULT);
    }
    // Both pieces wholly in user space before any offset is added (Linux: `access_ok()`).
    let fx = UserRange::new(buf_fx, fp_size).ok_or(Errno::EFAULT)?;
    UserRange::new(frame_addr, FRAME_SIZE).ok_or(Errno::EFAULT)?;

    let orig_pkru = pkru::read();
    let xsave = matches!(method, Method::Xsave { .. });
    let (ss_sp, ss_flags, ss_size) = match alt {
        Some(AltStack { sp, size }) => (sp, if on_alt { SS_ONSTACK } else { 0 }, size),
        None => (0, SS_DISABLE, 0),
    };
    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xsave { UC_FP_XSTATE } else { 0 };

    // Write it all with every key open (Linux `sig_prepare_pkru()`): a stack guarded by a key
    // can still take the frame. Two user-access windows: the FPU image, then the frame, stored
    // field by field straight onto the user stack (Linux `x64_setup_rt_frame()`).
    pkru::write(Pkru::ALL_OPEN);
    let written = save_fpstate(method, fx, orig_pkru).and_then(|()| {
        let mut w = UserWindow::<RtSigframe>::open(frame_addr)?;
        put!(w, pretcode = action.restorer);
        put!(w, uc.flags = uc_flags);
        put!(w, uc.link = 0);
        put!(w, uc.stack.sp = ss_sp);
        put!(w, uc.stack.flags = u64::from(ss_flags as u32)); // and the padding after it
        put!(w, uc.stack.size = ss_size);
        put_sigcontext(&mut w, frame, info, blocked, buf_fx);
        put!(w, uc.sigmask = blocked);
        put_siginfo(&mut w, info);
        Ok(w.close()?)
    });
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
    frame.rsi = frame_addr + RtSigframe::INFO_OFFSET;
    frame.rdx = frame_addr + RtSigframe::UC_OFFSET;
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
pub fn sigreturn(thread: &Thread, frame: &mut TrapFrame) -> Result<u64, Errno> {
    // The frame sits at rsp - 8 (rsp in 0..7 wraps to the top of the address space): the
    // whole frame must be user memory before any offset is added (Linux: `access_ok()`).
    let rt = UserRange::new(frame.rsp.wrapping_sub(8), FRAME_SIZE).ok_or(Errno::EFAULT)?;
    let handler_rsp = frame.rsp;
    // Linux's order (`rt_sigreturn()`, `restore_sigcontext()`): the mask, the registers, the
    // FPU state, the alternate stack. The registers go straight from the user stack into the
    // trap frame and are checked there: a frame that fails kills the process, so what was
    // restored before the failure is moot.
    let mut w = UserWindow::<RtSigframe>::open(rt.start())?;
    let sigmask = get!(w, uc.sigmask);
    frame.r8 = get!(w, uc.mcontext.r8);
    frame.r9 = get!(w, uc.mcontext.r9);
    frame.r10 = get!(w, uc.mcontext.r10);
    frame.r11 = get!(w, uc.mcontext.r11);
    frame.r12 = get!(w, uc.mcontext.r12);
    frame.r13 = get!(w, uc.mcontext.r13);
    frame.r14 = get!(w, uc.mcontext.r14);
    frame.r15 = get!(w, uc.mcontext.r15);
    frame.rdi = get!(w, uc.mcontext.rdi);
    frame.rsi = get!(w, uc.mcontext.rsi);
    frame.rbp = get!(w, uc.mcontext.rbp);
    frame.rbx = get!(w, uc.mcontext.rbx);
    frame.rdx = get!(w, uc.mcontext.rdx);
    frame.rax = get!(w, uc.mcontext.rax);
    frame.rcx = get!(w, uc.mcontext.rcx);
    frame.rsp = get!(w, uc.mcontext.rsp);
    frame.rip = get!(w, uc.mcontext.rip);
    let eflags = get!(w, uc.mcontext.eflags);
    let selector_word = get!(w, uc.mcontext.cs);
    let fpstate = get!(w, uc.mcontext.fpstate);
    let (ss_sp, ss_flags, ss_size) = (get!(w, uc.stack.sp), get!(w, uc.stack.flags) as u32 as i32, get!(w, uc.stack.size));
    w.close()?;
    // Only user selectors and a user RIP.
    let (cs, ss) = ((selector_word & 0xffff) | 3, (selector_word >> 48) | 3);
    if cs != USER_CS as u64 || ss != USER_SS as u64 || frame.rip >= USER_END {
        return Err(Errno::EFAULT);
    }
    frame.cs = cs;
    frame.ss = ss;
    frame.rflags = (frame.rflags & !FIX_EFLAGS) | (eflags & FIX_EFLAGS) | 0x200;
    // orig_rax = -1: the restored rax is a value, never a call to restart (Linux
    // `restore_sigcontext()`: `regs->orig_ax = -1`). (`vector` stays: it says how the thread
    // entered the kernel.)
    frame.error_code = u64::MAX;
    thread.blocked.store(sigmask & !((1 << 8) | (1 << 18)), Ordering::Relaxed);
    restore_fpu(thread, fpstate)?;
    // The alternate stack, as `sigaltstack` would set it (Linux `restore_altstack()` →
    // `do_sigaltstack()`, whose errors it ignores but EFAULT — handled above), judged by the
    // stack pointer the handler left (`handler_rsp`), not the restored one: measured on Linux
    // 6.12, a handler on the alternate stack that writes SS_DISABLE into `uc_stack` after being
    // entered from the main stack leaves the alternate stack on (`signals` case, 3b), although
    // a reading of `rt_sigreturn()` suggests the restored pointer.
    let _ = super::set_altstack(thread, handler_rsp, ss_sp, ss_flags, ss_size);
    Ok(frame.rax)
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
fn restore_fpu(thread: &Thread, fpstate: u64) -> Result<(), Errno> {
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
    let method = fpu::method();
    let (xsize, fp_size) = fp_sizes(method);
    let fx = UserRange::new(fpstate, fp_size).ok_or(Errno::EFAULT)?;
    match method {
        Method::Fxsave => uaccess::fpu_restore_from_user(fx.start(), FpImage::Fxsave, xsize)?,
        Method::Xsave { xcr0, .. } => {
            // Of the software bytes, FP_XSTATE_MAGIC1 (the low half of the first word) and
            // `xfeatures` (Linux `check_xstate_in_sigframe()`).
            let mut w = UserWindow::<FpxSwBytes>::open(fx.start() + FpxSwBytes::OFFSET)?;
            let magic1 = get!(w, FpxSwBytes, magic1) as u32;
            let xfeatures = get!(w, FpxSwBytes, xfeatures);
            w.close()?;
            let xfeatures = if magic1 == FP_XSTATE_MAGIC1 { xfeatures } else { 0b11 };
            let mask = (xfeatures & xcr0) | fpu::user_restore_mask();
            uaccess::fpu_restore_from_user(fx.start(), FpImage::Xsave(mask), xsize)?;
        }
    }
    Ok(())
}
