//! A process: what the threads of one program share besides the address space.

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use spin::Mutex;

use crate::fs::FdTable;

/// How a process ended — Linux's wait status, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`: `WIFEXITED`, `WEXITSTATUS` = code & 0xff.
    Exited(u8),
    /// Killed by a signal: `WIFSIGNALED`, `WTERMSIG`.
    Signaled(u8),
}

/// One process.
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    /// The program's name, for reports (the last component of its path).
    pub name: Mutex<String>,
    pub files: Mutex<FdTable>,
    /// Set once, when the process ends.
    pub exit: Mutex<Option<ExitStatus>>,
    /// Real = effective = saved user and group ids (pikku keeps one of each).
    pub uid: AtomicU32,
    pub gid: AtomicU32,
    /// Threads that have not exited yet; the last one to exit ends the process.
    pub live_threads: AtomicUsize,
}

impl Process {
    /// A process with fds 0–2 on the console, running as root (uid 0, as Linux's init).
    pub fn new(pid: u32, name: &str) -> Arc<Process> {
        Arc::new(Process {
            pid,
            name: Mutex::new(String::from(name)),
            files: Mutex::new(FdTable::with_console()),
            exit: Mutex::new(None),
            uid: AtomicU32::new(0),
            gid: AtomicU32::new(0),
            live_threads: AtomicUsize::new(1),
        })
    }

    /// Is the process running as root?
    pub fn is_root(&self) -> bool {
        self.uid.load(Ordering::Relaxed) == 0
    }
}
