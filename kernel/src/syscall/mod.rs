//! The system-call table: Linux x86-64 numbers → handlers.
//!
//! Handlers take the raw 64-bit register values (`rdi, rsi, rdx, r10, r8, r9` on x86-64) and
//! return `Result<u64, Errno>`; the table turns an error into `-errno`, the value Linux
//! returns in `rax`. Like xv6's `syscalls[]`, the table is one plain `match`: to find what
//! number N does, read one line. An unknown number returns `-ENOSYS` and logs one line.
//!
//! The SYSCALL entry stub ([`arch::x86_64::syscall`](crate::arch::x86_64::syscall)) calls [`entry`]
//! (the fast path) with a frame of the argument registers; [`entry`] looks the number up in
//! `table`, whose `match` the compiler turns into one bounds-checked jump table: one step from
//! number to handler. [`entry_slow`] takes the calls and exits that need the whole register
//! frame. The in-kernel tests call `dispatch` (the table, for calls that need no frame)
//! directly on a kernel-made thread — the same handlers, without the ring change.

pub mod fs;
pub mod mempolicy;
pub mod mm;
pub mod pkey;
pub mod process;
pub mod ptrace;
pub mod sched;

use pkeys::Errno;

use crate::arch::x86_64::syscall::{fast_sysret_is_safe, Exit, SyscallFrame};
use crate::arch::x86_64::trap::TrapFrame;

/// Linux x86-64 system-call numbers (`arch/x86/entry/syscalls/syscall_64.tbl`).
pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const STAT: u64 = 4;
    pub const FSTAT: u64 = 5;
    pub const LSEEK: u64 = 8;
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const BRK: u64 = 12;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const RT_SIGRETURN: u64 = 15;
    pub const IOCTL: u64 = 16;
    pub const PREAD64: u64 = 17;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const PIPE: u64 = 22;
    pub const SCHED_YIELD: u64 = 24;
    pub const PAUSE: u64 = 34;
    pub const NANOSLEEP: u64 = 35;
    pub const MINCORE: u64 = 27;
    pub const MADVISE: u64 = 28;
    pub const DUP: u64 = 32;
    pub const DUP2: u64 = 33;
    pub const GETPID: u64 = 39;
    pub const CLONE: u64 = 56;
    pub const FORK: u64 = 57;
    pub const EXECVE: u64 = 59;
    pub const EXIT: u64 = 60;
    pub const WAIT4: u64 = 61;
    pub const KILL: u64 = 62;
    pub const UNAME: u64 = 63;
    pub const READLINK: u64 = 89;
    pub const PTRACE: u64 = 101;
    pub const GETUID: u64 = 102;
    pub const GETGID: u64 = 104;
    pub const SETUID: u64 = 105;
    pub const SETGID: u64 = 106;
    pub const GETPPID: u64 = 110;
    pub const GETGROUPS: u64 = 115;
    pub const SETGROUPS: u64 = 116;
    pub const GETRESUID: u64 = 118;
    pub const GETRESGID: u64 = 120;
    pub const GETRLIMIT: u64 = 97;
    pub const SETRLIMIT: u64 = 160;
    pub const TIME: u64 = 201;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const PRLIMIT64: u64 = 302;
    pub const RSEQ: u64 = 334;
    pub const CLONE3: u64 = 435;
    pub const GETEUID: u64 = 107;
    pub const GETEGID: u64 = 108;
    pub const SIGALTSTACK: u64 = 131;
    pub const ARCH_PRCTL: u64 = 158;
    pub const REBOOT: u64 = 169;
    pub const GETTID: u64 = 186;
    pub const TKILL: u64 = 200;
    pub const FUTEX: u64 = 202;
    pub const SCHED_SETAFFINITY: u64 = 203;
    pub const SCHED_GETAFFINITY: u64 = 204;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const RESTART_SYSCALL: u64 = 219;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const EXIT_GROUP: u64 = 231;
    pub const TGKILL: u64 = 234;
    pub const OPENAT: u64 = 257;
    pub const NEWFSTATAT: u64 = 262;
    pub const DUP3: u64 = 292;
    pub const PIPE2: u64 = 293;
    pub const VMSPLICE: u64 = 278;
    pub const GETCPU: u64 = 309;
    pub const GETRANDOM: u64 = 318;
    pub const PKEY_MPROTECT: u64 = 329;
    pub const PKEY_ALLOC: u64 = 330;
    pub const PKEY_FREE: u64 = 331;
    pub const MBIND: u64 = 237;
    pub const SET_MEMPOLICY: u64 = 238;
    pub const GET_MEMPOLICY: u64 = 239;
    pub const MIGRATE_PAGES: u64 = 256;
    pub const MOVE_PAGES: u64 = 279;
    pub const SET_MEMPOLICY_HOME_NODE: u64 = 450;
}

/// Runs system call `number` with raw arguments `args` for the current thread; returns the
/// value for `rax` (a result, or `-errno`). (Not for the calls that need the whole register
/// frame: those run from [`entry_slow`].) The in-kernel tests' way in: the same table as a
/// user program's `syscall`, without the ring change.
#[cfg(test)] // the system-call entry uses `table` itself
pub fn dispatch(number: u64, args: [u64; 6]) -> u64 {
    table(number, args).expect("a call that needs the whole register frame dispatched without one")
}

/// The table: the value for `rax`, or `None` for a call that needs the caller's whole register
/// frame (it runs from [`entry_slow`]; listing it here keeps the fast path to one step).
#[inline(always)]
fn table(number: u64, args: [u64; 6]) -> Option<u64> {
    let [a0, a1, a2, a3, a4, a5] = args;
    let result: Result<u64, Errno> = match number {
        nr::FORK | nr::RT_SIGRETURN | nr::SIGALTSTACK | nr::CLONE => return None,
        nr::READ => fs::sys_read(a0, a1, a2),
        nr::WRITE => fs::sys_write(a0, a1, a2),
        nr::OPEN => fs::sys_open(a0, a1, a2),
        nr::CLOSE => fs::sys_close(a0),
        nr::STAT => fs::sys_stat(a0, a1),
        nr::FSTAT => fs::sys_fstat(a0, a1),
        nr::LSEEK => fs::sys_lseek(a0, a1, a2),
        nr::MMAP => mm::sys_mmap(a0, a1, a2, a3, a4, a5),
        nr::MPROTECT => mm::sys_mprotect(a0, a1, a2),
        nr::MUNMAP => mm::sys_munmap(a0, a1),
        nr::BRK => mm::sys_brk(a0),
        nr::RT_SIGPROCMASK => process::sys_rt_sigprocmask(a0, a1, a2, a3),
        nr::RT_SIGACTION => crate::signal::sys_rt_sigaction(a0, a1, a2, a3),
        nr::IOCTL => fs::sys_ioctl(a0, a1, a2),
        nr::PREAD64 => fs::sys_pread64(a0, a1, a2, a3),
        nr::READV => fs::sys_readv(a0, a1, a2),
        nr::WRITEV => fs::sys_writev(a0, a1, a2),
        nr::PIPE => fs::sys_pipe(a0),
        nr::PIPE2 => fs::sys_pipe2(a0, a1),
        nr::DUP => fs::sys_dup(a0),
        nr::DUP2 => fs::sys_dup2(a0, a1),
        nr::DUP3 => fs::sys_dup3(a0, a1, a2),
        nr::EXECVE => process::sys_execve(a0, a1, a2),
        nr::WAIT4 => process::sys_wait4(a0, a1, a2, a3),
        nr::KILL => process::sys_kill(a0, a1),
        nr::GETPPID => process::sys_getppid(),
        nr::TKILL => process::sys_tkill(a0, a1),
        nr::TGKILL => process::sys_tgkill(a0, a1, a2),
        nr::SCHED_YIELD => process::sys_sched_yield(),
        nr::MINCORE => mm::sys_mincore(a0, a1, a2),
        nr::MADVISE => mm::sys_madvise(a0, a1, a2),
        nr::GETPID => process::sys_getpid(),
        nr::EXIT => process::sys_exit(a0),
        nr::UNAME => process::sys_uname(a0),
        nr::READLINK => fs::sys_readlink(a0, a1, a2),
        nr::GETUID | nr::GETEUID => process::sys_getuid(),
        nr::GETGID | nr::GETEGID => process::sys_getgid(),
        nr::SETUID => process::sys_setuid(a0),
        nr::SETGID => process::sys_setgid(a0),
        nr::ARCH_PRCTL => process::sys_arch_prctl(a0, a1),
        nr::REBOOT => process::sys_reboot(a0, a1, a2, a3),
        nr::GETTID => process::sys_gettid(),
        nr::GETGROUPS => process::sys_getgroups(a0, a1),
        nr::SETGROUPS => process::sys_setgroups(a0, a1),
        nr::GETRESUID => process::sys_getresuid(a0, a1, a2),
        nr::GETRESGID => process::sys_getresgid(a0, a1, a2),
        nr::GETRLIMIT => process::sys_getrlimit(a0, a1),
        nr::SETRLIMIT => process::sys_setrlimit(a0, a1),
        nr::PRLIMIT64 => process::sys_prlimit64(a0, a1, a2, a3),
        nr::TIME => process::sys_time(a0),
        nr::SET_ROBUST_LIST => process::sys_set_robust_list(a0, a1),
        // Deliberately absent, silently: glibc and musl go on without restartable sequences
        // (rseq) and fall back to clone() when clone3() is ENOSYS (see the README).
        nr::RSEQ | nr::CLONE3 => Err(Errno::ENOSYS),
        nr::FUTEX => process::sys_futex(a0, a1, a2, a3, a4, a5),
        nr::SCHED_SETAFFINITY => sched::sys_sched_setaffinity(a0, a1, a2),
        nr::SCHED_GETAFFINITY => sched::sys_sched_getaffinity(a0, a1, a2),
        nr::GETCPU => sched::sys_getcpu(a0, a1, a2),
        nr::NANOSLEEP => process::sys_nanosleep(a0, a1),
        nr::PAUSE => Err(crate::task::sched::pause()),
        nr::CLOCK_NANOSLEEP => process::sys_clock_nanosleep(a0, a1, a2, a3),
        nr::SET_TID_ADDRESS => process::sys_set_tid_address(a0),
        nr::RESTART_SYSCALL => process::sys_restart_syscall(),
        nr::PTRACE => ptrace::sys_ptrace(a0, a1, a2, a3),
        nr::CLOCK_GETTIME => process::sys_clock_gettime(a0, a1),
        nr::EXIT_GROUP => process::sys_exit_group(a0),
        nr::OPENAT => fs::sys_openat(a0, a1, a2, a3),
        nr::NEWFSTATAT => fs::sys_newfstatat(a0, a1, a2, a3),
        nr::VMSPLICE => fs::sys_vmsplice(a0, a1, a2, a3),
        nr::GETRANDOM => process::sys_getrandom(a0, a1, a2),
        nr::PKEY_MPROTECT => mm::sys_pkey_mprotect(a0, a1, a2, a3),
        nr::PKEY_ALLOC => pkey::sys_pkey_alloc(a0, a1),
        nr::PKEY_FREE => pkey::sys_pkey_free(a0),
        nr::MBIND => mempolicy::sys_mbind(a0, a1, a2, a3, a4, a5),
        nr::SET_MEMPOLICY => mempolicy::sys_set_mempolicy(a0, a1, a2),
        nr::GET_MEMPOLICY => mempolicy::sys_get_mempolicy(a0, a1, a2, a3, a4),
        nr::MIGRATE_PAGES => mempolicy::sys_migrate_pages(a0, a1, a2, a3),
        nr::MOVE_PAGES => mempolicy::sys_move_pages(a0, a1, a2, a3, a4, a5),
        nr::SET_MEMPOLICY_HOME_NODE => mempolicy::sys_set_mempolicy_home_node(a0, a1, a2, a3),
        _ => unknown(number),
    };
    Some(match result {
        Ok(value) => value,
        Err(e) => e.to_syscall_return(),
    })
}

/// A number the table does not know: `-ENOSYS`, and one line in the log. Out of line and
/// cold, so that the table's common path keeps no state for it.
#[cold]
#[inline(never)]
fn unknown(number: u64) -> Result<u64, Errno> {
    crate::log_warn_ratelimited!("unknown system call {number}: -ENOSYS");
    Err(Errno::ENOSYS)
}

/// The SYSCALL fast path (called by the entry stub, [`arch::x86_64::syscall`](crate::arch::x86_64::syscall)):
/// number in `orig_rax`, arguments from `rdi, rsi, rdx, r10, r8, r9`, result into `rax`. The
/// calls that need the caller's whole register frame are sent to the slow path before they
/// run; every other call runs here, and leaves by SYSRET unless its exit has work to do
/// ([`sched::exit_work_pending`](crate::task::sched::exit_work_pending)). Linux:
/// `do_syscall_64()` → `syscall_exit_to_user_mode()`, without their layers.
pub extern "C" fn entry(frame: &mut SyscallFrame) -> Exit {
    let Some(rax) = table(frame.number(), frame.args()) else {
        return Exit::WholeFrame;
    };
    frame.rax = rax;
    if crate::task::sched::exit_work_pending() || !fast_sysret_is_safe(frame) {
        return Exit::Work;
    }
    Exit::Sysret
}

/// The SYSCALL slow path, on the full frame the stub completed: runs a call that
/// needs it (`why` = [`Exit::WholeFrame`]), then the full kernel exit —
/// signals and stops, the end of a thread that must leave, the restart of an interrupted call.
pub fn entry_slow(frame: &mut TrapFrame, why: Exit) {
    if why == Exit::WholeFrame {
        // The fast path left `rax` unwritten; the call sees it as it came: the number.
        frame.rax = frame.orig_rax();
        frame.rax = with_frame(frame);
    }
    crate::task::sched::kernel_exit(frame);
}

/// The calls that read or rewrite the caller's whole register frame. Kept out of line so that
/// the common path through [`entry`] stays short.
#[inline(never)]
fn with_frame(frame: &mut TrapFrame) -> u64 {
    let result = match frame.rax {
        nr::FORK => crate::task::fork_process(frame),
        nr::RT_SIGRETURN => return crate::signal::sys_rt_sigreturn(frame),
        nr::SIGALTSTACK => crate::signal::sys_sigaltstack(frame.rdi, frame.rsi, frame.rsp),
        nr::CLONE => crate::task::clone_thread(frame, frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8),
        _ => unreachable!("with_frame called for an ordinary system call"),
    };
    result.unwrap_or_else(|e| e.to_syscall_return())
}

/// Turns a `dispatch` return value back into a `Result` (for the in-kernel tests).
#[cfg(test)] // used by the in-kernel tests only
pub fn decode(rax: u64) -> Result<u64, Errno> {
    Errno::from_syscall_return(rax)
}
