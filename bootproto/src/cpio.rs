//! The cpio "newc" archive format (the format of Linux's initramfs), reader and writer.
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the NUL-terminated path
//! (header + path padded to a multiple of 4 bytes), then the file data (padded to 4 bytes). The
//! header is the magic `070701` followed by 13 fields of 8 hex digits: ino, mode, uid, gid,
//! nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check. The entry
//! named `TRAILER!!!` ends the archive.
//!
//! The reader never trusts the bytes: a truncated or malformed archive yields
//! [`Error`] instead of a panic, because the kernel parses whatever the bootloader handed it.

/// Mode bits of a regular file (`S_IFREG`).
pub const S_IFREG: u32 = 0o100000;
/// Mode bits of a directory (`S_IFDIR`).
pub const S_IFDIR: u32 = 0o040000;
/// Mask selecting the file-type bits of a mode (`S_IFMT`).
pub const S_IFMT: u32 = 0o170000;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// Why an archive could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The header does not start with `070701`.
    BadMagic { offset: usize },
    /// A header field is not 8 hex digits.
    BadField { offset: usize },
    /// The archive ends inside an entry.
    Truncated { offset: usize },
    /// The path is not valid UTF-8 or lacks its terminating NUL.
    BadName { offset: usize },
}

/// One file or directory in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path without any leading `./` or `/` (so `etc/passwd`).
    pub path: &'a str,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// The file's contents (empty for directories).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// Is this entry a regular file?
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    /// Is this entry a directory?
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Iterates over the entries of a newc archive; stops after the trailer or at the first error.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

/// Reads the archive in `bytes`.
pub fn read(bytes: &[u8]) -> Reader<'_> {
    Reader { bytes, offset: 0, done: false }
}

/// Finds the regular file at `path` (leading `/` or `./` ignored).
pub fn find<'a>(bytes: &'a [u8], path: &str) -> Result<Option<Entry<'a>>, Error> {
    let wanted = normalize(path);
    for entry in read(bytes) {
        let entry = entry?;
        if entry.path == wanted {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

fn normalize(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p;
        }
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn hex_field(bytes: &[u8], offset: usize) -> Result<u32, Error> {
    let field = bytes.get(offset..offset + 8).ok_or(Error::Truncated { offset })?;
    let mut value = 0u32;
    for &b in field {
        let digit = (b as char).to_digit(16).ok_or(Error::BadField { offset })?;
        value = (value << 4) | digit;
    }
    Ok(value)
}

impl<'a> Reader<'a> {
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, Error> {
        let start = self.offset;
        let header = self.bytes.get(start..start + HEADER_LEN).ok_or(Error::Truncated { offset: start })?;
        if &header[..6] != MAGIC {
            return Err(Error::BadMagic { offset: start });
        }
        // Field i (0-based, after the magic) starts at 6 + 8*i.
        let field = |i: usize| hex_field(self.bytes, start + 6 + 8 * i);
        let mode = field(1)?;
        let file_size = field(6)? as usize;
        let name_size = field(11)? as usize;

        let name_start = start + HEADER_LEN;
        let name_bytes = name_start
            .checked_add(name_size)
            .and_then(|end| self.bytes.get(name_start..end))
            .ok_or(Error::Truncated { offset: name_start })?;
        let (last, name) = name_bytes.split_last().ok_or(Error::BadName { offset: name_start })?;
        if *last != 0 {
            return Err(Error::BadName { offset: name_start });
        }
        let name = core::str::from_utf8(name).map_err(|_| Error::BadName { offset: name_start })?;

        let data_start = align4(name_start + name_size);
        let data = data_start
            .checked_add(file_size)
            .and_then(|end| self.bytes.get(data_start..end))
            .ok_or(Error::Truncated { offset: data_start })?;
        self.offset = align4(data_start + file_size);

        if name == TRAILER {
            return Ok(None);
        }
        Ok(Some(Entry { path: normalize(name), mode, data }))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds a newc archive (host side only).
#[cfg(feature = "std")]
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
    next_ino: u32,
}

#[cfg(feature = "std")]
impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file with permission bits `perm` (e.g. `0o755`).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(normalize(path), S_IFREG | (perm & 0o7777), data)
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(normalize(path), S_IFDIR | 0o755, &[])
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.next_ino += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let fields = [self.next_ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.bytes.extend_from_slice(MAGIC);
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, &[]);
        self.bytes
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_files_and_dirs() {
        let mut w = Writer::new();
        w.dir("etc").file("/etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n").file("./init", 0o755, &[1, 2, 3]);
        let archive = w.finish();
        let entries: Vec<_> = read(&archive).collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 3);
        assert!(entries[0].is_dir());
        assert_eq!(entries[1].path, "etc/passwd");
        assert!(entries[1].is_file());
        assert_eq!(entries[2].data, &[1, 2, 3]);
        assert_eq!(find(&archive, "/init").unwrap().unwrap().mode, S_IFREG | 0o755);
        assert_eq!(find(&archive, "missing").unwrap(), None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut w = Writer::new();
        w.file("a", 0o644, b"hello world");
        let archive = w.finish();
        for cut in 0..archive.len() {
            let results: Vec<_> = read(&archive[..cut]).collect();
            // A cut archive never yields the trailer, so the last item must be an error.
            assert!(matches!(results.last(), Some(Err(_))), "cut at {cut}: {results:?}");
        }
    }

    #[test]
    fn matches_the_system_cpio_tool_when_present() {
        // GNU cpio reads what we write: the same format Linux's initramfs needs.
        let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else { return };
        if !out.status.success() {
            return;
        }
        let mut w = Writer::new();
        w.file("hello.txt", 0o644, b"hi\n");
        let dir = std::env::temp_dir().join(format!("bootproto-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "--quiet"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&w.finish()).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.join("hello.txt")).unwrap(), b"hi\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
