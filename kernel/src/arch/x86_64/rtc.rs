//! The CMOS real-time clock, read once at boot for `CLOCK_REALTIME`.
//!
//! The MC146818-compatible RTC (ports 0x70/0x71) keeps calendar time in BCD or binary, per its
//! status register B. We wait for the "update in progress" flag to clear, read the fields, and
//! turn them into seconds since 1970 (UTC, as QEMU's default `-rtc base=utc`).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static BOOT_EPOCH: AtomicU64 = AtomicU64::new(0);

fn read_register(reg: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 are the CMOS index/data pair; selecting a register (with NMIs
    // left enabled: bit 7 clear) and reading it has no other effect.
    unsafe {
        index.write(reg);
        data.read()
    }
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads the RTC and records the boot time.
pub fn init() {
    for _ in 0..1_000_000 {
        if read_register(0x0a) & 0x80 == 0 {
            break;
        }
    }
    let status_b = read_register(0x0b);
    let bcd = status_b & 0x04 == 0;
    let decode = |v: u8| if bcd { (v & 0x0f) + (v >> 4) * 10 } else { v };
    let second = decode(read_register(0x00)) as u64;
    let minute = decode(read_register(0x02)) as u64;
    let raw_hour = read_register(0x04);
    let mut hour = decode(raw_hour & 0x7f) as u64;
    if status_b & 0x02 == 0 && raw_hour & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    let day = decode(read_register(0x07)) as u32;
    let month = decode(read_register(0x08)) as u32;
    let year = 2000 + decode(read_register(0x09)) as i64;
    let days = days_from_civil(year, month.clamp(1, 12), day.clamp(1, 31));
    let epoch = days.max(0) as u64 * 86_400 + hour * 3600 + minute * 60 + second;
    BOOT_EPOCH.store(epoch, Ordering::Relaxed);
}

/// Seconds since 1970 at boot.
pub fn boot_epoch_seconds() -> u64 {
    BOOT_EPOCH.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn civil_dates_convert_and_the_clock_is_plausible() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 22), 20_779); // Python: (date(2026,11,22) - date(1970,1,1)).days
        // QEMU's RTC follows the host clock: some time after 2024-01-01.
        assert!(boot_epoch_seconds() > 1_704_067_200, "{}", boot_epoch_seconds());
    }
}
