//! The SYSCALL instruction's way into the kernel, and SYSRET/IRET back out — a fast path for
//! the ordinary call and a slow path for everything that needs the caller's whole register frame.
//!
//! SYSCALL (Intel SDM Vol. 2B "SYSCALL—Fast System Call", Vol. 3A §5.8.8 "Fast System Calls in
//! 64-Bit Mode") jumps to the address in IA32_LSTAR in ring 0, with RCX = the user RIP, R11 = the
//! user RFLAGS, RFLAGS &= ~IA32_FMASK, CS/SS from IA32_STAR — and **no stack switch**: RSP is still
//! the user's. So the entry stub:
//!
//! 1. `swapgs` — GS now points at this CPU's [`PerCpu`] (its kernel stack top and a scratch slot,
//!    reached at their `offset_of!` offsets, passed to the assembly as constants);
//! 2. parks the user RSP in the scratch slot and loads the thread's kernel stack;
//! 3. reserves a frame shaped exactly like an exception's [`TrapFrame`] (user SS, RSP, RFLAGS,
//!    CS, RIP; the system-call number in the error-code slot, where Linux's `pt_regs` keeps
//!    `orig_ax` (see [`TrapFrame::orig_rax`]); "vector" [`SYSCALL_VECTOR`]; then room for every
//!    general register) — but writes only what the system-call ABI needs: the six argument
//!    registers. Everything else survives by itself: RBX, RBP and R12–R15 are callee-saved in
//!    the Rust (System V) calling convention, so the Rust code preserves them for us; RAX, RCX
//!    and R11 are the ones a `syscall` may change (result, return RIP, RFLAGS). That half-written
//!    frame is a [`SyscallFrame`], a distinct type: its unsaved slots cannot be read, and no
//!    function that needs a full frame can be handed one;
//! 4. calls the kernel's **fast path** (`syscall::entry`, registered by [`init`]), which runs the
//!    call and says how to leave ([`Exit`]):
//!    * [`Exit::Sysret`]: reload the argument registers, RCX/R11 from the frame's RIP/RFLAGS,
//!      the user RSP, SWAPGS, SYSRET. That is all a `getpid` does.
//!    * anything else goes to the **slow path**: the stub stores the callee-saved registers (still
//!      the user's values) and RCX/R11 (= RIP/RFLAGS, as the `syscall` left them) into their
//!      slots, which makes the frame a complete [`TrapFrame`], and calls the kernel's slow path
//!      (`syscall::entry_slow`) with it: the calls that read or rewrite the whole frame
//!      (`fork`, `clone`, `rt_sigreturn`, `sigaltstack`), and every exit with work to do (a
//!      signal or stop, a thread that must end, a call to restart). It leaves like an exception
//!      does, through all the registers — with SYSRET if [`sysret_is_safe`], else IRETQ.
//!
//! Back out: SYSRET (SDM Vol. 2B "SYSRET—Return From Fast System Call"; SWAPGS before it, Vol. 2B
//! "SWAPGS—Swap GS Base Register") is fast but has a trap: on Intel CPUs, SYSRET with a
//! non-canonical RCX raises #GP *in ring 0 on the user's stack* — a classic privilege-escalation
//! bug (a `syscall` in the last two bytes below the canonical hole returns to a non-canonical
//! RIP). So the fast path takes SYSRET only when [`fast_sysret_is_safe`] (the RIP is below
//! [`USER_END`] and RFLAGS has no TF/RF); the slow path only when [`sysret_is_safe`] says the
//! rewritten frame is still an ordinary syscall return. Everything else — a frame rewritten by
//! `execve` or `rt_sigreturn` — leaves through IRETQ, which checks and restores everything.
//!
//! Interrupts stay off from SYSCALL (FMASK clears IF) to SYSRET (which loads the user RFLAGS,
//! IF set): the last look for exit work happens with them off, and an IPI another CPU sent
//! meanwhile (a reschedule, a TLB shootdown) is taken the instant SYSRET re-enables them, in
//! user mode, through the interrupt path and its full kernel exit.
//!
//! FMASK clears IF (no interrupts until the kernel is on its own stack), DF (the ABI, so no CLD is
//! needed), TF (no single-stepping into the kernel), NT, and **AC** — otherwise user code could
//! enter with EFLAGS.AC set and switch SMAP off for the whole syscall.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Once;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use core::mem::{offset_of, size_of};

use super::gdt::{KERNEL_CS, SYSRET_BASE, USER_CS, USER_SS};
use super::paging::USER_END;
use super::percpu::PerCpu;
use super::trap::TrapFrame;
use crate::pop_gprs;

/// The `vector` value that marks a frame built by the SYSCALL entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The frame of the SYSCALL fast path: the memory of a [`TrapFrame`], of which the entry stub
/// wrote only the argument registers and the five words above them (what the fast path reads);
/// the handler writes `rax`. The callee-saved registers' slots (RBX, RBP, R12–R15) and RCX/R11
/// hold nothing yet — the registers themselves still do — so they are private and
/// `MaybeUninit`: only the slow path's stub fills them in, turning the memory into a
/// [`TrapFrame`]. Field order = [`TrapFrame`]'s (checked below).
#[repr(C)]
pub struct SyscallFrame {
    /// The result, written by the handler; loaded into RAX before SYSRET.
    pub rax: u64,
    unsaved_rbx: MaybeUninit<u64>,
    unsaved_rcx: MaybeUninit<u64>,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    unsaved_rbp: MaybeUninit<u64>,
    r8: u64,
    r9: u64,
    r10: u64,
    unsaved_r11: MaybeUninit<u64>,
    unsaved_r12: MaybeUninit<u64>,
    unsaved_r13: MaybeUninit<u64>,
    unsaved_r14: MaybeUninit<u64>,
    unsaved_r15: MaybeUninit<u64>,
    vector: u64,
    orig_rax: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

impl SyscallFrame {
    /// The system-call number (RAX at entry; Linux: `orig_ax`).
    #[inline]
    pub fn number(&self) -> u64 {
        self.orig_rax
    }

    /// The six arguments, in the x86-64 system-call order `rdi, rsi, rdx, r10, r8, r9` (`r10`
    /// instead of `rcx`, which SYSCALL overwrites).
    #[inline]
    pub fn args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// How a system call leaves, as the fast path decides it: the value the entry stub tests.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Nothing to do: SYSRET straight away.
    Sysret = 0,
    /// The call has not run: it needs the whole register frame (`fork`, `clone`,
    /// `rt_sigreturn`, `sigaltstack`).
    WholeFrame = 1,
    /// The call has run (its result is in the frame's `rax`), and the exit has work to do, or
    /// SYSRET is not safe: the full kernel exit, on the full frame.
    Work = 2,
}

// The two frame types are one piece of memory, seen before and after the slow path's stub
// completed it: every field the fast path uses sits where the TrapFrame has it.
const _: () = {
    assert!(size_of::<SyscallFrame>() == size_of::<TrapFrame>());
    assert!(offset_of!(SyscallFrame, rax) == offset_of!(TrapFrame, rax));
    assert!(offset_of!(SyscallFrame, rdx) == offset_of!(TrapFrame, rdx));
    assert!(offset_of!(SyscallFrame, rsi) == offset_of!(TrapFrame, rsi));
    assert!(offset_of!(SyscallFrame, rdi) == offset_of!(TrapFrame, rdi));
    assert!(offset_of!(SyscallFrame, r8) == offset_of!(TrapFrame, r8));
    assert!(offset_of!(SyscallFrame, r9) == offset_of!(TrapFrame, r9));
    assert!(offset_of!(SyscallFrame, r10) == offset_of!(TrapFrame, r10));
    assert!(offset_of!(SyscallFrame, vector) == offset_of!(TrapFrame, vector));
    assert!(offset_of!(SyscallFrame, orig_rax) == offset_of!(TrapFrame, error_code));
    assert!(offset_of!(SyscallFrame, rip) == offset_of!(TrapFrame, rip));
    assert!(offset_of!(SyscallFrame, rflags) == offset_of!(TrapFrame, rflags));
    assert!(offset_of!(SyscallFrame, rsp) == offset_of!(TrapFrame, rsp));
    assert!(offset_of!(SyscallFrame, ss) == offset_of!(TrapFrame, ss));
};

core::arch::global_asm!(
    concat!(
    r#"
.global pikku_syscall_entry
pikku_syscall_entry:
    swapgs
    mov gs:[{scratch}], rsp
    mov rsp, gs:[{stack_top}]
    push {user_ss}
    push qword ptr gs:[{scratch}]
    push r11                        // rflags
    push {user_cs}
    push rcx                        // rip
    push rax                        // orig_rax (the error-code slot)
    push {vector}
    sub rsp, {gprs}                 // the general registers' slots: only the arguments are saved
    mov [rsp + {rdi}], rdi
    mov [rsp + {rsi}], rsi
    mov [rsp + {rdx}], rdx
    mov [rsp + {r10}], r10
    mov [rsp + {r8}], r8
    mov [rsp + {r9}], r9
    mov rdi, rsp
    call qword ptr [rip + {fast}]   // the kernel's fast path, registered by init()
    test rax, rax
    jnz 1f
    // Exit::Sysret: the result, the argument registers as they came, RCX/R11 for SYSRET.
    mov rax, [rsp + {rax}]
    mov rdi, [rsp + {rdi}]
    mov rsi, [rsp + {rsi}]
    mov rdx, [rsp + {rdx}]
    mov r10, [rsp + {r10}]
    mov r8, [rsp + {r8}]
    mov r9, [rsp + {r9}]
    mov rcx, [rsp + {rip}]
    mov r11, [rsp + {rflags}]
    mov rsp, [rsp + {rsp}]
    swapgs
    sysretq
1:
    // The slow path: complete the frame into a TrapFrame. RBX, RBP and R12-R15 still hold the
    // user's values (the Rust code preserved them); RCX and R11 are what SYSCALL made of them.
    mov [rsp + {rbx}], rbx
    mov [rsp + {rbp}], rbp
    mov [rsp + {r12}], r12
    mov [rsp + {r13}], r13
    mov [rsp + {r14}], r14
    mov [rsp + {r15}], r15
    mov rcx, [rsp + {rip}]
    mov [rsp + {rcx}], rcx
    mov r11, [rsp + {rflags}]
    mov [rsp + {r11}], r11
    mov rdi, rsp
    mov rsi, rax                    // the Exit reason
    call {slow}
    test rax, rax
    jz 2f
"#,
    pop_gprs!(),
    r#"    add rsp, 16
    mov rsp, [rsp + {user_rsp_above_rip}]
    swapgs
    sysretq
2:
    jmp pikku_trap_return
"#),
    user_ss = const USER_SS as u64,
    user_cs = const USER_CS as u64,
    vector = const SYSCALL_VECTOR,
    gprs = const offset_of!(TrapFrame, vector),
    rax = const offset_of!(TrapFrame, rax),
    rbx = const offset_of!(TrapFrame, rbx),
    rcx = const offset_of!(TrapFrame, rcx),
    rdx = const offset_of!(TrapFrame, rdx),
    rsi = const offset_of!(TrapFrame, rsi),
    rdi = const offset_of!(TrapFrame, rdi),
    rbp = const offset_of!(TrapFrame, rbp),
    r8 = const offset_of!(TrapFrame, r8),
    r9 = const offset_of!(TrapFrame, r9),
    r10 = const offset_of!(TrapFrame, r10),
    r11 = const offset_of!(TrapFrame, r11),
    r12 = const offset_of!(TrapFrame, r12),
    r13 = const offset_of!(TrapFrame, r13),
    r14 = const offset_of!(TrapFrame, r14),
    r15 = const offset_of!(TrapFrame, r15),
    rip = const offset_of!(TrapFrame, rip),
    rflags = const offset_of!(TrapFrame, rflags),
    rsp = const offset_of!(TrapFrame, rsp),
    fast = sym FAST_PATH,
    slow = sym slow_path,
    scratch = const offset_of!(PerCpu, user_rsp_scratch),
    stack_top = const offset_of!(PerCpu, kernel_stack_top),
    // After the general registers, vector and error code are gone, RSP points at the frame's rip.
    user_rsp_above_rip = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, rip),
);

unsafe extern "C" {
    fn pikku_syscall_entry();
}

/// The kernel's fast path (`syscall::entry`), registered by [`init`]. The stub calls through it
/// with `call [rip + FAST_PATH]` — one instruction, as a direct call would be — so that `arch`
/// names no module above it. (Read only by the stub; written once, before any user program.)
static FAST_PATH: AtomicUsize = AtomicUsize::new(0);

/// The kernel's slow path (`syscall::entry_slow`), registered by [`init`].
static SLOW_PATH: Once<fn(&mut TrapFrame, Exit)> = Once::new();

/// The slow path's Rust half: the kernel's work on the full frame, then whether SYSRET may
/// take it back (nonzero) or IRETQ must.
extern "C" fn slow_path(frame: &mut TrapFrame, why: Exit) -> u64 {
    let slow = SLOW_PATH.get().expect("a system call before syscall::init");
    slow(frame, why);
    sysret_is_safe(frame) as u64
}

/// May the fast path's frame leave through SYSRET? Its RCX, R11, CS and SS are SYSCALL's own
/// (nothing on the fast path can rewrite them), so two things are left to check: a return RIP
/// below the canonical hole (see the module docs) and no TF/RF in the RFLAGS SYSRET restores.
#[inline]
pub fn fast_sysret_is_safe(frame: &SyscallFrame) -> bool {
    frame.rip < USER_END && frame.rflags & (RFlags::TRAP_FLAG | RFlags::RESUME_FLAG).bits() == 0
}

/// May this frame leave through SYSRET? (See the module docs for why each condition matters.)
pub fn sysret_is_safe(frame: &TrapFrame) -> bool {
    let rflags = RFlags::from_bits_retain(frame.rflags);
    frame.rip < USER_END
        && frame.rcx == frame.rip
        && frame.r11 == frame.rflags
        && frame.cs == USER_CS as u64
        && frame.ss == USER_SS as u64
        && !rflags.intersects(RFlags::TRAP_FLAG | RFlags::RESUME_FLAG)
}

/// Registers the kernel's two halves of a system call — `fast` (on a [`SyscallFrame`]; says
/// how to leave) and `slow` (on the completed [`TrapFrame`]) — once, at boot, and programs
/// this CPU's SYSCALL MSRs ([`init_this_cpu`]).
pub fn init(fast: extern "C" fn(&mut SyscallFrame) -> Exit, slow: fn(&mut TrapFrame, Exit)) {
    FAST_PATH.store(fast as usize, Ordering::Release);
    SLOW_PATH.call_once(|| slow);
    init_this_cpu();
}

/// Programs the SYSCALL MSRs of this CPU — IA32_STAR, IA32_LSTAR, IA32_FMASK and EFER.SCE, with
/// WRMSR (SDM Vol. 3A §5.8.8 "Fast System Calls in 64-Bit Mode", Vol. 2C "WRMSR"). MSRs are per
/// CPU: every CPU runs this as it comes up.
pub fn init_this_cpu() {
    // STAR[47:32] = kernel CS (SS = CS + 8); STAR[63:48] = SYSRET base (SS = +8, CS = +16).
    let star = ((SYSRET_BASE as u64) << 48) | ((KERNEL_CS as u64) << 32);
    // SAFETY: the selectors match the GDT (see gdt.rs), the entry point is the stub above, and
    // the mask clears the flags listed in the module docs. EFER.SCE enables the instructions.
    unsafe {
        x86_64::registers::model_specific::Msr::new(0xC000_0081).write(star);
        LStar::write(VirtAddr::new(pikku_syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG | RFlags::DIRECTION_FLAG | RFlags::TRAP_FLAG | RFlags::NESTED_TASK | RFlags::ALIGNMENT_CHECK,
        );
        Efer::update(|e| e.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    let _ = Star::read; // (the typed Star writer insists on segment checks; the raw MSR is clearer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    fn syscall_frame(rip: u64) -> TrapFrame {
        TrapFrame {
            rax: 0, rbx: 0, rcx: rip, rdx: 0, rsi: 0, rdi: 0, rbp: 0, r8: 0, r9: 0, r10: 0,
            r11: 0x202, r12: 0, r13: 0, r14: 0, r15: 0, vector: SYSCALL_VECTOR, error_code: 0,
            rip, cs: USER_CS as u64, rflags: 0x202, rsp: 0x7fff_0000, ss: USER_SS as u64,
        }
    }

    #[ktest]
    fn sysret_only_for_plain_canonical_returns() {
        assert!(sysret_is_safe(&syscall_frame(0x40_1000)));
        assert!(!sysret_is_safe(&syscall_frame(0x0000_8000_0000_0000)), "non-canonical RIP: #GP in ring 0 on Intel");
        assert!(!sysret_is_safe(&syscall_frame(0xffff_8000_0000_1000)), "kernel RIP");
        let mut f = syscall_frame(0x40_1000);
        f.rip = 0x40_2000; // rewritten (execve, sigreturn): RCX no longer matches
        assert!(!sysret_is_safe(&f));
        let mut f = syscall_frame(0x40_1000);
        f.rflags |= RFlags::TRAP_FLAG.bits();
        f.r11 = f.rflags;
        assert!(!sysret_is_safe(&f));
        let mut f = syscall_frame(0x40_1000);
        f.cs = KERNEL_CS as u64;
        assert!(!sysret_is_safe(&f));
    }
}
