//! Files: the ramdisk as a read-only file tree, open files, and each process's fd table.
//!
//! The ramdisk is the cpio newc archive `boot` packed ([`bootproto::cpio`]): user programs, their
//! data files (`/etc/passwd`, …) and the boot options. pikku exposes it read-only, like an
//! initramfs nobody writes to: `open` of an existing path with `O_RDONLY` works; asking for write
//! access gives `EROFS`, as Linux does on a read-only file system. File descriptors 0, 1 and 2
//! are the console: writes go to the serial port byte for byte, reads see end-of-file, and
//! `ioctl` answers like a terminal (libcs line-buffer stdout only on a terminal). Beside the
//! ramdisk, [`proc`] makes a few `/proc` and `/sys` files from the kernel's live state.

pub mod file;
pub mod pipe;
pub mod proc;
pub mod ramdisk;

pub use file::{FdTable, OpenFile};
pub use ramdisk::Node;
