//! Pipes: a 64-KiB byte queue between a read end and a write end. Linux: `fs/pipe.c`.
//!
//! A reader blocks while the pipe is empty and a writer exists, and sees end-of-file once every
//! write end is closed. A writer blocks while the pipe is full and a reader exists; with no
//! reader left it gets `EPIPE`, and `SIGPIPE` with its current disposition. The ends
//! count themselves: each [`PipeEnd`] is one open file description (shared by `dup` and
//! `fork`), and dropping the last reference to it closes that end.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};
use pkeys::Errno;
use crate::sync::Mutex;

use crate::task::sched::{self, WakeReason};
use crate::task::{self, Thread};

/// How much a pipe holds (Linux's default, 16 pages).
pub const CAPACITY: usize = 64 * 1024;

/// The shared part of a pipe.
#[derive(Debug, Default)]
pub struct Pipe {
    buffer: Mutex<VecDeque<u8>>,
    readers: AtomicUsize,
    writers: AtomicUsize,
    waiters: Mutex<VecDeque<Arc<Thread>>>,
}

/// One end of a pipe.
#[derive(Debug)]
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    write: bool,
}

/// A new pipe: (read end, write end).
pub fn new() -> (PipeEnd, PipeEnd) {
    let pipe = Arc::new(Pipe::default());
    pipe.readers.store(1, Ordering::Relaxed);
    pipe.writers.store(1, Ordering::Relaxed);
    (PipeEnd { pipe: pipe.clone(), write: false }, PipeEnd { pipe, write: true })
}

impl Pipe {
    fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        for t in waiters {
            sched::wake(t, WakeReason::Woken);
        }
    }

    /// Blocks until `ready()` holds (checked again after this thread is findable by a waker,
    /// so a change on another CPU between the caller's check and the sleep is not missed);
    /// `EINTR` if the process was killed meanwhile, `ERESTARTSYS` if a signal or a stop came
    /// (Linux `pipe_read()`/`pipe_write()`: restarted under `SA_RESTART` or when no handler
    /// runs, else `EINTR`).
    fn wait(&self, ready: impl Fn(&Pipe) -> bool) -> Result<(), Errno> {
        let me = task::current();
        sched::prepare_to_wait();
        self.waiters.lock().push_back(me.clone());
        let ready_now = ready(self);
        if ready_now || sched::killed() || sched::signal_pending() {
            sched::finish_wait();
            self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &me));
            if ready_now {
                return Ok(());
            }
        } else {
            drop(me);
            sched::block_current();
        }
        if sched::killed() {
            return Err(Errno::EINTR);
        }
        if sched::signal_pending() {
            return Err(Errno::ERESTARTSYS);
        }
        Ok(())
    }
}

impl PipeEnd {
    /// Is this the write end?
    pub fn is_write_end(&self) -> bool {
        self.write
    }

    /// Reads up to `max` bytes; `copy_out` moves them to the user. Blocks while empty. The
    /// bytes leave the pipe only once they have arrived: if `copy_out` fails (the buffer
    /// faults), the data stays for the next read and the call is `EFAULT` — Linux
    /// `pipe_read()` consumes a buffer only after `copy_page_to_iter()` took all of it.
    pub fn read(&self, max: usize, copy_out: impl Fn(&[u8]) -> Result<(), Errno>) -> Result<u64, Errno> {
        if max == 0 {
            return Ok(0);
        }
        loop {
            let n = {
                let mut buf = self.pipe.buffer.lock();
                let n = max.min(buf.len());
                if n > 0 {
                    copy_out(&buf.make_contiguous()[..n])?;
                    buf.drain(..n);
                }
                n
            };
            if n > 0 {
                self.pipe.wake_all();
                return Ok(n as u64);
            }
            if self.pipe.writers.load(Ordering::Relaxed) == 0 {
                return Ok(0);
            }
            self.pipe.wait(|p| !p.buffer.lock().is_empty() || p.writers.load(Ordering::Relaxed) == 0)?;
        }
    }

    /// Writes `data`, blocking while full. `Err(EPIPE)` if no reader is left. Interrupted while
    /// it waits (a signal, a stop), it returns what it wrote — or, if nothing, the error
    /// (Linux `pipe_write()`: `-ERESTARTSYS` only when `ret` is still 0).
    pub fn write(&self, data: &[u8]) -> Result<u64, Errno> {
        let mut done = 0;
        while done < data.len() {
            if self.pipe.readers.load(Ordering::Relaxed) == 0 {
                return if done > 0 { Ok(done as u64) } else { Err(Errno::EPIPE) };
            }
            let n = {
                let mut buf = self.pipe.buffer.lock();
                let n = (CAPACITY - buf.len()).min(data.len() - done);
                // The buffer grows on demand from the kernel heap: when that is exhausted the
                // write stops there, `ENOMEM` if nothing was written (Linux `pipe_write()`
                // when `alloc_page()` fails).
                if buf.try_reserve(n).is_err() {
                    return if done > 0 { Ok(done as u64) } else { Err(Errno::ENOMEM) };
                }
                buf.extend(&data[done..done + n]);
                n
            };
            if n > 0 {
                done += n;
                self.pipe.wake_all();
            } else if let Err(e) = self.pipe.wait(|p| p.buffer.lock().len() < CAPACITY || p.readers.load(Ordering::Relaxed) == 0) {
                return if done > 0 { Ok(done as u64) } else { Err(e) };
            }
        }
        Ok(done as u64)
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let count = if self.write { &self.pipe.writers } else { &self.pipe.readers };
        count.fetch_sub(1, Ordering::Relaxed);
        self.pipe.wake_all();
    }
}
