//! A process: what the threads of one program share besides the address space.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use crate::sync::Mutex;

use super::Thread;
use crate::fs::FdTable;

/// Every process by pid (weak: a process lives as long as its threads and its parent's
/// `children` list hold it).
static TABLE: Mutex<BTreeMap<u32, Weak<Process>>> = Mutex::new(BTreeMap::new());

/// The process with `pid`, if it still exists (running or zombie).
pub fn find(pid: u32) -> Option<Arc<Process>> {
    let mut table = TABLE.lock();
    let p = table.get(&pid).and_then(Weak::upgrade);
    if p.is_none() {
        table.remove(&pid);
    }
    p
}

/// Every live process.
pub fn all() -> Vec<Arc<Process>> {
    TABLE.lock().values().filter_map(Weak::upgrade).collect()
}

/// How a process ended — Linux's wait status, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`: `WIFEXITED`, `WEXITSTATUS` = code & 0xff.
    Exited(u8),
    /// Killed by a signal: `WIFSIGNALED`, `WTERMSIG`.
    Signaled(u8),
}

impl ExitStatus {
    /// The status word `wait4` stores: `code << 8`, or the signal number (Linux's encoding,
    /// which `WIFEXITED`/`WEXITSTATUS`/`WIFSIGNALED`/`WTERMSIG` decode).
    pub fn wait_status(self) -> u32 {
        match self {
            ExitStatus::Exited(code) => (code as u32) << 8,
            ExitStatus::Signaled(sig) => sig as u32,
        }
    }
}

/// One process.
///
/// Locking (xv6 style; the lock order is in `docs/ARCHITECTURE.md`, "Locks"): each mutable
/// field has its own lock or is an atomic; no field's lock is held while another process's
/// lock of a later rank is taken, except a parent's `children` → a child's `exit` (`wait4`).
#[derive(Debug)]
pub struct Process {
    /// Immutable.
    pub pid: u32,
    /// The program's name, for reports (the last component of its path). Its `Mutex`: written
    /// by `execve`, read by `fork` (together with `files`, `name` first) and the fault report.
    pub name: Mutex<String>,
    /// The descriptor table. Its `Mutex`: every fd operation; taken after `name`, before an
    /// open file's own locks. Dropping the last reference to a pipe end under it wakes threads.
    pub files: Mutex<FdTable>,
    /// Set once, when the process ends. Its `Mutex`, a leaf (taken under a parent's
    /// `children` by `wait4`).
    pub exit: Mutex<Option<ExitStatus>>,
    /// `exit.is_some()`, readable without the lock (checked on every kernel exit). Atomic: set
    /// (Release) once, with `exit` held; never cleared.
    pub ended: core::sync::atomic::AtomicBool,
    /// Real = effective = saved user and group ids (pikku keeps one of each). Atomic: any
    /// thread of the process, or `fork` before the child exists for anyone else.
    pub uid: AtomicU32,
    pub gid: AtomicU32,
    /// Supplementary groups (`setgroups`), sorted. Its `Mutex`, a leaf: copied in and out,
    /// never held across a user copy.
    pub groups: Mutex<Vec<u32>>,
    /// Threads that have not exited yet; the last one to exit ends the process. Atomic: +1 in
    /// `clone`, −1 in thread exit (whoever reaches 0 ends the process), 1 after `execve`.
    pub live_threads: AtomicUsize,
    /// The parent's pid (1 once the parent is gone: orphans belong to init). Atomic: set by
    /// `fork`, rewritten by the parent's exit.
    pub parent: AtomicU32,
    /// Children, running or zombie, until `wait4` reaps them. Its `Mutex`: `fork` pushes,
    /// `wait4` removes, exit hands them to init.
    pub children: Mutex<Vec<Arc<Process>>>,
    /// Threads of this process blocked in `wait4`. Its `Mutex`, a leaf.
    pub child_waiters: Mutex<VecDeque<Arc<Thread>>>,
    /// Ids of this process's threads (for `tgkill`). Its `Mutex`, a leaf.
    pub thread_ids: Mutex<Vec<u32>>,
    /// Signal handlers (`rt_sigaction`), shared by the threads. Its `Mutex`, a leaf: the
    /// actions are copied out, never held across a call.
    pub handlers: crate::signal::Handlers,
    /// Job-control and ptrace stops (its own lock: see [`crate::signal::jobctl::JobControl`]).
    pub jobctl: crate::signal::jobctl::JobControl,
    /// The task this process counts as until it is freed (none for kernel-made processes):
    /// see [`super::limits`].
    task: Option<super::limits::TaskSlot>,
}

impl Drop for Process {
    /// A freed process (reaped, its threads gone) leaves the registry.
    fn drop(&mut self) {
        let mut table = TABLE.lock();
        if table.get(&self.pid).is_some_and(|w| core::ptr::eq(w.as_ptr(), self)) {
            table.remove(&self.pid);
        }
    }
}

impl Process {
    /// A process with fds 0–2 on the console, running as root (uid 0, as Linux's init),
    /// counted as `task` (none for kernel-made ones).
    pub fn new(pid: u32, name: &str, task: Option<super::limits::TaskSlot>) -> Arc<Process> {
        let mut p = Self::with_files(pid, name, FdTable::with_console());
        Arc::get_mut(&mut p).expect("just made").task = task;
        TABLE.lock().insert(pid, Arc::downgrade(&p));
        p
    }

    fn with_files(pid: u32, name: &str, files: FdTable) -> Arc<Process> {
        Arc::new(Process {
            parent: AtomicU32::new(0),
            children: Mutex::new(Vec::new()),
            child_waiters: Mutex::new(VecDeque::new()),
            thread_ids: Mutex::new(alloc::vec![pid]),
            handlers: crate::signal::Handlers::default(),
            jobctl: crate::signal::jobctl::JobControl::default(),
            pid,
            name: Mutex::new(String::from(name)),
            files: Mutex::new(files),
            exit: Mutex::new(None),
            ended: core::sync::atomic::AtomicBool::new(false),
            uid: AtomicU32::new(0),
            gid: AtomicU32::new(0),
            groups: Mutex::new(Vec::new()),
            live_threads: AtomicUsize::new(1),
            task: None,
        })
    }

    /// The child of `self` made by `fork`, counted as `task`: a copy of the fd table (sharing
    /// the open files, as Linux does), the same credentials and name; registered as `self`'s
    /// child.
    pub fn fork_child(self: &Arc<Self>, pid: u32, task: super::limits::TaskSlot) -> Arc<Process> {
        let mut child = Self::with_files(pid, &self.name.lock(), self.files.lock().clone());
        let made = Arc::get_mut(&mut child).expect("just made");
        made.handlers = self.handlers.duplicate();
        made.jobctl = self.jobctl.for_child();
        made.task = Some(task);
        child.uid.store(self.uid.load(Ordering::Relaxed), Ordering::Relaxed);
        child.gid.store(self.gid.load(Ordering::Relaxed), Ordering::Relaxed);
        let groups = self.groups.lock().clone();
        *child.groups.lock() = groups;
        child.parent.store(self.pid, Ordering::Relaxed);
        TABLE.lock().insert(pid, Arc::downgrade(&child));
        self.children.lock().push(child.clone());
        child
    }

    /// Is the process running as root?
    pub fn is_root(&self) -> bool {
        self.uid.load(Ordering::Relaxed) == 0
    }
}
