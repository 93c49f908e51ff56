//! Open files and the per-process table of file descriptors.

use alloc::sync::Arc;
use alloc::vec::Vec;
use pkeys::Errno;
use crate::sync::Mutex;

use super::ramdisk::{Node, RamFile};

/// What an open file descriptor refers to.
#[derive(Debug)]
pub enum OpenFile {
    /// The serial console (fds 0, 1, 2).
    Console,
    /// A ramdisk file, with its own read position.
    File { file: RamFile, mode: u32, pos: Mutex<u64> },
    /// A ramdisk directory (opened with `O_DIRECTORY` or plain `O_RDONLY`).
    Dir { ino: u64, mode: u32 },
    /// One end of a pipe.
    Pipe(super::pipe::PipeEnd),
    /// A generated `/proc` or `/sys` file: its text as it was at `open`, a read position, and
    /// whether it was opened for writing (a write goes straight to the kernel's state).
    Proc { file: super::proc::ProcFile, mode: u32, text: alloc::vec::Vec<u8>, pos: Mutex<u64>, writable: bool },
}

impl OpenFile {
    /// The bytes a read sees and the read position, for the kinds that have them (ramdisk
    /// files and generated files).
    pub fn contents(&self) -> Option<(&[u8], &Mutex<u64>)> {
        match self {
            OpenFile::File { file, pos, .. } => Some((file.data, pos)),
            OpenFile::Proc { text, pos, .. } => Some((text, pos)),
            _ => None,
        }
    }

    /// Opens what `node` names.
    pub fn from_node(node: Node) -> OpenFile {
        match node {
            Node::File { file, mode } => OpenFile::File { file, mode, pos: Mutex::new(0) },
            Node::Dir { ino, mode } => OpenFile::Dir { ino, mode },
        }
    }
}

/// Most descriptors a process may hold (Linux's default `RLIMIT_NOFILE` soft limit).
pub const MAX_FDS: usize = 1024;

/// Heap bytes asked for (`heap::reserve`) before a new open file is made: the file, its
/// `Arc`, a pipe's shared part, and room for the fd table to grow.
pub const OPEN_FILE_HEAP_BYTES: usize = 1024;

/// A process's file descriptors.
#[derive(Debug, Clone)]
pub struct FdTable {
    slots: Vec<Option<Arc<OpenFile>>>,
}

impl FdTable {
    /// fds 0, 1, 2 on the console.
    pub fn with_console() -> FdTable {
        let console = Arc::new(OpenFile::Console);
        FdTable { slots: alloc::vec![Some(console.clone()), Some(console.clone()), Some(console)] }
    }

    /// No descriptors at all (a process that has exited).
    pub fn empty() -> FdTable {
        FdTable { slots: Vec::new() }
    }

    /// The file behind `fd` (`EBADF` if none). `fd` is the raw register; its C type is `int`.
    pub fn get(&self, fd: u64) -> Result<Arc<OpenFile>, Errno> {
        let fd = fd as u32 as i32;
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        self.slots.get(fd as usize).cloned().flatten().ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor (`EMFILE` when full; `ENOMEM` when the
    /// kernel heap cannot take another open file — root is exempt from Linux's `fs.file-max`,
    /// so memory is the only bound, see the README's "Limits").
    pub fn insert(&mut self, file: OpenFile) -> Result<u64, Errno> {
        crate::mm::heap::reserve(OPEN_FILE_HEAP_BYTES)?;
        self.insert_shared(Arc::new(file))
    }

    /// Installs an already open file at the lowest free descriptor (`dup`).
    pub fn insert_shared(&mut self, file: Arc<OpenFile>) -> Result<u64, Errno> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(file);
            return Ok(i as u64);
        }
        if self.slots.len() >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        self.slots.push(Some(file));
        Ok(self.slots.len() as u64 - 1)
    }

    /// Makes `fd` refer to `file`, closing what it referred to (`dup2`). `EBADF` past the limit.
    pub fn set(&mut self, fd: u64, file: Arc<OpenFile>) -> Result<(), Errno> {
        let fd = fd as u32 as i32;
        if fd < 0 || fd as usize >= MAX_FDS {
            return Err(Errno::EBADF);
        }
        let fd = fd as usize;
        if self.slots.len() <= fd {
            self.slots.resize(fd + 1, None);
        }
        self.slots[fd] = Some(file);
        Ok(())
    }

    /// Closes `fd` (`EBADF` if it is not open).
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        let fd = fd as u32 as i32;
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        match self.slots.get_mut(fd as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }
}
