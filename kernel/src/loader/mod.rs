//! Starting a program: the ELF loader and the initial stack. Linux: `load_elf_binary()`.
//!
//! 1. Read the file from the ramdisk; plan its segments ([`uapi::elf::plan`], which refuses
//!    anything malformed: `ENOEXEC`).
//! 2. A fresh address space (`Mm::new`: key map = key 0 only, no execute-only key).
//! 3. One memory area per `PT_LOAD` segment, backed by the file (`.text`, `.data`) and by zeros
//!    (`.bss`) — nothing is copied now; pages fill in on first touch.
//! 4. An 8-MiB stack area below `STACK_TOP`, the program break after the highest segment.
//! 5. The initial stack (argc, argv, envp, auxv with AT_PHDR … AT_RANDOM) written into it.
//! 6. A thread whose first trip to user mode starts at the entry point, with PKRU =
//!    0x55555554 (Linux's `init_pkru_value` at exec).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use pkeys::{Errno, Pkey, Pkru};
use uapi::stack::{self, at, StackInfo};
use vma::{Backing, Prot, Vma};

use crate::arch::x86_64::gdt::{USER_CS, USER_SS};
use crate::arch::x86_64::syscall::SYSCALL_VECTOR;
use crate::arch::x86_64::trap::TrapFrame;
use crate::arch::x86_64::context::KernelStack;
use crate::arch::x86_64::cpu;
use crate::fs::{ramdisk, Node};
use crate::mm::address_space::Mm;
use crate::mm::area::{STACK_SIZE, STACK_TOP};
use crate::task::{self, Process, Thread};

/// Loads `path` as a new process with `argv` and `envp`, ready to run (not yet scheduled).
pub fn spawn_process(path: &[u8], argv: &[&[u8]], envp: &[&[u8]]) -> Result<(Arc<Process>, Arc<Thread>), Errno> {
    let task = crate::task::limits::TaskSlot::take()?;
    let pid = Thread::allocate_tid();
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let process = Process::new(pid, &String::from_utf8_lossy(name), Some(task));
    let thread = load(&process, pid, path, argv, envp)?;
    Ok((process, thread))
}

/// Loads `path` with `argv` and `envp` into a fresh address space and returns the thread
/// (id `tid`, in `process`) that will start it — `execve` and the first program both use this.
pub fn load(process: &Arc<Process>, tid: u32, path: &[u8], argv: &[&[u8]], envp: &[&[u8]]) -> Result<Arc<Thread>, Errno> {
    let Node::File { file, .. } = ramdisk::lookup(path)? else { return Err(Errno::EACCES) };
    if argv.len() + envp.len() > 4096 {
        return Err(Errno::E2BIG);
    }
    if !uapi::elf::has_elf_magic(file.data) {
        return Err(Errno::ENOEXEC);
    }
    let plan = uapi::elf::plan(file.data).map_err(|e| {
        crate::log_warn_ratelimited!("{}: not a loadable executable: {e:?}", String::from_utf8_lossy(path));
        Errno::ENOEXEC
    })?;

    let mut mm = Mm::new()?;
    for seg in &plan.segments {
        mm.add_area(Vma {
            start: seg.start,
            end: seg.end,
            prot: seg.prot,
            pkey: Pkey::DEFAULT,
            backing: Backing::File { file: crate::mm::area::MappedFile::Ramdisk(file), offset: seg.file_offset, file_len: seg.file_len },
            policy: None,
        })?;
    }
    mm.add_area(Vma { start: STACK_TOP - STACK_SIZE, end: STACK_TOP, prot: Prot::READ | Prot::WRITE, pkey: Pkey::DEFAULT, backing: Backing::Anonymous, policy: None })?;
    mm.brk_start = plan.brk_start;
    mm.brk = plan.brk_start;

    let mut random = [0u8; 16];
    cpu::random_bytes(&mut random);
    let auxv = [
        (at::PHDR, plan.phdr),
        (at::PHENT, plan.phent),
        (at::PHNUM, plan.phnum),
        (at::PAGESZ, 4096),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, plan.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::SECURE, 0),
        (at::HWCAP, cpu::cpuid(1, 0).edx as u64),
        (at::CLKTCK, 100),
    ];
    let initial = stack::build(STACK_TOP, &StackInfo { argv, envp, auxv: &auxv, random });

    let mm = mm.into_ref();
    let user = TrapFrame {
        rax: 0, rbx: 0, rcx: 0, rdx: 0, rsi: 0, rdi: 0, rbp: 0, r8: 0, r9: 0, r10: 0, r11: 0,
        // The new program starts as the return of `execve` (rax 0, orig_rax 59, what a tracer
        // sees at the SIGTRAP of an exec on Linux).
        r12: 0, r13: 0, r14: 0, r15: 0, vector: SYSCALL_VECTOR, error_code: 59,
        rip: plan.entry,
        cs: USER_CS as u64,
        rflags: 0x202, // IF set, reserved bit 1
        rsp: initial.rsp,
        ss: USER_SS as u64,
    };
    let kstack = KernelStack::new(tid).ok_or(Errno::ENOMEM)?;
    let thread = Thread::new_user(process.clone(), mm.clone(), Pkru::INIT, &user, tid, kstack, None);

    // Write the initial stack through the new address space, as the new thread (so demand
    // paging fills the stack pages and the copy runs with the new program's PKRU).
    let bytes: Vec<u8> = initial.bytes;
    task::run_as(&thread, || crate::mm::user::copy_to_user(initial.rsp, &bytes))?;
    Ok(thread)
}
