//! The system-call table: Linux x86-64 numbers → handlers.
//!
//! Handlers take the raw 64-bit register values (`rdi, rsi, rdx, r10, r8, r9` on x86-64) and
//! return `Result<u64, Errno>`; the table's entry for each (made by `sys!`, a few
//! instructions around the inlined handler) turns an error into `-errno`, the value Linux
//! returns in `rax`. Like xv6's `syscalls[]`, the table ([`TABLE`]) is an array with one line
//! per call: to find what number N does, read one line. An unknown number returns `-ENOSYS`
//! and logs one line.
//!
//! The SYSCALL entry stub ([`arch::x86_64::syscall`](crate::arch::x86_64::syscall)) indexes
//! [`TABLE`] with the number and calls the entry with the argument registers: one step from
//! number to handler, no frame in memory for the handler to read. [`entry_slow`] takes the
//! calls and exits that need the whole register frame. The in-kernel tests call `dispatch`
//! (the table, for calls that need no frame) directly on a kernel-made thread — the same
//! handlers, without the ring change.

pub mod fs;
pub mod mempolicy;
pub mod mm;
pub mod pkey;
pub mod process;
pub mod ptrace;
pub mod sched;

use pkeys::Errno;

use crate::arch::x86_64::syscall::{Exit, Handler, UNKNOWN, WHOLE_FRAME};
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

/// One more than the highest number in [`TABLE`].
const TABLE_LEN: usize = nr::SET_MEMPOLICY_HOME_NODE as usize + 1;

/// A handler's result as the value for `rax`: the value, or `-errno`. The one place where
/// `Errno` becomes a number.
#[inline(always)]
fn to_rax(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(value) => value,
        Err(e) => e.to_syscall_return(),
    }
}

/// A Rust handler — `fn(u64, …) -> Result<u64, Errno>`, with 0 to 6 raw arguments — called
/// with the six argument registers: it takes the first ones it needs. (One impl per arity;
/// a handler's own signature picks its impl.)
trait SysFn<Args> {
    fn call(&self, args: [u64; 6]) -> Result<u64, Errno>;
}

macro_rules! sys_fn_arity {
    ($($a:ident: $i:tt),*) => {
        impl<F: Fn($(sys_fn_arity!(@u64 $a)),*) -> Result<u64, Errno>> SysFn<($(sys_fn_arity!(@u64 $a),)*)> for F {
            #[inline(always)]
            fn call(&self, _args: [u64; 6]) -> Result<u64, Errno> {
                self($(_args[$i]),*)
            }
        }
    };
    (@u64 $a:ident) => { u64 };
}
sys_fn_arity!();
sys_fn_arity!(a: 0);
sys_fn_arity!(a: 0, b: 1);
sys_fn_arity!(a: 0, b: 1, c: 2);
sys_fn_arity!(a: 0, b: 1, c: 2, d: 3);
sys_fn_arity!(a: 0, b: 1, c: 2, d: 3, e: 4);
sys_fn_arity!(a: 0, b: 1, c: 2, d: 3, e: 4, f: 5);

/// A table entry for the Rust handler `$f`: a small `extern "C"` function that the entry stub
/// calls with the argument registers, which runs `$f` (inlined) and turns its `Result` into
/// the value for `rax` ([`to_rax`]).
macro_rules! sys {
    ($f:expr) => {{
        extern "C" fn entry(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
            to_rax(SysFn::call(&$f, [a0, a1, a2, a3, a4, a5]))
        }
        entry as Handler
    }};
}

/// The calls that need the caller's whole register frame: their table entry is
/// [`WHOLE_FRAME`], and they run from [`entry_slow`] ([`with_frame`]).
const WHOLE_FRAME_CALLS: [u64; 4] = [nr::FORK, nr::RT_SIGRETURN, nr::SIGALTSTACK, nr::CLONE];

/// The table: system-call number → handler, what the SYSCALL entry stub indexes (registered
/// by [`init`]). Like xv6's `syscalls[]`, one line per call: to find what number N does, read
/// its line. Numbers without a line get [`UNKNOWN`] (`-ENOSYS`, and one line in the log).
pub static TABLE: [Handler; TABLE_LEN] = {
    let mut t = [UNKNOWN; TABLE_LEN];
    let mut i = 0;
    while i < WHOLE_FRAME_CALLS.len() {
        t[WHOLE_FRAME_CALLS[i] as usize] = WHOLE_FRAME;
        i += 1;
    }
    t[nr::READ as usize] = sys!(fs::sys_read);
    t[nr::WRITE as usize] = sys!(fs::sys_write);
    t[nr::OPEN as usize] = sys!(fs::sys_open);
    t[nr::CLOSE as usize] = sys!(fs::sys_close);
    t[nr::STAT as usize] = sys!(fs::sys_stat);
    t[nr::FSTAT as usize] = sys!(fs::sys_fstat);
    t[nr::LSEEK as usize] = sys!(fs::sys_lseek);
    t[nr::MMAP as usize] = sys!(mm::sys_mmap);
    t[nr::MPROTECT as usize] = sys!(mm::sys_mprotect);
    t[nr::MUNMAP as usize] = sys!(mm::sys_munmap);
    t[nr::BRK as usize] = sys!(mm::sys_brk);
    t[nr::RT_SIGPROCMASK as usize] = sys!(process::sys_rt_sigprocmask);
    t[nr::RT_SIGACTION as usize] = sys!(crate::signal::sys_rt_sigaction);
    t[nr::IOCTL as usize] = sys!(fs::sys_ioctl);
    t[nr::PREAD64 as usize] = sys!(fs::sys_pread64);
    t[nr::READV as usize] = sys!(fs::sys_readv);
    t[nr::WRITEV as usize] = sys!(fs::sys_writev);
    t[nr::PIPE as usize] = sys!(fs::sys_pipe);
    t[nr::PIPE2 as usize] = sys!(fs::sys_pipe2);
    t[nr::DUP as usize] = sys!(fs::sys_dup);
    t[nr::DUP2 as usize] = sys!(fs::sys_dup2);
    t[nr::DUP3 as usize] = sys!(fs::sys_dup3);
    t[nr::EXECVE as usize] = sys!(process::sys_execve);
    t[nr::WAIT4 as usize] = sys!(process::sys_wait4);
    t[nr::KILL as usize] = sys!(process::sys_kill);
    t[nr::GETPPID as usize] = sys!(process::sys_getppid);
    t[nr::TKILL as usize] = sys!(process::sys_tkill);
    t[nr::TGKILL as usize] = sys!(process::sys_tgkill);
    t[nr::SCHED_YIELD as usize] = sys!(process::sys_sched_yield);
    t[nr::MINCORE as usize] = sys!(mm::sys_mincore);
    t[nr::MADVISE as usize] = sys!(mm::sys_madvise);
    t[nr::GETPID as usize] = sys!(process::sys_getpid);
    t[nr::EXIT as usize] = sys!(|status: u64| -> Result<u64, Errno> { process::sys_exit(status) });
    t[nr::UNAME as usize] = sys!(process::sys_uname);
    t[nr::READLINK as usize] = sys!(fs::sys_readlink);
    t[nr::GETUID as usize] = sys!(process::sys_getuid);
    t[nr::GETEUID as usize] = sys!(process::sys_getuid);
    t[nr::GETGID as usize] = sys!(process::sys_getgid);
    t[nr::GETEGID as usize] = sys!(process::sys_getgid);
    t[nr::SETUID as usize] = sys!(process::sys_setuid);
    t[nr::SETGID as usize] = sys!(process::sys_setgid);
    t[nr::ARCH_PRCTL as usize] = sys!(process::sys_arch_prctl);
    t[nr::REBOOT as usize] = sys!(process::sys_reboot);
    t[nr::GETTID as usize] = sys!(process::sys_gettid);
    t[nr::GETGROUPS as usize] = sys!(process::sys_getgroups);
    t[nr::SETGROUPS as usize] = sys!(process::sys_setgroups);
    t[nr::GETRESUID as usize] = sys!(process::sys_getresuid);
    t[nr::GETRESGID as usize] = sys!(process::sys_getresgid);
    t[nr::GETRLIMIT as usize] = sys!(process::sys_getrlimit);
    t[nr::SETRLIMIT as usize] = sys!(process::sys_setrlimit);
    t[nr::PRLIMIT64 as usize] = sys!(process::sys_prlimit64);
    t[nr::TIME as usize] = sys!(process::sys_time);
    t[nr::SET_ROBUST_LIST as usize] = sys!(process::sys_set_robust_list);
    // Deliberately absent, silently: glibc and musl go on without restartable sequences
    // (rseq) and fall back to clone() when clone3() is ENOSYS (see the README).
    t[nr::RSEQ as usize] = sys!(|| Err(Errno::ENOSYS));
    t[nr::CLONE3 as usize] = sys!(|| Err(Errno::ENOSYS));
    t[nr::FUTEX as usize] = sys!(process::sys_futex);
    t[nr::SCHED_SETAFFINITY as usize] = sys!(sched::sys_sched_setaffinity);
    t[nr::SCHED_GETAFFINITY as usize] = sys!(sched::sys_sched_getaffinity);
    t[nr::GETCPU as usize] = sys!(sched::sys_getcpu);
    t[nr::NANOSLEEP as usize] = sys!(process::sys_nanosleep);
    t[nr::PAUSE as usize] = sys!(|| Err(crate::task::sched::pause()));
    t[nr::CLOCK_NANOSLEEP as usize] = sys!(process::sys_clock_nanosleep);
    t[nr::SET_TID_ADDRESS as usize] = sys!(process::sys_set_tid_address);
    t[nr::RESTART_SYSCALL as usize] = sys!(process::sys_restart_syscall);
    t[nr::PTRACE as usize] = sys!(ptrace::sys_ptrace);
    t[nr::CLOCK_GETTIME as usize] = sys!(process::sys_clock_gettime);
    t[nr::EXIT_GROUP as usize] = sys!(|status: u64| -> Result<u64, Errno> { process::sys_exit_group(status) });
    t[nr::OPENAT as usize] = sys!(fs::sys_openat);
    t[nr::NEWFSTATAT as usize] = sys!(fs::sys_newfstatat);
    t[nr::VMSPLICE as usize] = sys!(fs::sys_vmsplice);
    t[nr::GETRANDOM as usize] = sys!(process::sys_getrandom);
    t[nr::PKEY_MPROTECT as usize] = sys!(mm::sys_pkey_mprotect);
    t[nr::PKEY_ALLOC as usize] = sys!(pkey::sys_pkey_alloc);
    t[nr::PKEY_FREE as usize] = sys!(pkey::sys_pkey_free);
    t[nr::MBIND as usize] = sys!(mempolicy::sys_mbind);
    t[nr::SET_MEMPOLICY as usize] = sys!(mempolicy::sys_set_mempolicy);
    t[nr::GET_MEMPOLICY as usize] = sys!(mempolicy::sys_get_mempolicy);
    t[nr::MIGRATE_PAGES as usize] = sys!(mempolicy::sys_migrate_pages);
    t[nr::MOVE_PAGES as usize] = sys!(mempolicy::sys_move_pages);
    t[nr::SET_MEMPOLICY_HOME_NODE as usize] = sys!(mempolicy::sys_set_mempolicy_home_node);
    t
};

/// Registers [`TABLE`], [`unknown`] and [`entry_slow`] with the SYSCALL entry, and programs
/// this CPU's SYSCALL MSRs.
pub fn init() {
    crate::arch::x86_64::syscall::init(&TABLE, unknown, entry_slow);
}

/// Runs system call `number` with raw arguments `args` for the current thread; returns the
/// value for `rax` (a result, or `-errno`). (Not for the calls that need the whole register
/// frame: those run from [`entry_slow`].) The in-kernel tests' way in: the same table as a
/// user program's `syscall`, without the ring change.
#[cfg(test)] // the system-call entry uses `TABLE` itself
pub fn dispatch(number: u64, args: [u64; 6]) -> u64 {
    assert!(!WHOLE_FRAME_CALLS.contains(&number), "a call that needs the whole register frame dispatched without one");
    let [a0, a1, a2, a3, a4, a5] = args;
    match TABLE.get(number as usize) {
        Some(&handler) if !core::ptr::fn_addr_eq(handler, UNKNOWN) => handler(a0, a1, a2, a3, a4, a5),
        _ => unknown(number),
    }
}

/// A number the table does not know: `-ENOSYS`, and one line in the log. (Reached from the
/// stub through [`UNKNOWN`], which passes the number on.)
#[cold]
extern "C" fn unknown(number: u64) -> u64 {
    crate::log_warn_ratelimited!("unknown system call {number}: -ENOSYS");
    Errno::ENOSYS.to_syscall_return()
}

/// The SYSCALL slow path, on the full frame the stub completed: runs a call that
/// needs it (`why` = [`Exit::WholeFrame`]), then the full kernel exit —
/// signals and stops, the end of a thread that must leave, the restart of an interrupted call.
/// (The fast path — every other call, and an exit with nothing to do — is the entry stub
/// and [`TABLE`] alone. Linux: `do_syscall_64()` → `syscall_exit_to_user_mode()`, without
/// their layers.)
pub fn entry_slow(frame: &mut TrapFrame, why: Exit) {
    if why == Exit::WholeFrame {
        // The call sees `rax` as it came: the number.
        frame.rax = frame.orig_rax();
        frame.rax = with_frame(frame);
    }
    crate::task::sched::kernel_exit(frame);
}

/// The calls that read or rewrite the caller's whole register frame ([`WHOLE_FRAME_CALLS`]).
/// Kept out of line so that the common path through [`entry_slow`] stays short.
#[inline(never)]
fn with_frame(frame: &mut TrapFrame) -> u64 {
    let result = match frame.rax {
        nr::FORK => crate::task::fork_process(frame),
        nr::RT_SIGRETURN => return crate::signal::sys_rt_sigreturn(frame),
        nr::SIGALTSTACK => crate::signal::sys_sigaltstack(frame.rdi, frame.rsi, frame.rsp),
        nr::CLONE => crate::task::clone_thread(frame, frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8),
        _ => unreachable!("with_frame called for an ordinary system call"),
    };
    to_rax(result)
}

/// Turns a `dispatch` return value back into a `Result` (for the in-kernel tests).
#[cfg(test)] // used by the in-kernel tests only
pub fn decode(rax: u64) -> Result<u64, Errno> {
    Errno::from_syscall_return(rax)
}
