//! The ramdisk's file tree: path lookup over the cpio archive.

use alloc::vec::Vec;
use bootproto::cpio::{self, S_IFDIR, S_IFREG};
use pkeys::Errno;
use spin::Once;

/// The archive, as the bootloader loaded it.
static ARCHIVE: Once<&'static [u8]> = Once::new();

/// Records the ramdisk (once, at boot).
pub fn init(archive: &'static [u8]) {
    ARCHIVE.call_once(|| archive);
}

/// A regular file's contents: its bytes and inode number. It is the very type a file-backed
/// memory area maps ([`FilePages`](crate::mm::area::FilePages), defined in `mm` so that `mm`
/// needs nothing of `fs`); two are the same file when their inode numbers are equal.
pub type RamFile = crate::mm::area::FilePages;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    File { file: RamFile, mode: u32 },
    Dir { ino: u64, mode: u32 },
}

/// Longest path accepted (Linux: `PATH_MAX`, including the NUL).
pub const PATH_MAX: usize = 4096;

/// Splits a path into its components, dropping empty ones and `.`, resolving `..` lexically
/// (the tree has no symbolic links, so that is exact). All paths are relative to `/`.
fn components(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Resolves `path` (absolute, or relative to `/`, the only working directory there is).
/// Linux's errors: `ENOENT` for an empty or missing path, `ENOTDIR` when a non-final component
/// is a file, `ENAMETOOLONG` past `PATH_MAX`.
pub fn lookup(path: &[u8]) -> Result<Node, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let wanted = components(path);
    if wanted.is_empty() {
        return Ok(Node::Dir { ino: 1, mode: S_IFDIR | 0o755 });
    }
    let archive = ARCHIVE.get().copied().unwrap_or(&[]);
    let mut prefix_is_file = false;
    for (index, entry) in cpio::read(archive).enumerate() {
        let Ok(entry) = entry else { break };
        let have = components(entry.path.as_bytes());
        let ino = index as u64 + 2;
        if have == wanted {
            return Ok(if entry.is_dir() {
                Node::Dir { ino, mode: entry.mode }
            } else {
                Node::File { file: RamFile { ino, data: entry.data }, mode: S_IFREG | (entry.mode & 0o7777) }
            });
        }
        if entry.is_file() && wanted.len() > have.len() && wanted.starts_with(&have) {
            prefix_is_file = true;
        }
        // A directory is implied by any entry below it, even without its own entry.
        if have.len() > wanted.len() && have.starts_with(&wanted) {
            return Ok(Node::Dir { ino: 0x1000 + ino, mode: S_IFDIR | 0o755 });
        }
    }
    Err(if prefix_is_file { Errno::ENOTDIR } else { Errno::ENOENT })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn paths_resolve_like_a_read_only_tree() {
        // The boot options file is in every ramdisk boot packs.
        let opts = bootproto::options::CMDLINE_PATH.as_bytes();
        assert!(matches!(lookup(opts), Ok(Node::File { .. })));
        let mut odd = b"//./pikku/../pikku/".to_vec();
        odd.extend_from_slice(b"cmdline");
        assert!(matches!(lookup(&odd), Ok(Node::File { .. })));
        assert!(matches!(lookup(b"/pikku"), Ok(Node::Dir { .. })));
        assert!(matches!(lookup(b"/"), Ok(Node::Dir { .. })));
        assert_eq!(lookup(b"/pikku/cmdline/x"), Err(Errno::ENOTDIR));
        assert_eq!(lookup(b"/no/such/file"), Err(Errno::ENOENT));
        assert_eq!(lookup(b""), Err(Errno::ENOENT));
        assert_eq!(lookup(&[b'a'; PATH_MAX]), Err(Errno::ENAMETOOLONG));
    }
}
