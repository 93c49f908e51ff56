//! The run queue and the kernel-stack context switch.
//!
//! pikku runs one CPU and no timer yet, so scheduling is cooperative: a thread runs until it
//! exits or yields. The boot thread yields to the first user program and waits for it to end.
//! The switch itself is complete — address space, kernel stack (TSS.RSP0 and the SYSCALL
//! stack), FS base, and PKRU through [`super::switch_pkru`] — so preemption only has to add a
//! timer that calls [`yield_now`].

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use spin::Mutex;

use super::{current, set_current, switch_pkru, ExitStatus, Process, Thread};
use crate::arch::x86_64::{context, cpu, gdt, percpu};

static READY: Mutex<VecDeque<Arc<Thread>>> = Mutex::new(VecDeque::new());
/// Threads that have exited, kept until we are off their kernel stacks.
static DEAD: Mutex<Vec<Arc<Thread>>> = Mutex::new(Vec::new());

/// Makes `thread` ready to run.
pub fn spawn(thread: Arc<Thread>) {
    READY.lock().push_back(thread);
}

/// Lets the next ready thread run; the current thread stays ready.
pub fn yield_now() {
    let Some(next) = READY.lock().pop_front() else { return };
    let prev = current();
    READY.lock().push_back(prev.clone());
    switch_to(prev, next);
}

/// Ends the current thread and runs the next one. Never returns.
pub fn exit_current() -> ! {
    let prev = current();
    let next = READY.lock().pop_front().expect("the last thread exited: nothing left to run");
    DEAD.lock().push(prev.clone());
    switch_to(prev, next);
    unreachable!("a dead thread was resumed");
}

/// Ends every thread of the current process with `status` (Linux: `do_group_exit()`).
/// With one thread per process today, that is the current thread.
pub fn exit_group(status: ExitStatus) -> ! {
    let thread = current();
    {
        let mut exit = thread.process.exit.lock();
        if exit.is_none() {
            *exit = Some(status);
        }
    }
    // Close the files now; the address space goes when the last thread is reaped.
    *thread.process.files.lock() = crate::fs::FdTable::empty();
    drop(thread);
    exit_current()
}

/// Runs ready threads until `process` has ended; returns how it ended.
pub fn wait_for(process: &Arc<Process>) -> ExitStatus {
    loop {
        reap();
        if let Some(status) = *process.exit.lock() {
            return status;
        }
        if READY.lock().is_empty() {
            panic!("pid {} is neither running nor exited", process.pid);
        }
        yield_now();
    }
}

/// Frees the threads that have exited (their kernel stacks, and with the last one their
/// address space). Called only on a live thread's stack.
fn reap() {
    let dead: Vec<Arc<Thread>> = core::mem::take(&mut *DEAD.lock());
    drop(dead);
}

fn switch_to(prev: Arc<Thread>, next: Arc<Thread>) {
    if Arc::ptr_eq(&prev, &next) {
        return;
    }
    set_current(next.clone());
    switch_pkru(Some(&prev), &next);
    prev.fs_base.store(cpu::fs_base(), Ordering::Relaxed);
    cpu::set_fs_base(next.fs_base.load(Ordering::Relaxed));
    if !Arc::ptr_eq(&prev.mm, &next.mm) {
        next.mm.read().activate();
    }
    if let Some(stack) = &next.kstack {
        gdt::set_kernel_stack(stack.top());
        percpu::set_kernel_stack_top(stack.top());
    }
    let save = prev.saved_rsp.as_ptr();
    let load = next.saved_rsp.load(Ordering::Relaxed);
    // Both threads stay alive in READY, DEAD or CURRENT; drop our own references first, since
    // a dead `prev` never comes back to drop them.
    drop(prev);
    drop(next);
    // SAFETY: `load` was saved by an earlier switch or prepared by `prepare_first_entry`, on a
    // stack owned by a live thread; no lock is held; interrupts are off in the kernel.
    unsafe { context::switch(save, load) };
    reap();
}
