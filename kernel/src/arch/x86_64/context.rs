//! Kernel stacks and the kernel-mode context switch.
//!
//! Every thread has its own kernel stack: syscalls and interrupts from its user mode run there
//! (TSS.RSP0 and `PerCpu::kernel_stack_top` point at its top while it runs). Switching threads
//! is switching kernel stacks: [`switch`] pushes the callee-saved registers (the System V ABI
//! says the caller already saved the rest), stores RSP into the old thread, loads the new
//! thread's RSP, pops its callee-saved registers and returns — into wherever the new thread last
//! called `switch`. A thread that never ran is given a stack that "returns" into
//! `pikku_first_entry`, which leaves to user mode through the ordinary trap-return path.

use alloc::boxed::Box;
use alloc::vec;

use super::trap::TrapFrame;

/// Size of a kernel stack.
pub const KERNEL_STACK_SIZE: usize = 64 * 1024;

/// One thread's kernel stack.
pub struct KernelStack {
    memory: Box<[u8]>,
}

impl core::fmt::Debug for KernelStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KernelStack({:#x})", self.top())
    }
}

impl KernelStack {
    /// A zeroed stack from the kernel heap.
    pub fn new() -> KernelStack {
        KernelStack { memory: vec![0u8; KERNEL_STACK_SIZE].into_boxed_slice() }
    }

    /// The (16-byte aligned) address just above the stack.
    pub fn top(&self) -> u64 {
        (self.memory.as_ptr() as u64 + KERNEL_STACK_SIZE as u64) & !15
    }

    /// Prepares the stack of a thread that has never run: `user` on top (its first user-mode
    /// registers), below it the return address `pikku_first_entry` and six zero callee-saved
    /// registers — exactly what [`switch`] pops. Returns the RSP to save for the thread.
    pub fn prepare_first_entry(&mut self, user: &TrapFrame) -> u64 {
        let frame_size = core::mem::size_of::<TrapFrame>() as u64;
        let frame_addr = self.top() - frame_size;
        let rsp = frame_addr - 8 * 7;
        let base = self.memory.as_ptr() as u64;
        let put = |memory: &mut [u8], addr: u64, bytes: &[u8]| {
            let at = (addr - base) as usize;
            memory[at..at + bytes.len()].copy_from_slice(bytes);
        };
        // SAFETY: TrapFrame is repr(C) plain old data; viewing it as bytes reads it.
        let frame_bytes = unsafe { core::slice::from_raw_parts(user as *const TrapFrame as *const u8, frame_size as usize) };
        put(&mut self.memory, frame_addr, frame_bytes);
        put(&mut self.memory, frame_addr - 8, &(pikku_first_entry as *const () as u64).to_le_bytes());
        for i in 0..6 {
            put(&mut self.memory, rsp + 8 * i, &0u64.to_le_bytes());
        }
        rsp
    }
}

core::arch::global_asm!(
    r#"
.global pikku_context_switch
pikku_context_switch:
    // rdi = where to store the old RSP, rsi = the new RSP
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

.global pikku_first_entry
pikku_first_entry:
    // rsp = &TrapFrame of the new thread's first user-mode entry (16-byte aligned, so the
    // call below meets the ABI); ask the kernel whether the thread may still go.
    call {first_entry}
    jmp pikku_trap_return
"#,
    first_entry = sym first_entry,
);

static FIRST_ENTRY_HOOK: spin::Once<fn()> = spin::Once::new();

/// Registers what runs just before a new thread first enters user mode (the scheduler's
/// "has this process ended?" check).
pub fn set_first_entry_hook(hook: fn()) {
    FIRST_ENTRY_HOOK.call_once(|| hook);
}

extern "C" fn first_entry() {
    if let Some(hook) = FIRST_ENTRY_HOOK.get() {
        hook();
    }
}

unsafe extern "C" {
    fn pikku_context_switch(save_rsp: *mut u64, load_rsp: u64);
    fn pikku_first_entry();
}

/// Saves the current kernel context into `*save_rsp` and resumes the one saved as `load_rsp`.
///
/// # Safety
/// `load_rsp` must be an RSP saved by an earlier `switch` (or made by
/// [`KernelStack::prepare_first_entry`]) whose stack is still alive, and nothing may hold a
/// lock that the resumed thread will take. Interrupts must be off.
pub unsafe fn switch(save_rsp: *mut u64, load_rsp: u64) {
    // SAFETY: forwarded to the caller (see above).
    unsafe { pikku_context_switch(save_rsp, load_rsp) }
}
