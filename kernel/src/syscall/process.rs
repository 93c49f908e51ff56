//! Process and machine calls: exit, ids, `uname`, `arch_prctl`, clocks, random bytes, the
//! signal mask, `reboot`.

use core::sync::atomic::Ordering;
use pkeys::Errno;

use crate::arch::x86_64::{cpu, pkru, rtc, time};
use crate::mm::user;
use crate::task::{self, sched, ExitStatus};

/// `exit(code)`: ends the calling thread; the last thread's exit ends the process with
/// status `code & 0xff`.
pub fn sys_exit(code: u64) -> ! {
    sched::exit_thread(code as u8)
}

/// `exit_group(code)`: ends every thread of the process.
pub fn sys_exit_group(code: u64) -> ! {
    sched::exit_group(ExitStatus::Exited(code as u8))
}

/// The null system call of `make bench` (all entry and exit): inlined into the table, so that
/// its result needs no trip through memory.
#[inline(always)]
pub fn sys_getpid() -> Result<u64, Errno> {
    Ok(task::with_current(|me| me.process.pid) as u64)
}

pub fn sys_gettid() -> Result<u64, Errno> {
    Ok(task::current().tid as u64)
}

pub fn sys_getuid() -> Result<u64, Errno> {
    Ok(task::current().process.uid.load(Ordering::Relaxed) as u64)
}

pub fn sys_getgid() -> Result<u64, Errno> {
    Ok(task::current().process.gid.load(Ordering::Relaxed) as u64)
}

/// `setuid(uid)`: root may become anyone; others only themselves (`EPERM`). `-1` is `EINVAL`.
pub fn sys_setuid(uid: u64) -> Result<u64, Errno> {
    set_id(uid, |p| &p.uid)
}

/// `setgid(gid)`, with the same rules as `setuid` (root = uid 0).
pub fn sys_setgid(gid: u64) -> Result<u64, Errno> {
    set_id(gid, |p| &p.gid)
}

fn set_id(raw: u64, field: fn(&task::Process) -> &core::sync::atomic::AtomicU32) -> Result<u64, Errno> {
    let id = raw as u32;
    if id == u32::MAX {
        return Err(Errno::EINVAL);
    }
    let thread = task::current();
    let p = &thread.process;
    if !p.is_root() && field(p).load(Ordering::Relaxed) != id {
        return Err(Errno::EPERM);
    }
    if field(p).swap(id, Ordering::Relaxed) != id {
        // Changed ids make the process undumpable: a tracer of the new uid may not attach
        // (Linux `commit_creds()` → `set_dumpable(suid_dumpable)`, 0 by default).
        p.jobctl.dumpable.store(false, Ordering::Relaxed);
    }
    Ok(0)
}

/// Linux's `NGROUPS_MAX`.
const NGROUPS_MAX: u64 = 65536;

/// `getgroups(size, list)`: the supplementary groups. `size` 0 asks only for the count; a
/// negative one, or one smaller than the count, is `EINVAL`. Linux: `sys_getgroups()`.
pub fn sys_getgroups(size: u64, list: u64) -> Result<u64, Errno> {
    let size = size as u32 as i32;
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    let groups = task::current().process.groups.lock().clone();
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if groups.len() > size as usize {
        return Err(Errno::EINVAL);
    }
    let bytes: alloc::vec::Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    user::copy_to_user(list, &bytes)?;
    Ok(groups.len() as u64)
}

/// `setgroups(size, list)`: root only (`EPERM`, checked first), at most `NGROUPS_MAX` groups
/// (`EINVAL`), then the list is read (`EFAULT`) and kept sorted, as Linux's `groups_sort()`.
/// Linux: `sys_setgroups()`.
pub fn sys_setgroups(size: u64, list: u64) -> Result<u64, Errno> {
    let thread = task::current();
    if !thread.process.is_root() {
        return Err(Errno::EPERM);
    }
    let size = size as u32 as u64;
    if size > NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    // Linux: `groups_alloc()` (ENOMEM when the memory is not there).
    crate::mm::heap::reserve(size as usize * 8)?;
    let mut bytes = alloc::vec![0u8; size as usize * 4];
    user::copy_from_user(&mut bytes, list)?;
    let mut groups: alloc::vec::Vec<u32> = bytes.as_chunks::<4>().0.iter().map(|c| u32::from_le_bytes(*c)).collect();
    groups.sort_unstable();
    *thread.process.groups.lock() = groups;
    Ok(0)
}

/// `getresuid(ruid, euid, suid)`: pikku keeps one uid, so all three are it; each pointer is
/// written in turn (`EFAULT` at the first bad one). Linux: `sys_getresuid()`.
pub fn sys_getresuid(ruid: u64, euid: u64, suid: u64) -> Result<u64, Errno> {
    put_three_ids(task::current().process.uid.load(Ordering::Relaxed), [ruid, euid, suid])
}

/// `getresgid(rgid, egid, sgid)`, as [`sys_getresuid`]. Linux: `sys_getresgid()`.
pub fn sys_getresgid(rgid: u64, egid: u64, sgid: u64) -> Result<u64, Errno> {
    put_three_ids(task::current().process.gid.load(Ordering::Relaxed), [rgid, egid, sgid])
}

fn put_three_ids(id: u32, addrs: [u64; 3]) -> Result<u64, Errno> {
    for addr in addrs {
        user::copy_to_user(addr, &id.to_le_bytes())?;
    }
    Ok(0)
}

/// `set_robust_list(head, len)`: records where the thread's robust-futex list is. `len` must
/// be the size of `struct robust_list_head` (24), else `EINVAL`. Linux walks the list when the
/// thread exits to wake waiters on futexes it held; pikku records it (a thread that dies
/// holding a robust mutex leaves its waiters asleep). Linux: `sys_set_robust_list()`.
pub fn sys_set_robust_list(head: u64, len: u64) -> Result<u64, Errno> {
    const ROBUST_LIST_HEAD_SIZE: u64 = 24;
    if len != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    task::current().robust_list.store(head, Ordering::Relaxed);
    Ok(0)
}

/// `prlimit64(pid, resource, new, old)`: the process's resource limits
/// ([`task::limits::rlimit`]). Linux's order: a `new` that cannot be read is `EFAULT`, a pid
/// that is neither 0 nor an existing process `ESRCH`, then (`do_prlimit()`) `resource` ≥
/// `RLIM_NLIMITS` `EINVAL` and a `new` with soft above hard `EINVAL`; then `old` is written
/// (`EFAULT`). pikku's limits are fixed: any other `new` that changes one is `EPERM`.
/// Linux: `sys_prlimit64()`.
pub fn sys_prlimit64(pid: u64, resource: u64, new: u64, old: u64) -> Result<u64, Errno> {
    let wanted = if new != 0 { Some((user::read_u64(new)?, user::read_u64(new.wrapping_add(8))?)) } else { None };
    let pid = pid as u32 as i32;
    if pid < 0 || (pid != 0 && task::process::find(pid as u32).is_none()) {
        return Err(Errno::ESRCH);
    }
    let resource = resource as u32;
    if resource >= task::limits::RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    let (soft, hard) = task::limits::rlimit(resource);
    if let Some((new_soft, new_hard)) = wanted {
        if new_soft > new_hard {
            return Err(Errno::EINVAL);
        }
        if (new_soft, new_hard) != (soft, hard) {
            return Err(Errno::EPERM);
        }
    }
    if old != 0 {
        user::write_u64(old, soft)?;
        user::write_u64(old.wrapping_add(8), hard)?;
    }
    Ok(0)
}

/// `getrlimit(resource, rlim)` = `prlimit64(0, resource, NULL, rlim)`.
pub fn sys_getrlimit(resource: u64, rlim: u64) -> Result<u64, Errno> {
    sys_prlimit64(0, resource, 0, rlim)
}

/// `setrlimit(resource, rlim)`: the new limits are read first (`EFAULT`), then as
/// `prlimit64(0, resource, rlim, NULL)`. Linux: `sys_setrlimit()`.
pub fn sys_setrlimit(resource: u64, rlim: u64) -> Result<u64, Errno> {
    sys_prlimit64(0, resource, rlim, 0)
}

/// `time(tloc)`: seconds since the epoch, also stored at `tloc` unless it is NULL
/// (`EFAULT` if that fails). Linux: `sys_time()`.
pub fn sys_time(tloc: u64) -> Result<u64, Errno> {
    let seconds = rtc::boot_epoch_seconds() + time::micros_since_boot() / 1_000_000;
    if tloc != 0 {
        user::write_u64(tloc, seconds)?;
    }
    Ok(seconds)
}

/// `uname(buf)`. pikku answers as a Linux 6.12 system (static glibc refuses to start on a
/// kernel that reports an older version), naming itself in `nodename` and `version`.
pub fn sys_uname(buf: u64) -> Result<u64, Errno> {
    let u = uapi::layout::utsname(["Linux", "pikku", "6.12.117-pikku", "#1 SMP pikku", "x86_64", "(none)"]);
    user::copy_to_user(buf, &u).map(|()| 0)
}

/// `arch_prctl(code, addr)`: `ARCH_SET_FS` (0x1002) and `ARCH_GET_FS` (0x1003) — the TLS
/// pointer musl and glibc set up first thing. Linux: `do_arch_prctl_64()`.
pub fn sys_arch_prctl(code: u64, addr: u64) -> Result<u64, Errno> {
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    match code {
        ARCH_SET_FS => {
            if addr >= vma::TASK_SIZE {
                return Err(Errno::EPERM);
            }
            cpu::set_fs_base(addr);
            task::current().fs_base.store(addr, Ordering::Relaxed);
            Ok(0)
        }
        ARCH_GET_FS => user::write_u64(addr, cpu::fs_base()).map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// `set_tid_address(tidptr)`: remembers the pointer, returns the tid.
pub fn sys_set_tid_address(tidptr: u64) -> Result<u64, Errno> {
    let t = task::current();
    t.clear_child_tid.store(tidptr, Ordering::Relaxed);
    Ok(t.tid as u64)
}

/// `clock_gettime(clock, ts)`: `CLOCK_REALTIME` (0) from the CMOS clock read at boot plus the
/// TSC; the monotonic clocks (1, 4, 6, 7) from the TSC; the CPU-time clocks (2, 3) as
/// monotonic time; others `EINVAL`.
pub fn sys_clock_gettime(clock: u64, ts: u64) -> Result<u64, Errno> {
    let mono = time::micros_since_boot() * 1000;
    let nanos = match clock as u32 as i32 {
        0 | 5 => rtc::boot_epoch_seconds() * 1_000_000_000 + mono,
        1 | 2 | 3 | 4 | 6 | 7 => mono,
        _ => return Err(Errno::EINVAL),
    };
    user::copy_to_user(ts, &uapi::layout::timespec(nanos)).map(|()| 0)
}

/// `getrandom(buf, len, flags)`: RDRAND bytes. Flags beyond `GRND_NONBLOCK | GRND_RANDOM |
/// GRND_INSECURE` are `EINVAL`, as is `GRND_RANDOM | GRND_INSECURE`.
pub fn sys_getrandom(buf: u64, len: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !0x7 != 0 || flags & 0x6 == 0x6 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(0x0200_0000) as usize;
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        cpu::random_bytes(&mut chunk[..n]);
        // Linux `get_random_bytes_user()`: the bytes that arrived count; none at all is EFAULT.
        let copied = user::copy_to_user_partial(buf + done as u64, &chunk[..n]);
        done += copied;
        if copied < n {
            return if done > 0 { Ok(done as u64) } else { Err(Errno::EFAULT) };
        }
    }
    Ok(len as u64)
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`: keeps the thread's blocked set.
/// `sigsetsize` must be 8; `how` must be `SIG_BLOCK` (0), `SIG_UNBLOCK` (1) or `SIG_SETMASK`
/// (2) when `set` is given; SIGKILL and SIGSTOP can never be blocked.
pub fn sys_rt_sigprocmask(how: u64, set: u64, oldset: u64, sigsetsize: u64) -> Result<u64, Errno> {
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let thread = task::current();
    let old = thread.blocked.load(Ordering::Relaxed);
    if set != 0 {
        let new = user::read_u64(set)?;
        let unblockable = (1u64 << (9 - 1)) | (1u64 << (19 - 1)); // SIGKILL, SIGSTOP
        let blocked = match how {
            0 => old | new,
            1 => old & !new,
            2 => new,
            _ => return Err(Errno::EINVAL),
        } & !unblockable;
        thread.blocked.store(blocked, Ordering::Relaxed);
    }
    if oldset != 0 {
        user::write_u64(oldset, old)?;
    }
    Ok(0)
}

/// `reboot(magic1, magic2, cmd, arg)`: root only (`EPERM`), Linux's magic numbers (`EINVAL`);
/// `LINUX_REBOOT_CMD_POWER_OFF` and `_HALT` power QEMU off, `_RESTART` too (QEMU runs with
/// `-no-reboot`); `CAD_ON`/`CAD_OFF` succeed and do nothing.
pub fn sys_reboot(magic1: u64, magic2: u64, cmd: u64, _arg: u64) -> Result<u64, Errno> {
    const MAGIC1: u32 = 0xfee1_dead;
    const MAGIC2: [u32; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
    const POWER_OFF: u32 = 0x4321_fedc;
    const HALT: u32 = 0xcdef_0123;
    const RESTART: u32 = 0x0123_4567;
    const CAD_ON: u32 = 0x89ab_cdef;
    const CAD_OFF: u32 = 0;
    let thread = task::current();
    if !thread.process.is_root() {
        return Err(Errno::EPERM);
    }
    if magic1 as u32 != MAGIC1 || !MAGIC2.contains(&(magic2 as u32)) {
        return Err(Errno::EINVAL);
    }
    match cmd as u32 {
        POWER_OFF | HALT | RESTART => {
            crate::console::finish_user_output();
            crate::console::announce(format_args!("power off requested by pid {} (reboot)", thread.process.pid));
            crate::arch::x86_64::qemu::exit(bootproto::exit::ExitCode::Success)
        }
        CAD_ON | CAD_OFF => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_yield()`.
pub fn sys_sched_yield() -> Result<u64, Errno> {
    sched::yield_now();
    Ok(0)
}

/// `futex(uaddr, op, val, timeout, uaddr2, val3)`: `FUTEX_WAIT` (0), `FUTEX_WAKE` (1),
/// `FUTEX_WAIT_BITSET` (9) and `FUTEX_WAKE_BITSET` (10), with or without `FUTEX_PRIVATE_FLAG`
/// (128); `FUTEX_CLOCK_REALTIME` (256) only with `FUTEX_WAIT_BITSET`. pikku has no memory
/// shared between processes, so both kinds wait on (address space, address); but a shared
/// futex first passes Linux's page pin, which protection keys can refuse
/// ([`crate::mm::address_space::Mm::shared_futex_allowed`]).
///
/// Linux's order (`sys_futex()`, `do_futex()`, `futex_wait()`/`futex_wake()`): the timeout of a
/// command that has one is read (`EFAULT`) and checked (`EINVAL`) first — relative for
/// `FUTEX_WAIT`, absolute for `FUTEX_WAIT_BITSET` on `CLOCK_MONOTONIC` or, with the flag,
/// `CLOCK_REALTIME`; then `FUTEX_CLOCK_REALTIME` with another command is `ENOSYS`; then the
/// command (`ENOSYS` for the others, with one log line); then a zero bitset is `EINVAL`; then
/// `get_futex_key()`: alignment (`EINVAL`), and for a shared futex the page pin. `uaddr2` is
/// used by none of these.
pub fn sys_futex(uaddr: u64, op: u64, val: u64, timeout: u64, _uaddr2: u64, val3: u64) -> Result<u64, Errno> {
    const FUTEX_WAIT: u64 = 0;
    const FUTEX_WAKE: u64 = 1;
    const FUTEX_LOCK_PI: u64 = 6;
    const FUTEX_WAIT_BITSET: u64 = 9;
    const FUTEX_WAKE_BITSET: u64 = 10;
    const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
    const FUTEX_LOCK_PI2: u64 = 13;
    const FUTEX_PRIVATE_FLAG: u64 = 128;
    const FUTEX_CLOCK_REALTIME: u64 = 256;
    let op = op as u32 as u64; // the C type is int
    let command = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let has_timeout = matches!(command, FUTEX_WAIT | FUTEX_LOCK_PI | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2);
    let timeout_us = if has_timeout && timeout != 0 { Some(read_timespec_us(timeout)?) } else { None };
    if op & FUTEX_CLOCK_REALTIME != 0 && !matches!(command, FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2) {
        return Err(Errno::ENOSYS);
    }
    let bitset = match command {
        FUTEX_WAIT | FUTEX_WAKE => task::futex::MATCH_ANY,
        FUTEX_WAIT_BITSET | FUTEX_WAKE_BITSET => val3 as u32,
        _ => {
            crate::log_warn_ratelimited!("futex operation {command} is not implemented: -ENOSYS");
            return Err(Errno::ENOSYS);
        }
    };
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    if op & FUTEX_PRIVATE_FLAG == 0 {
        task::current().mm.read().shared_futex_allowed(uaddr, pkru::read())?;
    }
    match command {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            // Linux `futex_init_timeout()`: FUTEX_WAIT's timeout counts from now; the bitset
            // form's is a time on the clock the flag names (the monotonic clock is time since
            // boot here).
            let deadline_us = timeout_us.map(|us| match (command, op & FUTEX_CLOCK_REALTIME != 0) {
                (FUTEX_WAIT, _) => time::micros_since_boot().saturating_add(us),
                (_, true) => us.saturating_sub(rtc::boot_epoch_seconds().saturating_mul(1_000_000)),
                (_, false) => us,
            });
            task::futex::wait(uaddr, val as u32, deadline_us, bitset)
        }
        _ => Ok(task::futex::wake(&task::current().mm, uaddr, val as u32, bitset)),
    }
}

/// Reads a `struct timespec` and returns it in microseconds (rounded up): `EINVAL` for a
/// negative second count or nanoseconds outside 0..10^9, as Linux's `timespec64_valid()`.
fn read_timespec_us(addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 16];
    user::copy_from_user(&mut b, addr)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap());
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap());
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(1_000_000).saturating_add((nsec as u64).div_ceil(1000)))
}

/// `nanosleep(req, rem)`: sleeps at least `req`. Interrupted by a signal or a stop, it writes
/// the time left to `rem` (if not NULL) and returns `ERESTART_RESTARTBLOCK`: `EINTR` if a
/// handler runs, else `restart_syscall` sleeps on to the same deadline. Linux:
/// `hrtimer_nanosleep()` → `do_nanosleep()`.
pub fn sys_nanosleep(req: u64, rem: u64) -> Result<u64, Errno> {
    let us = read_timespec_us(req)?;
    sleep_until_restartable(time::micros_since_boot().saturating_add(us), rem)
}

/// The sleep of `nanosleep` and relative `clock_nanosleep`, and its continuation in
/// `restart_syscall`.
fn sleep_until_restartable(deadline_us: u64, rem: u64) -> Result<u64, Errno> {
    if sched::sleep_until(deadline_us) {
        return Ok(0);
    }
    if sched::killed() {
        return Err(Errno::EINTR);
    }
    if rem != 0 {
        let left = deadline_us.saturating_sub(time::micros_since_boot());
        user::copy_to_user(rem, &uapi::layout::timespec(left.saturating_mul(1000)))?;
    }
    *task::current().signals.restart.lock() = Some(crate::signal::Restart::Sleep { deadline_us, rem });
    Err(Errno::ERESTART_RESTARTBLOCK)
}

/// `restart_syscall()`: resumes the sleep a stop interrupted (the kernel exit points RIP at
/// the `syscall` instruction with this number in `rax`). Nothing to resume: `EINTR`, as
/// Linux's `do_no_restart_syscall()`.
pub fn sys_restart_syscall() -> Result<u64, Errno> {
    let restart = task::current().signals.restart.lock().take();
    match restart {
        Some(crate::signal::Restart::Sleep { deadline_us, rem }) => sleep_until_restartable(deadline_us, rem),
        Some(crate::signal::Restart::Futex { uaddr, val, deadline_us, bitset }) => task::futex::wait(uaddr, val, Some(deadline_us), bitset),
        None => Err(Errno::EINTR),
    }
}

/// `clock_nanosleep(clock, flags, req, rem)`: `CLOCK_REALTIME`/`CLOCK_MONOTONIC`/
/// `CLOCK_BOOTTIME`; `TIMER_ABSTIME` (1) takes `req` as a time on that clock. Other clocks:
/// `EINVAL`.
///
/// Interrupted, an absolute sleep restarts as it is (`ERESTARTNOHAND`); a relative one as
/// `nanosleep` does.
pub fn sys_clock_nanosleep(clock: u64, flags: u64, req: u64, rem: u64) -> Result<u64, Errno> {
    const TIMER_ABSTIME: u64 = 1;
    let clock = clock as u32 as i32;
    if !matches!(clock, 0 | 1 | 7) {
        return Err(Errno::EINVAL);
    }
    let us = read_timespec_us(req)?;
    let now = time::micros_since_boot();
    if flags & TIMER_ABSTIME == 0 {
        return sleep_until_restartable(now.saturating_add(us), rem);
    }
    let offset = if clock == 0 { rtc::boot_epoch_seconds() * 1_000_000 } else { 0 };
    if !sched::sleep_until(us.saturating_sub(offset)) {
        return Err(if sched::killed() { Errno::EINTR } else { Errno::ERESTARTNOHAND });
    }
    Ok(0)
}

/// `getppid()`.
pub fn sys_getppid() -> Result<u64, Errno> {
    Ok(task::current().process.parent.load(Ordering::Relaxed) as u64)
}

/// `wait4(pid, wstatus, options, rusage)`: reaps a child that has ended, or reports one that
/// stopped (`WUNTRACED`; a tracer sees its tracees' trace stops always) or continued
/// (`WCONTINUED`) — see [`crate::signal::jobctl::wait_report`]. `pid > 0` waits for that
/// child, anything else for any child (pikku has no process groups yet). `WNOHANG` (1)
/// returns 0 if there is nothing to report; no children at all is `ECHILD`. The status word
/// uses Linux's encoding (`ExitStatus::wait_status`). As on Linux, a bad `wstatus` pointer
/// gives `EFAULT` *after* the child was reaped. A signal ends the wait with `ERESTARTSYS`
/// (restarted when no handler runs, or under `SA_RESTART`). Linux: `kernel_wait4()`.
pub fn sys_wait4(pid: u64, wstatus: u64, options: u64, rusage: u64) -> Result<u64, Errno> {
    const WNOHANG: u64 = 1;
    const KNOWN: u64 = 1 | 2 | 8 | 0x0100_0000 | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;
    if options & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    let pid = pid as u32 as i32;
    if pid == i32::MIN {
        return Err(Errno::ESRCH); // Linux `kernel_wait4()`: -INT_MIN is not a process group
    }
    let me = task::current().process.clone();
    let matching = |c: &task::Process| pid <= 0 || c.pid == pid as u32;
    loop {
        // (pid, status) of a child that ended (reaped now) or has a stop to report.
        let (any, mut found) = {
            let mut children = me.children.lock();
            let mut found = None;
            let mut any = false;
            for (i, c) in children.iter().enumerate().filter(|(_, c)| matching(c)) {
                any = true;
                if let Some(status) = *c.exit.lock() {
                    found = Some((Some(i), c.pid, status.wait_status()));
                    break;
                }
                if let Some(status) = crate::signal::jobctl::wait_report(c, me.pid, options) {
                    found = Some((None, c.pid, status));
                    break;
                }
            }
            if let Some((Some(i), _, _)) = found {
                children.remove(i);
            }
            (any, found)
        };
        // Tracees that are not children (attached by a non-parent): their stops only.
        if found.is_none() {
            let tracees: alloc::vec::Vec<_> =
                task::process::all().into_iter().filter(|p| p.jobctl.tracer() == Some(me.pid) && matching(p)).collect();
            found = tracees.iter().find_map(|p| crate::signal::jobctl::wait_report(p, me.pid, options).map(|s| (None, p.pid, s)));
            if !any && tracees.is_empty() {
                return Err(Errno::ECHILD);
            }
        }
        if let Some((_, child, status)) = found {
            if wstatus != 0 {
                user::copy_to_user(wstatus, &status.to_le_bytes())?;
            }
            if rusage != 0 {
                user::copy_to_user(rusage, &[0u8; 144])?;
            }
            return Ok(child as u64);
        }
        if options & WNOHANG != 0 {
            return Ok(0);
        }
        // Findable first, then the children once more (a child that ended on another CPU
        // since the look above woke nobody), then the sleep.
        let current = task::current();
        sched::prepare_to_wait();
        me.child_waiters.lock().push_back(current.clone());
        let ended = me.children.lock().iter().any(|c| (pid <= 0 || c.pid == pid as u32) && c.exit.lock().is_some());
        if ended || sched::killed() || sched::signal_pending() {
            sched::finish_wait();
        } else {
            drop(current);
            sched::block_current();
        }
        me.child_waiters.lock().retain(|t| !alloc::sync::Arc::ptr_eq(t, &task::current()));
        if sched::killed() {
            return Err(Errno::EINTR);
        }
        if sched::signal_pending() {
            return Err(Errno::ERESTARTSYS);
        }
    }
}

/// Sends `sig` from the caller to process `target` (`SI_USER`, the caller's pid and uid).
fn send(target: &alloc::sync::Arc<task::Process>, sig: u8) {
    let me = task::current();
    crate::signal::send_to_process(target, crate::signal::SigInfo::from_process(sig, 0, &me.process));
}

fn check_signal(sig: u64) -> Result<u8, Errno> {
    let sig = sig as u32 as i32;
    if !(0..=64).contains(&sig) {
        return Err(Errno::EINVAL);
    }
    Ok(sig as u8)
}

/// `kill(pid, sig)`: `pid > 0` one process (a zombie too: success, nothing happens), `0` the
/// caller's own (no process groups yet), `-1` every process but init and the caller. `sig 0`
/// only checks. Linux: `kill_something_info()`.
pub fn sys_kill(pid: u64, sig: u64) -> Result<u64, Errno> {
    let sig = check_signal(sig)?;
    let pid = pid as u32 as i32;
    let me = task::current().process.clone();
    let targets: alloc::vec::Vec<_> = match pid {
        p if p > 0 => alloc::vec![task::process::find(p as u32).ok_or(Errno::ESRCH)?],
        0 => alloc::vec![me.clone()],
        -1 => task::process::all().into_iter().filter(|p| p.pid > 1 && p.pid != me.pid).collect(),
        _ => return Err(Errno::ESRCH),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig != 0 {
        for t in &targets {
            send(t, sig);
        }
    }
    Ok(0)
}

/// `tgkill(tgid, tid, sig)`: thread `tid` of process `tgid` (`EINVAL` for ids ≤ 0, `ESRCH` if
/// the thread is not in that process). Default actions are process-wide.
pub fn sys_tgkill(tgid: u64, tid: u64, sig: u64) -> Result<u64, Errno> {
    let (tgid, tid) = (tgid as u32 as i32, tid as u32 as i32);
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let sig = check_signal(sig)?;
    let p = task::process::find(tgid as u32).ok_or(Errno::ESRCH)?;
    if !p.thread_ids.lock().contains(&(tid as u32)) {
        return Err(Errno::ESRCH);
    }
    let thread = task::find_thread(tid as u32).ok_or(Errno::ESRCH)?;
    if sig != 0 {
        crate::signal::send_from_current(&thread, sig, -6);
    }
    Ok(0)
}

/// `tkill(tid, sig)`: thread `tid`, wherever it is.
pub fn sys_tkill(tid: u64, sig: u64) -> Result<u64, Errno> {
    let tid = tid as u32 as i32;
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let sig = check_signal(sig)?;
    let thread = task::find_thread(tid as u32).ok_or(Errno::ESRCH)?;
    if sig != 0 {
        crate::signal::send_from_current(&thread, sig, -6);
    }
    Ok(0)
}

/// `execve(path, argv, envp)`: replaces the program. Linux: `do_execveat_common()`.
///
/// Everything that can fail is done first — the path (`ENOENT`, `ENOTDIR`), the file
/// (`EACCES` for a directory, `ENOEXEC` for anything that is not a loadable ELF), the argument
/// arrays (`EFAULT`, `E2BIG`), the new address space (`ENOMEM`) — so a failed `execve` returns
/// to the old program untouched. Then: the other threads of the process end, and a new thread
/// with the leader's tid (the pid) runs the new program in a fresh address space — key map = key 0 only,
/// no execute-only key, PKRU = 0x55555554 (Linux `init_new_context()`, `pkru_flush_thread()`),
/// initial FPU state — while the pid, the fds and the signal mask stay.
pub fn sys_execve(path: u64, argv: u64, envp: u64) -> Result<u64, Errno> {
    let path = user::read_c_string(path, crate::fs::ramdisk::PATH_MAX)?;
    let read_list = |mut addr: u64| -> Result<alloc::vec::Vec<alloc::vec::Vec<u8>>, Errno> {
        let mut out = alloc::vec::Vec::new();
        let mut total = 0usize;
        if addr == 0 {
            return Ok(out);
        }
        loop {
            let p = user::read_u64(addr)?;
            if p == 0 {
                return Ok(out);
            }
            let s = user::read_c_string(p, 128 * 1024)?;
            total += s.len() + 1;
            if out.len() >= 4096 || total > 2 * 1024 * 1024 {
                return Err(Errno::E2BIG);
            }
            out.push(s);
            addr += 8;
        }
    };
    let argv = read_list(argv)?;
    let envp = read_list(envp)?;
    let argv_refs: alloc::vec::Vec<&[u8]> = argv.iter().map(|s| s.as_slice()).collect();
    let envp_refs: alloc::vec::Vec<&[u8]> = envp.iter().map(|s| s.as_slice()).collect();
    let thread = task::current();
    // The new program's one thread is the leader: its tid is the pid, whichever thread exec'd
    // (Linux's `de_thread()` gives the exec'ing thread the leader's identity).
    let pid = thread.process.pid;
    // The other threads, found by tid before the new leader takes the pid's entry.
    // (The ids are copied out first: `thread_ids` is a leaf, and `find_thread` takes locks that
    // come before it in the lock order.)
    let ids = thread.process.thread_ids.lock().clone();
    let siblings: alloc::vec::Vec<_> = ids.into_iter().filter(|&tid| tid != thread.tid).filter_map(task::find_thread).collect();
    let new = crate::loader::load(&thread.process, pid, &path, &argv_refs, &envp_refs)?;
    // The point of no return.
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&path);
    *thread.process.name.lock() = alloc::string::String::from_utf8_lossy(name).into_owned();
    // Linux: `de_thread()`. Every other thread of the process ends: marked to leave at its next
    // kernel exit (as this one is, below), and woken if it sleeps, so that its blocking call
    // gives up. A leaving thread ends without counting itself out of `live_threads`: the
    // count starts over at 1, for the new program's one thread.
    *thread.process.thread_ids.lock() = alloc::vec![pid];
    for sibling in siblings {
        sibling.mark_leaving();
    }
    sched::purge_threads(thread.process.pid, Some(thread.tid));
    thread.process.live_threads.store(1, Ordering::Relaxed);
    crate::signal::reset_for_exec(&thread.process.handlers);
    // A new program is dumpable again (Linux `begin_new_exec()`: `SUID_DUMP_USER`).
    thread.process.jobctl.dumpable.store(true, Ordering::Relaxed);
    new.blocked.store(thread.blocked.load(Ordering::Relaxed), Ordering::Relaxed);
    // The CPUs it may run on survive exec too (Linux keeps `cpus_mask` across `execve`).
    new.affinity.store(thread.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    // So does the memory policy (Linux's `task_struct.mempolicy` is not touched by exec).
    *new.mempolicy.lock() = *thread.mempolicy.lock();
    // A traced process stops with SIGTRAP before the new program's first instruction (Linux
    // `ptrace_event(PTRACE_EVENT_EXEC)` without `PTRACE_O_TRACEEXEC`: `send_sig(SIGTRAP)`).
    if thread.process.jobctl.tracer().is_some() {
        crate::signal::queue(&new, crate::signal::SigInfo::from_process(crate::signal::sig::SIGTRAP, 0, &thread.process));
    }
    // This thread ends at its kernel exit, once everything above has been dropped.
    thread.mark_leaving();
    sched::spawn(new);
    Ok(0)
}
