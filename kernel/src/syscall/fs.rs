//! File system calls over the ramdisk and the console.
//!
//! Linux behaviour mirrored: fd arguments are C `int`s; a bad fd is `EBADF` before any buffer
//! is looked at; a bad buffer is `EFAULT`; writing to a read-only ramdisk file (or opening it for
//! writing) is `EROFS`/`EBADF` as on a read-only mount; the console is a terminal.

use alloc::sync::Arc;
use alloc::vec;
use pkeys::Errno;

use crate::console;
use crate::fs::{ramdisk, OpenFile};
use crate::mm::user;
use crate::task;

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;

fn file(fd: u64) -> Result<Arc<OpenFile>, Errno> {
    task::current().process.files.lock().get(fd)
}

/// Linux: `ksys_read()`.
pub fn sys_read(fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    match &*file(fd)? {
        OpenFile::Console => Ok(0), // nobody types into pikku's console: end of file
        OpenFile::Dir { .. } => Err(Errno::EISDIR),
        OpenFile::Pipe(end) if end.is_write_end() => Err(Errno::EBADF),
        OpenFile::Pipe(end) => end.read(count.min(MAX_RW_COUNT) as usize, |bytes| user::copy_to_user(buf, bytes)),
        f @ (OpenFile::File { .. } | OpenFile::Proc { .. }) => {
            let (data, pos) = f.contents().ok_or(Errno::EBADF)?;
            let mut pos = pos.lock();
            let n = read_at(data, *pos, buf, count)?;
            *pos += n;
            Ok(n)
        }
    }
}

/// Linux: `ksys_pread64()`.
pub fn sys_pread64(fd: u64, buf: u64, count: u64, offset: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    match &*f {
        OpenFile::Console | OpenFile::Pipe(_) => Err(Errno::ESPIPE),
        OpenFile::Dir { .. } => Err(Errno::EISDIR),
        f @ (OpenFile::File { .. } | OpenFile::Proc { .. }) => read_at(f.contents().ok_or(Errno::EBADF)?.0, offset, buf, count),
    }
}

/// Copies file bytes from `offset` to the user. Linux `filemap_read()`: a buffer that faults
/// part-way gets a short count (what arrived, and the file position moves by that much); only
/// a copy that got nothing is `EFAULT`.
fn read_at(data: &[u8], offset: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    let start = (offset as usize).min(data.len());
    let len = (count as usize).min(data.len() - start).min(0x7fff_f000);
    match user::copy_to_user_partial(buf, &data[start..start + len]) {
        0 if len > 0 => Err(Errno::EFAULT),
        copied => Ok(copied as u64),
    }
}

/// Linux: `ksys_write()`. Console output goes to the serial port byte for byte; a pipe with no
/// reader left is `EPIPE` plus `SIGPIPE` with its current disposition.
pub fn sys_write(fd: u64, buf: u64, count: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    write_from_user(&f, UserStream::new(vec![(buf, count.min(MAX_RW_COUNT))]))
}

/// Linux: `do_writev()` — `iovcnt` outside 0..=1024 is `EINVAL`; the iovec array is read and
/// every length checked (`import_iovec()`) before anything is written; the buffers are then
/// written as one stream.
pub fn sys_writev(fd: u64, iov: u64, iovcnt: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    write_chunk_size(&f)?; // Linux `vfs_writev()`: an fd not open for writing is EBADF first
    write_from_user(&f, UserStream::new(read_iovecs(iov, iovcnt)?))
}

/// Reads and checks an iovec array (Linux `import_iovec()`): a count outside 0..=1024 is
/// `EINVAL`, an unreadable array `EFAULT`, a negative length `EINVAL`; the total is capped at
/// `MAX_RW_COUNT`, later buffers cut short.
fn read_iovecs(iov: u64, iovcnt: u64) -> Result<alloc::vec::Vec<(u64, u64)>, Errno> {
    let iovcnt = iovcnt as u32 as i32;
    if !(0..=1024).contains(&iovcnt) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; iovcnt as usize * 16];
    user::copy_from_user(&mut raw, iov)?;
    let mut segments = alloc::vec::Vec::with_capacity(iovcnt as usize);
    let mut total = 0u64;
    for v in raw.as_chunks::<16>().0 {
        let base = u64::from_le_bytes(v[..8].try_into().unwrap());
        let len = u64::from_le_bytes(v[8..].try_into().unwrap());
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        let len = len.min(MAX_RW_COUNT - total);
        total += len;
        segments.push((base, len));
    }
    Ok(segments)
}

/// `vmsplice(fd, iov, nr_segs, flags)` (Linux `fs/splice.c`), the call the protection-key
/// selftest uses to make the kernel *pin* a user buffer: flags beyond `SPLICE_F_ALL` are
/// `EINVAL`, then the fd (`EBADF`), then the iovecs; nothing to move is 0; an fd that is not a
/// pipe is `EBADF`. Into a pipe's write end the buffers go in like `writev()` — a page that
/// cannot be read (its key denies access) stops it, and with nothing moved it is `EFAULT`, as
/// Linux's pinning of that page fails. Out of a read end, the pipe's bytes are spread over the
/// buffers. pikku copies where Linux lends the pages to the pipe, so a program that changes
/// its buffer after `vmsplice` does not see the change in the pipe, as it would on Linux.
pub fn sys_vmsplice(fd: u64, iov: u64, nr_segs: u64, flags: u64) -> Result<u64, Errno> {
    const SPLICE_F_ALL: u64 = 0xf;
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let f = file(fd)?;
    let segments = read_iovecs(iov, nr_segs)?;
    if total_len(&segments) == 0 {
        return Ok(0);
    }
    match &*f {
        OpenFile::Pipe(end) if end.is_write_end() => write_from_user(&f, UserStream::new(segments)),
        OpenFile::Pipe(end) => end.read(total_len(&segments) as usize, |bytes| scatter_to_user(&segments, bytes)),
        _ => Err(Errno::EBADF),
    }
}

/// Linux: `do_readv()` — the iovecs are read and checked as for `writev()`, then filled front
/// to back as if by one `read()`: a file gives a short count where a buffer faults part-way, a
/// pipe's bytes leave it only if they all arrived. (musl's stdio reads through `readv`.)
pub fn sys_readv(fd: u64, iov: u64, iovcnt: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    // Linux `vfs_readv()`: an fd not open for reading is EBADF before the iovecs are read.
    if matches!(&*f, OpenFile::Pipe(end) if end.is_write_end()) {
        return Err(Errno::EBADF);
    }
    let segments = read_iovecs(iov, iovcnt)?;
    match &*f {
        OpenFile::Console => Ok(0),
        OpenFile::Dir { .. } => Err(Errno::EISDIR),
        OpenFile::Pipe(end) => end.read(total_len(&segments) as usize, |bytes| scatter_to_user(&segments, bytes)),
        f @ (OpenFile::File { .. } | OpenFile::Proc { .. }) => {
            let (data, pos) = f.contents().ok_or(Errno::EBADF)?;
            let mut pos = pos.lock();
            let mut done = 0u64;
            for &(base, len) in &segments {
                let n = match read_at(data, *pos + done, base, len) {
                    Ok(n) => n,
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                };
                done += n;
                if n < len {
                    break; // end of file, or a buffer that faulted part-way
                }
            }
            *pos += done;
            Ok(done)
        }
    }
}

fn total_len(segments: &[(u64, u64)]) -> u64 {
    segments.iter().map(|&(_, len)| len).sum()
}

/// Spreads `bytes` over the user buffers in order; `EFAULT` if any part cannot be written.
fn scatter_to_user(segments: &[(u64, u64)], bytes: &[u8]) -> Result<(), Errno> {
    let mut rest = bytes;
    for &(base, len) in segments {
        let n = rest.len().min(len as usize);
        user::copy_to_user(base, &rest[..n])?;
        rest = &rest[n..];
    }
    Ok(())
}

/// The most one read or write moves (Linux `MAX_RW_COUNT`, INT_MAX rounded down to a page).
const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// User buffers read front to back as one stream — `write`'s one buffer or `writev`'s iovecs
/// (Linux: an `iov_iter`).
struct UserStream {
    segments: alloc::vec::Vec<(u64, u64)>,
    at: usize,
    offset: u64,
}

impl UserStream {
    fn new(segments: alloc::vec::Vec<(u64, u64)>) -> UserStream {
        UserStream { segments, at: 0, offset: 0 }
    }

    /// Fills `out` from the stream, or fails with `EFAULT` if a byte of it cannot be read
    /// (Linux: `copy_from_iter()` came back short).
    fn gather(&mut self, out: &mut [u8]) -> Result<(), Errno> {
        let mut filled = 0;
        while filled < out.len() {
            let (base, len) = self.segments[self.at];
            let n = ((len - self.offset) as usize).min(out.len() - filled);
            user::copy_from_user(&mut out[filled..filled + n], base + self.offset)?;
            filled += n;
            self.offset += n as u64;
            if self.offset == len {
                self.at += 1;
                self.offset = 0;
            }
        }
        Ok(())
    }
}

/// How much of a write `f` takes at a time; `EBADF` if it is not open for writing (ramdisk
/// files are opened read-only, and a pipe's read end cannot be written).
fn write_chunk_size(f: &OpenFile) -> Result<usize, Errno> {
    match f {
        OpenFile::Console => Ok(2048),
        OpenFile::Pipe(end) if end.is_write_end() => Ok(4096),
        OpenFile::Proc { writable: true, .. } => Ok(4096),
        _ => Err(Errno::EBADF),
    }
}

/// Writes the stream to `f` chunk by chunk, each chunk gathered whole before it is written:
/// the console takes 2,048 bytes at a time (Linux `iterate_tty_write()`), a pipe a page (Linux
/// `pipe_write()`, one buffer page at a time). A chunk that cannot be gathered ends the write:
/// what earlier chunks wrote counts, and if there were none it is `EFAULT` — so a buffer whose
/// end is unreadable writes nothing of a short write, as on Linux.
fn write_from_user(f: &OpenFile, mut stream: UserStream) -> Result<u64, Errno> {
    let chunk_size = write_chunk_size(f)?;
    let count = total_len(&stream.segments);
    let mut done = 0u64;
    let mut chunk = vec![0u8; chunk_size];
    while done < count {
        let n = ((count - done) as usize).min(chunk_size);
        if let Err(e) = stream.gather(&mut chunk[..n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        match f {
            OpenFile::Pipe(end) => match end.write(&chunk[..n]) {
                Ok(written) if (written as usize) < n => return Ok(done + written),
                Ok(_) => {}
                Err(Errno::EPIPE) => {
                    // No reader: SIGPIPE to the writing thread, with whatever disposition it
                    // has — default (the process ends at this syscall's kernel exit), ignored,
                    // handled (at the kernel exit), or blocked — and EPIPE unless bytes went
                    // through first (Linux `pipe_write()`: `send_sig(SIGPIPE, current, 0)`).
                    crate::signal::send_from_current(&task::current(), crate::signal::sig::SIGPIPE, 0);
                    return if done > 0 { Ok(done) } else { Err(Errno::EPIPE) };
                }
                // Interrupted (or out of memory) before this chunk wrote anything: the bytes
                // of earlier chunks count; with none, the error (EINTR, or a restart).
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            },
            // A sysctl or sysfs value: the chunk is the whole new value.
            OpenFile::Proc { file, pos, .. } => {
                let mut pos = pos.lock();
                crate::fs::proc::write(*file, *pos, &chunk[..n])?;
                *pos += n as u64;
            }
            _ => console::write_user(&chunk[..n]),
        }
        done += n as u64;
    }
    Ok(done)
}

/// Linux: `do_sys_openat2()` on a read-only file system.
pub fn sys_openat(dirfd: u64, path: u64, flags: u64, _mode: u64) -> Result<u64, Errno> {
    let path = user::read_c_string(path, ramdisk::PATH_MAX)?;
    // Relative paths need the directory fd to be valid; pikku's only directory fds are on
    // the ramdisk, whose paths are all resolved from `/`.
    if path.first() != Some(&b'/') && dirfd as u32 as i32 != AT_FDCWD {
        file(dirfd)?;
    }
    if let Some((generated, mode)) = crate::fs::proc::lookup(&path) {
        return open_generated(generated, mode, flags);
    }
    let node = match ramdisk::lookup(&path) {
        Ok(node) => node,
        Err(Errno::ENOENT) if flags & O_CREAT != 0 => return Err(Errno::EROFS),
        Err(e) => return Err(e),
    };
    if flags & O_DIRECTORY != 0 && !matches!(node, ramdisk::Node::Dir { .. }) {
        return Err(Errno::ENOTDIR);
    }
    let wants_write = flags & O_ACCMODE != 0 || flags & O_TRUNC != 0;
    if wants_write {
        return Err(if matches!(node, ramdisk::Node::Dir { .. }) { Errno::EISDIR } else { Errno::EROFS });
    }
    task::current().process.files.lock().insert(OpenFile::from_node(node))
}

/// Opens a `/proc` or `/sys` file: write access by its mode (`EACCES`; Linux `sysctl_perm()`),
/// its text made now. `O_TRUNC` asks for nothing more (Linux ignores it on proc and sysfs).
fn open_generated(generated: crate::fs::proc::ProcFile, mode: u32, flags: u64) -> Result<u64, Errno> {
    let thread = task::current();
    let writable = flags & O_ACCMODE != 0;
    if writable && !crate::fs::proc::may_write(mode, thread.process.uid.load(core::sync::atomic::Ordering::Relaxed)) {
        return Err(Errno::EACCES);
    }
    if flags & O_DIRECTORY != 0 {
        return Err(Errno::ENOTDIR);
    }
    let text = crate::fs::proc::render(generated);
    let fd = thread.process.files.lock().insert(OpenFile::Proc { file: generated, mode, text, pos: crate::sync::Mutex::new(0), writable });
    fd
}

/// `open(path, flags, mode)` = `openat(AT_FDCWD, …)`.
pub fn sys_open(path: u64, flags: u64, mode: u64) -> Result<u64, Errno> {
    sys_openat(AT_FDCWD as u64, path, flags, mode)
}

/// Linux: `close_fd()`.
pub fn sys_close(fd: u64) -> Result<u64, Errno> {
    task::current().process.files.lock().close(fd).map(|()| 0)
}

/// Linux: `vfs_llseek()` with `SEEK_SET` (0), `SEEK_CUR` (1), `SEEK_END` (2).
pub fn sys_lseek(fd: u64, offset: u64, whence: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    let Some((data, pos)) = f.contents() else {
        return Err(if matches!(*f, OpenFile::Console | OpenFile::Pipe(_)) { Errno::ESPIPE } else { Errno::EINVAL });
    };
    let mut pos = pos.lock();
    let base = match whence as u32 {
        0 => 0i64,
        1 => *pos as i64,
        2 => data.len() as i64,
        _ => return Err(Errno::EINVAL),
    };
    let new = base.checked_add(offset as i64).ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    *pos = new as u64;
    Ok(new as u64)
}

fn stat_of(f: &OpenFile) -> uapi::layout::Stat {
    use uapi::layout::Stat;
    match f {
        // A serial terminal: character device 4:64 (ttyS0), owned by root, mode 0620.
        OpenFile::Console => Stat { dev: 5, ino: 3, nlink: 1, mode: 0o020620, rdev: (4 << 8) | 64, blksize: 1024, ..Stat::default() },
        OpenFile::File { file, mode, .. } => Stat {
            dev: 1,
            ino: file.ino,
            nlink: 1,
            mode: *mode,
            size: file.data.len() as i64,
            blksize: 4096,
            blocks: (file.data.len() as i64 + 511) / 512,
            ..Stat::default()
        },
        OpenFile::Dir { ino, mode } => Stat { dev: 1, ino: *ino, nlink: 2, mode: *mode, size: 0, blksize: 4096, ..Stat::default() },
        OpenFile::Pipe(_) => Stat { dev: 12, ino: 1, nlink: 1, mode: 0o010600, blksize: 4096, ..Stat::default() },
        // proc and sysfs report size 0 (the text is made on demand), as Linux's do.
        OpenFile::Proc { mode, .. } => Stat { dev: 22, ino: 1, nlink: 1, mode: *mode, blksize: 4096, ..Stat::default() },
    }
}

/// Linux: `vfs_fstat()`.
pub fn sys_fstat(fd: u64, statbuf: u64) -> Result<u64, Errno> {
    let f = file(fd)?;
    user::copy_to_user(statbuf, &stat_of(&f).to_bytes())?;
    Ok(0)
}

/// Linux: `vfs_fstatat()`; `AT_EMPTY_PATH` with `""` means the fd itself.
pub fn sys_newfstatat(dirfd: u64, path: u64, statbuf: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | 0x800 /* AT_NO_AUTOMOUNT */) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = user::read_c_string(path, ramdisk::PATH_MAX)?;
    if name.is_empty() && flags & AT_EMPTY_PATH != 0 {
        return sys_fstat(dirfd, statbuf);
    }
    let node = ramdisk::lookup(&name)?;
    user::copy_to_user(statbuf, &stat_of(&OpenFile::from_node(node)).to_bytes())?;
    Ok(0)
}

/// `stat(path, buf)` = `newfstatat(AT_FDCWD, path, buf, 0)`.
pub fn sys_stat(path: u64, statbuf: u64) -> Result<u64, Errno> {
    sys_newfstatat(AT_FDCWD as u64, path, statbuf, 0)
}

/// Linux: `do_readlinkat()`: the ramdisk has no symbolic links, so an existing path is
/// `EINVAL` and a missing one `ENOENT`; a non-positive size is `EINVAL` first.
pub fn sys_readlink(path: u64, _buf: u64, size: u64) -> Result<u64, Errno> {
    if size as u32 as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    let name = user::read_c_string(path, ramdisk::PATH_MAX)?;
    ramdisk::lookup(&name)?;
    Err(Errno::EINVAL)
}

/// Linux: `vfs_ioctl()` for a tty: `TCGETS` and `TIOCGWINSZ` on the console, `ENOTTY`
/// for everything else. The window size is 0×0, which is what Linux's serial console reports
/// until someone sets it.
pub fn sys_ioctl(fd: u64, request: u64, arg: u64) -> Result<u64, Errno> {
    const TCGETS: u32 = 0x5401;
    const TIOCGWINSZ: u32 = 0x5413;
    let f = file(fd)?;
    if !matches!(*f, OpenFile::Console) {
        return Err(Errno::ENOTTY);
    }
    match request as u32 {
        TCGETS => user::copy_to_user(arg, &uapi::layout::termios()).map(|()| 0),
        TIOCGWINSZ => user::copy_to_user(arg, &uapi::layout::winsize(0, 0)).map(|()| 0),
        _ => Err(Errno::ENOTTY),
    }
}

/// `pipe2(fds, flags)`: a pipe, read end in `fds[0]`, write end in `fds[1]`. Flags beyond
/// `O_CLOEXEC | O_NONBLOCK | O_DIRECT` are `EINVAL` (pikku accepts those three; it has no
/// `exec`-time closing or non-blocking mode yet, which are documented differences).
pub fn sys_pipe2(fds: u64, flags: u64) -> Result<u64, Errno> {
    const O_NONBLOCK: u64 = 0o4000;
    const O_DIRECT: u64 = 0o40000;
    const O_CLOEXEC: u64 = 0o2000000;
    if flags & !(O_NONBLOCK | O_DIRECT | O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    crate::mm::heap::reserve(2 * crate::fs::file::OPEN_FILE_HEAP_BYTES)?;
    let (r, w) = crate::fs::pipe::new();
    let thread = task::current();
    let mut files = thread.process.files.lock();
    let rfd = files.insert(OpenFile::Pipe(r))?;
    let wfd = match files.insert(OpenFile::Pipe(w)) {
        Ok(fd) => fd,
        Err(e) => {
            files.close(rfd).ok();
            return Err(e);
        }
    };
    drop(files);
    let mut pair = [0u8; 8];
    pair[..4].copy_from_slice(&(rfd as u32).to_le_bytes());
    pair[4..].copy_from_slice(&(wfd as u32).to_le_bytes());
    if let Err(e) = user::copy_to_user(fds, &pair) {
        let mut files = thread.process.files.lock();
        files.close(rfd).ok();
        files.close(wfd).ok();
        return Err(e);
    }
    Ok(0)
}

/// `pipe(fds)` = `pipe2(fds, 0)`.
pub fn sys_pipe(fds: u64) -> Result<u64, Errno> {
    sys_pipe2(fds, 0)
}

/// `dup(fd)`: the lowest free descriptor, sharing `fd`'s open file.
pub fn sys_dup(fd: u64) -> Result<u64, Errno> {
    let thread = task::current();
    let mut files = thread.process.files.lock();
    let f = files.get(fd)?;
    files.insert_shared(f)
}

/// `dup2(old, new)`: `new` now shares `old`'s open file (closing what `new` was); `old == new`
/// just checks `old`. Linux: `ksys_dup3()`.
pub fn sys_dup2(old: u64, new: u64) -> Result<u64, Errno> {
    let thread = task::current();
    let mut files = thread.process.files.lock();
    let f = files.get(old)?;
    if old as u32 == new as u32 {
        return Ok(new as u32 as u64);
    }
    files.set(new, f)?;
    Ok(new as u32 as u64)
}

/// `dup3(old, new, flags)`: as `dup2`, but `old == new` is `EINVAL`, and `flags` may only be
/// `O_CLOEXEC`.
pub fn sys_dup3(old: u64, new: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !0o2000000 != 0 || old as u32 == new as u32 {
        return Err(Errno::EINVAL);
    }
    sys_dup2(old, new)
}

#[cfg(test)]
mod tests {
    use super::super::{decode, dispatch, nr};
    use crate::ktest::as_fresh_program;
    use crate::mm::user::copy_to_user;
    use ktest_macros::ktest;
    use pkeys::Errno;

    /// The one deliberate difference from Linux here: pikku's ramdisk is read-only (Linux's
    /// initramfs is a writable tmpfs), so asking for write access is `EROFS`.
    #[ktest]
    fn the_ramdisk_is_read_only() {
        as_fresh_program(|_| {
            let buf = decode(dispatch(nr::MMAP, [0, 4096, 3, 0x22, u64::MAX, 0])).unwrap();
            copy_to_user(buf, b"/etc/passwd\0").unwrap();
            for flags in [0o1 /* O_WRONLY */, 0o2 /* O_RDWR */, 0o1000 /* O_TRUNC */] {
                assert_eq!(decode(dispatch(nr::OPEN, [buf, flags, 0, 0, 0, 0])), Err(Errno::EROFS), "flags {flags:#o}");
            }
            copy_to_user(buf, b"/etc/new\0").unwrap();
            assert_eq!(decode(dispatch(nr::OPEN, [buf, 0o101 /* O_CREAT|O_WRONLY */, 0o644, 0, 0, 0])), Err(Errno::EROFS));
            copy_to_user(buf, b"/etc\0").unwrap();
            assert_eq!(decode(dispatch(nr::OPEN, [buf, 0o2, 0, 0, 0, 0])), Err(Errno::EISDIR));
            let fd = decode(dispatch(nr::OPEN, [buf, 0, 0, 0, 0, 0])).unwrap();
            assert_eq!(decode(dispatch(nr::READ, [fd, buf, 10, 0, 0, 0])), Err(Errno::EISDIR));
        });
    }
}
