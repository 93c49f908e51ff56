//! The SYSCALL instruction's way into the kernel, and SYSRET/IRET back out — a fast path for
//! the ordinary call and a slow path for everything that needs the caller's whole register frame.
//!
//! SYSCALL (Intel SDM Vol. 2B "SYSCALL—Fast System Call", Vol. 3A §5.8.8 "Fast System Calls in
//! 64-Bit Mode") jumps to the address in IA32_LSTAR in ring 0, with RCX = the user RIP, R11 = the
//! user RFLAGS, RFLAGS &= ~IA32_FMASK, CS/SS from IA32_STAR — and **no stack switch**: RSP is still
//! the user's. The fast path, all in the entry stub below:
//!
//! 1. `swapgs` — GS now points at this CPU's [`PerCpu`] (its kernel stack top, a scratch slot,
//!    the running thread's work word, reached at their `offset_of!` offsets);
//! 2. parks the user RSP in the scratch slot and loads the thread's kernel stack;
//! 3. reserves a frame shaped exactly like an exception's [`TrapFrame`], but writes only what
//!    the system-call ABI needs back: the user RSP, RIP (RCX) and RFLAGS (R11), the number (in
//!    the error-code slot, where Linux's `pt_regs` keeps `orig_ax`, see
//!    [`TrapFrame::orig_rax`]) and the six argument registers, which a `syscall` preserves
//!    and a Rust callee may not. Everything else survives by itself: RBX, RBP and R12–R15 are
//!    callee-saved in the Rust (System V) calling convention; RAX, RCX and R11 are the ones a
//!    `syscall` may change (result, return RIP, RFLAGS). That half-written frame is a
//!    [`SyscallFrame`], a type of its own that no Rust code is ever handed: the handlers get
//!    the arguments in registers, and only the slow path's stub completes the memory into a
//!    [`TrapFrame`];
//! 4. **one dispatch step**: the number (RAX) is bounds-checked against the system-call table
//!    registered by [`init`] (the kernel's `syscall::TABLE`: one [`Handler`] per number), RCX
//!    takes R10 (the fourth argument: SYSCALL overwrote RCX, so the ABI moved it), and the
//!    stub calls the number's handler with the six arguments where the C calling convention
//!    wants them. The handler returns the value for RAX (a result, or `-errno`);
//! 5. **one exit test**: with interrupts still off, the running thread's work word (through
//!    [`PerCpu::current_work`]) — nonzero means a signal, a stop or an end to attend to
//!    (`task::Thread::add_work`) — and whether SYSRET may return to this RIP/RFLAGS; then the
//!    argument registers, RCX/R11 and the user RSP come back, SWAPGS, SYSRET. That is all a
//!    `getpid` does.
//!
//! The **slow path** starts where the fast path cannot go on: a call that reads or rewrites
//! the whole frame (`fork`, `clone`, `rt_sigreturn`, `sigaltstack`: their table entry is
//! [`WHOLE_FRAME`], which never returns to the call site), or an exit with work to do, or a
//! return SYSRET must not take. Its stub stores the callee-saved registers (still the user's
//! values) and RCX/R11 (= RIP/RFLAGS, as the `syscall` left them), CS, SS and the vector,
//! which makes the frame a complete [`TrapFrame`], and calls the kernel's slow path
//! (`syscall::entry_slow`, registered by [`init`]) with it. It leaves like an exception does,
//! through all the registers — with SYSRET if [`sysret_is_safe`], else IRETQ.
//!
//! Back out: SYSRET (SDM Vol. 2B "SYSRET—Return From Fast System Call"; SWAPGS before it, Vol. 2B
//! "SWAPGS—Swap GS Base Register") is fast but has a trap: on Intel CPUs, SYSRET with a
//! non-canonical RCX raises #GP *in ring 0 on the user's stack* — a classic privilege-escalation
//! bug (a `syscall` in the last two bytes below the canonical hole returns to a non-canonical
//! RIP). On the fast path nothing can have changed the RIP since the `syscall`, which ran in
//! user memory (below [`USER_END`] = 2^47), so the return RIP is at most 2^47: it is
//! non-canonical exactly when its bit 47 is set — one `bt`. And RFLAGS must have neither TF
//! nor RF (SYSRET would trap at once, or cannot restore RF): one `test`. The slow path asks
//! [`sysret_is_safe`] about the rewritten frame. Everything else — a frame rewritten by
//! `execve` or `rt_sigreturn` — leaves through IRETQ, which checks and restores everything.
//!
//! Interrupts stay off from SYSCALL (FMASK clears IF) to SYSRET (which loads the user RFLAGS,
//! IF set): the kernel never turns them on outside the idle loop, so the work word is tested
//! with them off, and an IPI another CPU sent after setting a bit (a reschedule, a TLB
//! shootdown) is taken the instant SYSRET re-enables them, in user mode, through the interrupt
//! path and its full kernel exit.
//!
//! FMASK clears IF (no interrupts until the kernel is on its own stack), DF (the ABI, so no CLD is
//! needed), TF (no single-stepping into the kernel), NT, and **AC** — otherwise user code could
//! enter with EFLAGS.AC set and switch SMAP off for the whole syscall.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
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

/// One entry of the system-call table: a handler, called by the entry stub with the six
/// argument registers in the C order (`rdi, rsi, rdx, r10 → rcx, r8, r9`), returning the value
/// for RAX (a result, or `-errno`). The kernel's table wraps each Rust handler in one.
pub type Handler = extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;

/// The frame of the SYSCALL fast path: the memory of a [`TrapFrame`], of which the entry stub
/// wrote only what the fast path needs back (the argument registers, the user RIP, RFLAGS and
/// RSP, and the number). No Rust code ever gets one — it describes the stub's stores (their
/// offsets come from here) and says, by its `MaybeUninit` slots, what is *not* in memory yet:
/// the callee-saved registers (RBX, RBP, R12–R15: the registers themselves still hold them),
/// RAX, RCX/R11, CS, SS and the vector. Only the slow path's stub fills those in, turning the
/// memory into a [`TrapFrame`]. Field order = [`TrapFrame`]'s (checked below).
#[repr(C)]
pub struct SyscallFrame {
    unsaved_rax: MaybeUninit<u64>,
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
    unsaved_vector: MaybeUninit<u64>,
    orig_rax: u64,
    rip: u64,
    unsaved_cs: MaybeUninit<u64>,
    rflags: u64,
    rsp: u64,
    unsaved_ss: MaybeUninit<u64>,
}

/// Why the slow path runs: the value the stub hands it.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The call has not run: it needs the whole register frame (its table entry is
    /// [`WHOLE_FRAME`]).
    WholeFrame = 1,
    /// The call has run (its result is in the frame's `rax`), and the exit has work to do, or
    /// SYSRET is not safe: the full kernel exit, on the full frame.
    Work = 2,
}

// The two frame types are one piece of memory, seen before and after the slow path's stub
// completed it: every field the fast path writes sits where the TrapFrame has it.
const _: () = {
    assert!(size_of::<SyscallFrame>() == size_of::<TrapFrame>());
    assert!(offset_of!(SyscallFrame, rdx) == offset_of!(TrapFrame, rdx));
    assert!(offset_of!(SyscallFrame, rsi) == offset_of!(TrapFrame, rsi));
    assert!(offset_of!(SyscallFrame, rdi) == offset_of!(TrapFrame, rdi));
    assert!(offset_of!(SyscallFrame, r8) == offset_of!(TrapFrame, r8));
    assert!(offset_of!(SyscallFrame, r9) == offset_of!(TrapFrame, r9));
    assert!(offset_of!(SyscallFrame, r10) == offset_of!(TrapFrame, r10));
    assert!(offset_of!(SyscallFrame, orig_rax) == offset_of!(TrapFrame, error_code));
    assert!(offset_of!(SyscallFrame, rip) == offset_of!(TrapFrame, rip));
    assert!(offset_of!(SyscallFrame, rflags) == offset_of!(TrapFrame, rflags));
    assert!(offset_of!(SyscallFrame, rsp) == offset_of!(TrapFrame, rsp));
    // The stub calls the handler with RSP at the frame: the C convention wants it 16-aligned.
    assert!(size_of::<TrapFrame>().is_multiple_of(16));
    // The fast path's RIP test (`bt rcx, 47`) relies on user memory ending at 2^47.
    assert!(USER_END == 1 << 47);
};

core::arch::global_asm!(
    concat!(
    r#"
.global pikku_syscall_entry
pikku_syscall_entry:
    swapgs
    mov gs:[{scratch}], rsp
    mov rsp, gs:[{stack_top}]
    sub rsp, {frame}                // a SyscallFrame: only what the fast path needs back
    mov [rsp + {rip}], rcx
    mov [rsp + {rflags}], r11
    mov r11, gs:[{scratch}]
    mov [rsp + {rsp}], r11
    mov [rsp + {orig_rax}], rax
    mov [rsp + {rdi}], rdi
    mov [rsp + {rsi}], rsi
    mov [rsp + {rdx}], rdx
    mov [rsp + {r10}], r10
    mov [rsp + {r8}], r8
    mov [rsp + {r9}], r9
    // One step from number to handler: the table registered by init(), bounds-checked.
    cmp rax, [rip + {table_len}]
    jae 3f
    mov r11, [rip + {table}]
    mov rcx, r10                    // the fourth argument, where the C convention wants it
    call [r11 + rax * 8]
1:
    // RAX = the result. One test of the thread's work word, with interrupts off.
    mov rcx, gs:[{current_work}]
    cmp dword ptr [rcx], 0
    jne 4f
    mov rcx, [rsp + {rip}]
    mov r11, [rsp + {rflags}]
    bt rcx, 47                      // the RIP after a syscall in user memory: canonical unless 2^47
    jc 4f
    test r11d, {tf_rf}              // TF or RF: SYSRET would not restore them faithfully
    jnz 4f
    mov rdi, [rsp + {rdi}]
    mov rsi, [rsp + {rsi}]
    mov rdx, [rsp + {rdx}]
    mov r10, [rsp + {r10}]
    mov r8, [rsp + {r8}]
    mov r9, [rsp + {r9}]
    mov rsp, [rsp + {rsp}]
    swapgs
    sysretq
3:
    // A number beyond the table: the handler of unknown numbers (which finds the number in RAX).
    call {unknown}
    jmp 1b
4:
    // The slow exit: the call has run, its result goes into the frame.
    mov [rsp + {rax}], rax
    mov esi, {exit_work}
    jmp 5f
.global pikku_syscall_whole_frame
pikku_syscall_whole_frame:
    // From WHOLE_FRAME, the table entry of the calls that need the whole frame (which
    // dropped its return address: RSP is at the frame again). The call has not run.
    mov esi, {exit_whole_frame}
5:
    // Complete the frame into a TrapFrame. RBX, RBP and R12-R15 still hold the user's
    // values (the Rust code preserved them); RCX and R11 are what SYSCALL made of them.
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
    mov qword ptr [rsp + {cs}], {user_cs}
    mov qword ptr [rsp + {ss}], {user_ss}
    mov qword ptr [rsp + {vector}], {syscall_vector}
    mov rdi, rsp
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
    syscall_vector = const SYSCALL_VECTOR,
    frame = const size_of::<SyscallFrame>(),
    tf_rf = const (RFlags::TRAP_FLAG.bits() | RFlags::RESUME_FLAG.bits()),
    exit_work = const Exit::Work as u64,
    exit_whole_frame = const Exit::WholeFrame as u64,
    rax = const offset_of!(TrapFrame, rax),
    rbx = const offset_of!(TrapFrame, rbx),
    rcx = const offset_of!(TrapFrame, rcx),
    rdx = const offset_of!(SyscallFrame, rdx),
    rsi = const offset_of!(SyscallFrame, rsi),
    rdi = const offset_of!(SyscallFrame, rdi),
    rbp = const offset_of!(TrapFrame, rbp),
    r8 = const offset_of!(SyscallFrame, r8),
    r9 = const offset_of!(SyscallFrame, r9),
    r10 = const offset_of!(SyscallFrame, r10),
    r11 = const offset_of!(TrapFrame, r11),
    r12 = const offset_of!(TrapFrame, r12),
    r13 = const offset_of!(TrapFrame, r13),
    r14 = const offset_of!(TrapFrame, r14),
    r15 = const offset_of!(TrapFrame, r15),
    vector = const offset_of!(TrapFrame, vector),
    orig_rax = const offset_of!(SyscallFrame, orig_rax),
    rip = const offset_of!(SyscallFrame, rip),
    cs = const offset_of!(TrapFrame, cs),
    rflags = const offset_of!(SyscallFrame, rflags),
    rsp = const offset_of!(SyscallFrame, rsp),
    ss = const offset_of!(TrapFrame, ss),
    table = sym TABLE,
    table_len = sym TABLE_LEN,
    unknown = sym unknown_entry,
    slow = sym slow_path,
    scratch = const offset_of!(PerCpu, user_rsp_scratch),
    stack_top = const offset_of!(PerCpu, kernel_stack_top),
    current_work = const offset_of!(PerCpu, current_work),
    // After the general registers, vector and error code are gone, RSP points at the frame's rip.
    user_rsp_above_rip = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, rip),
);

unsafe extern "C" {
    fn pikku_syscall_entry();
}

/// The system-call table (the kernel's `syscall::TABLE`) and its length, registered by
/// [`init`] — so that `arch` names no module above it. Read only by the stub (a length of 0
/// until then sends every number to [`UNKNOWN`]); written once, before any user program.
static TABLE: AtomicPtr<Handler> = AtomicPtr::new(core::ptr::null_mut());
static TABLE_LEN: AtomicUsize = AtomicUsize::new(0);

/// What [`UNKNOWN`] reports a number to (the kernel's `syscall::unknown`), registered by [`init`].
static UNKNOWN_NUMBER: Once<extern "C" fn(u64) -> u64> = Once::new();

/// The kernel's slow path (`syscall::entry_slow`), registered by [`init`].
static SLOW_PATH: Once<fn(&mut TrapFrame, Exit)> = Once::new();

/// The table entry of a number no call has — and what the stub calls for a number beyond the
/// table. The handler of an unknown number must say which number it was, and only RAX still
/// holds it (the stub indexed the table with RAX and called): so this is a few instructions
/// of assembly that pass RAX on, as the first argument, to the registered reporter.
#[unsafe(naked)]
pub extern "C" fn unknown_entry(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: called only as a table entry by the stub (the in-kernel tests' `dispatch` calls
    // the reporter directly, not this), so RAX holds the number. A tail call: the reporter
    // returns to our caller.
    core::arch::naked_asm!("mov rdi, rax", "jmp {report}", report = sym report_unknown)
}

/// [`unknown_entry`] as a [`Handler`], for the table's empty slots.
pub const UNKNOWN: Handler = unknown_entry;

extern "C" fn report_unknown(number: u64) -> u64 {
    let report = UNKNOWN_NUMBER.get().expect("a system call before syscall::init");
    report(number)
}

/// The table entry of the calls that need the caller's whole register frame (`fork`, `clone`,
/// `rt_sigreturn`, `sigaltstack`). It never returns to the stub's call: it drops the return
/// address (RSP is then at the frame again) and goes on in the stub's slow path, which
/// completes the frame and runs the call there (`syscall::entry_slow` with
/// [`Exit::WholeFrame`]).
#[unsafe(naked)]
pub extern "C" fn whole_frame_entry(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: called only as a table entry by the entry stub, right after its `call` with RSP
    // 8 below the frame; the callee-saved registers still hold the user's values.
    core::arch::naked_asm!("add rsp, 8", "jmp pikku_syscall_whole_frame")
}

/// [`whole_frame_entry`] as a [`Handler`], for the table.
pub const WHOLE_FRAME: Handler = whole_frame_entry;

/// The slow path's Rust half: the kernel's work on the full frame, then whether SYSRET may
/// take it back (nonzero) or IRETQ must.
extern "C" fn slow_path(frame: &mut TrapFrame, why: Exit) -> u64 {
    let slow = SLOW_PATH.get().expect("a system call before syscall::init");
    slow(frame, why);
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

/// Registers the kernel's side of a system call — the `table` of handlers (indexed by
/// number; [`UNKNOWN`] in its empty slots, [`WHOLE_FRAME`] for the calls that need the whole
/// frame), the reporter of `unknown` numbers, and the `slow` path (on the completed
/// [`TrapFrame`]) — once, at boot, and programs this CPU's SYSCALL MSRs ([`init_this_cpu`]).
pub fn init(table: &'static [Handler], unknown: extern "C" fn(u64) -> u64, slow: fn(&mut TrapFrame, Exit)) {
    UNKNOWN_NUMBER.call_once(|| unknown);
    SLOW_PATH.call_once(|| slow);
    TABLE.store(table.as_ptr().cast_mut(), Ordering::Relaxed);
    TABLE_LEN.store(table.len(), Ordering::Release);
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
