//! Structures user space reads from the kernel, laid out as on Linux x86-64.

/// `struct stat` (x86-64, `arch/x86/include/uapi/asm/stat.h`): 144 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub mtime_sec: i64,
}

impl Stat {
    /// Size of the user structure.
    pub const SIZE: usize = 144;

    /// The bytes user space sees.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.nlink.to_le_bytes());
        b[24..28].copy_from_slice(&self.mode.to_le_bytes());
        b[28..32].copy_from_slice(&self.uid.to_le_bytes());
        b[32..36].copy_from_slice(&self.gid.to_le_bytes());
        // 36..40: __pad0
        b[40..48].copy_from_slice(&self.rdev.to_le_bytes());
        b[48..56].copy_from_slice(&self.size.to_le_bytes());
        b[56..64].copy_from_slice(&self.blksize.to_le_bytes());
        b[64..72].copy_from_slice(&self.blocks.to_le_bytes());
        // 72..120: atime, mtime, ctime (sec, nsec each)
        for t in 0..3 {
            b[72 + 16 * t..80 + 16 * t].copy_from_slice(&self.mtime_sec.to_le_bytes());
        }
        b
    }
}

/// `struct utsname`: six fields of 65 bytes (`include/uapi/linux/utsname.h`).
pub fn utsname(fields: [&str; 6]) -> [u8; 390] {
    let mut b = [0u8; 390];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        b[i * 65..i * 65 + n].copy_from_slice(&f.as_bytes()[..n]);
    }
    b
}

/// `struct timespec`: seconds and nanoseconds, 16 bytes.
pub fn timespec(nanos: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(nanos / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(nanos % 1_000_000_000).to_le_bytes());
    b
}

/// `struct winsize` for TIOCGWINSZ: rows, columns, and two zero pixel sizes.
pub fn winsize(rows: u16, cols: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&rows.to_le_bytes());
    b[2..4].copy_from_slice(&cols.to_le_bytes());
    b
}

/// The kernel's `struct termios` for TCGETS (36 bytes): a cooked terminal
/// (ICRNL | IXON, OPOST | ONLCR, B38400 | CS8 | CREAD, ISIG | ICANON | ECHO…).
pub fn termios() -> [u8; 36] {
    let mut b = [0u8; 36];
    b[0..4].copy_from_slice(&0o002400u32.to_le_bytes()); // c_iflag: ICRNL | IXON
    b[4..8].copy_from_slice(&0o000005u32.to_le_bytes()); // c_oflag: OPOST | ONLCR
    b[8..12].copy_from_slice(&0o000277u32.to_le_bytes()); // c_cflag: B38400 | CS8 | CREAD
    b[12..16].copy_from_slice(&0o105073u32.to_le_bytes()); // c_lflag: ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_land_at_linux_offsets() {
        let s = Stat { mode: 0o100644, size: 1234, nlink: 1, ..Stat::default() };
        let b = s.to_bytes();
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o100644);
        assert_eq!(i64::from_le_bytes(b[48..56].try_into().unwrap()), 1234);
        assert_eq!(utsname(["Linux", "pikku", "6.12.117", "#1", "x86_64", "(none)"])[65..70], *b"pikku");
        assert_eq!(timespec(1_500_000_000), {
            let mut t = [0u8; 16];
            t[0] = 1;
            t[8..12].copy_from_slice(&500_000_000u32.to_le_bytes());
            t
        });
    }
}
