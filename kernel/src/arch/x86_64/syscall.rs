//! The SYSCALL instruction's way into the kernel, and SYSRET/IRET back out.
//!
//! SYSCALL (Intel SDM Vol. 2B "SYSCALL—Fast System Call", Vol. 3A §5.8.8 "Fast System Calls in
//! 64-Bit Mode") jumps to the address in IA32_LSTAR in ring 0, with RCX = the user RIP, R11 = the
//! user RFLAGS, RFLAGS &= ~IA32_FMASK, CS/SS from IA32_STAR — and **no stack switch**: RSP is still
//! the user's. So the entry stub:
//!
//! 1. `swapgs` — GS now points at this CPU's [`PerCpu`] (its kernel stack top and a scratch slot,
//!    reached at their `offset_of!` offsets, passed to the assembly as constants);
//! 2. parks the user RSP in the scratch slot and loads the thread's kernel stack;
//! 3. pushes a frame shaped exactly like an exception's [`TrapFrame`] (user SS, RSP, RFLAGS, CS,
//!    RIP; error 0; "vector" [`SYSCALL_VECTOR`]; then every general register), so syscalls,
//!    signals and exceptions all see one register layout — with the system-call number in the
//!    error-code slot, where Linux's `pt_regs` keeps `orig_ax` (see [`TrapFrame::orig_rax`]):
//!    a call interrupted by a signal is restarted from it, and ptrace shows it;
//! 4. calls the registered handler, which reads the number from `rax`, the arguments from
//!    `rdi, rsi, rdx, r10, r8, r9`, and writes the result into the frame's `rax`.
//!
//! Back out: SYSRET (SDM Vol. 2B "SYSRET—Return From Fast System Call"; SWAPGS before it, Vol. 2B
//! "SWAPGS—Swap GS Base Register") is fast but has a trap: on Intel CPUs, SYSRET with a
//! non-canonical RCX raises #GP *in ring 0 on the user's stack* — a classic privilege-escalation
//! bug. So SYSRET is used only when [`sysret_is_safe`] says the frame is an ordinary syscall return
//! (RIP canonical, RCX = RIP, R11 = RFLAGS, user selectors, no TF/RF); everything else — a frame
//! rewritten by `execve` or `rt_sigreturn` — leaves through IRETQ, which checks and restores
//! everything.
//!
//! FMASK clears IF (no interrupts until the kernel is on its own stack), DF (the ABI), TF (no
//! single-stepping into the kernel), NT, and **AC** — otherwise user code could enter with
//! EFLAGS.AC set and switch SMAP off for the whole syscall.

use spin::Once;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use core::mem::offset_of;

use super::gdt::{KERNEL_CS, SYSRET_BASE, USER_CS, USER_SS};
use super::paging::USER_END;
use super::percpu::PerCpu;
use super::trap::TrapFrame;
use crate::{pop_gprs, push_gprs};

/// The `vector` value that marks a frame built by the SYSCALL entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

static HANDLER: Once<fn(&mut TrapFrame)> = Once::new();

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
    push r11
    push {user_cs}
    push rcx
    push rax
    push {vector}
"#,
    push_gprs!(),
    r#"    mov rdi, rsp
    cld
    call {dispatch}
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
    dispatch = sym syscall_dispatch,
    scratch = const offset_of!(PerCpu, user_rsp_scratch),
    stack_top = const offset_of!(PerCpu, kernel_stack_top),
    // After the general registers, vector and error code are gone, RSP points at the frame's rip.
    user_rsp_above_rip = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, rip),
);

unsafe extern "C" {
    fn pikku_syscall_entry();
}

/// Returns nonzero if the SYSRET path may be taken.
extern "C" fn syscall_dispatch(frame: &mut TrapFrame) -> u64 {
    let handler = HANDLER.get().expect("syscall before syscall::init");
    handler(frame);
    sysret_is_safe(frame) as u64
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

/// Registers `handler` (once, at boot) and programs this CPU's SYSCALL MSRs ([`init_this_cpu`]).
pub fn init(handler: fn(&mut TrapFrame)) {
    HANDLER.call_once(|| handler);
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
