//! The console: `print!`/`println!` and the kernel log.
//!
//! Everything goes to the serial port. Kernel log lines are whole lines that start with a
//! bracketed tag — `[  0.412 info] …` (seconds since boot, level) — so that scripts and the
//! host test runner can tell them apart from program or test-harness output. The level is set
//! by the `log=` boot option; `quiet` keeps everything but errors off the console.
//!
//! User programs write to the same port (fds 1 and 2), byte for byte. To keep the two apart,
//! the kernel never prints inside a partial line of program output: while a program's last
//! byte was not a newline, kernel log lines wait in a queue and come out right after the
//! program's next newline — or when the program ends, after one newline the kernel adds so that
//! its own line starts at the beginning of a line (the only byte the kernel ever adds to
//! program output, and only when the program's output did not end with a newline). Errors
//! (panics) do not wait: they start a new line at once. The queue of waiting lines is bounded
//! ([`MAX_DEFERRED`]), and warnings a program can trigger at will are rate-limited as Linux's
//! `printk_ratelimit()` ([`ratelimit_allows`]).

use alloc::string::String;
use alloc::vec::Vec;
use bootproto::options::LogLevel;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use crate::sync::Mutex;

use crate::arch::x86_64::{serial, time};

/// Severity of a log line. `Error` always prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// Did the last byte of user output leave a line open?
static USER_LINE_OPEN: AtomicBool = AtomicBool::new(false);
/// Kernel lines waiting for the program's line to end, and how many more were dropped.
static DEFERRED: Mutex<Deferred> = Mutex::new(Deferred { lines: Vec::new(), dropped: 0 });

/// Most kernel lines that wait for an open program line. A program that never ends its line
/// while it makes the kernel log (a loop of unknown system calls) must not fill the heap:
/// later lines are counted, and one "N kernel lines dropped" line says so when the wait ends.
pub const MAX_DEFERRED: usize = 64;

struct Deferred {
    lines: Vec<String>,
    dropped: u64,
}

impl Deferred {
    /// Queues `line`, or counts it as dropped once [`MAX_DEFERRED`] lines wait.
    fn push(&mut self, line: fmt::Arguments) {
        if self.lines.len() < MAX_DEFERRED {
            self.lines.push(alloc::format!("{line}"));
        } else {
            self.dropped += 1;
        }
    }
}

/// Applies the `log=` boot option.
pub fn set_log_level(level: LogLevel) {
    let max = match level {
        LogLevel::Quiet => Level::Error,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
    };
    MAX_LEVEL.store(max as u8, Ordering::Relaxed);
}

/// Would a line at `level` be printed?
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Prints without a tag (the `print!` macro), under one hold of the UART's lock: a line printed
/// with one call never interleaves with another CPU's.
pub fn print(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| serial::write_fmt(args));
}

/// Prints one log line (the `log_*!` macros).
pub fn log(level: Level, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let name = match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    tagged_line(name, level == Level::Error, args);
}

/// A kernel line that prints whatever the log level: the end of the first program, power-off.
pub fn announce(args: fmt::Arguments) {
    tagged_line("exit", false, args);
}

/// The heartbeat line (`heartbeat=SECS`), printed from the timer tick: a host that stops seeing
/// it knows the kernel hung with interrupts off. It never waits behind an open program line —
/// the host must see it whatever the program writes — so it starts a new line like an error.
pub fn heartbeat() {
    tagged_line("beat", true, format_args!("alive"));
}

fn tagged_line(tag: &str, urgent: bool, args: fmt::Arguments) {
    let us = time::micros_since_boot();
    let line = format_args!("[{:4}.{:03} {}] {}\n", us / 1_000_000, (us / 1000) % 1000, tag, args);
    if USER_LINE_OPEN.load(Ordering::Relaxed) {
        if urgent {
            print(format_args!("\n"));
            USER_LINE_OPEN.store(false, Ordering::Relaxed);
        } else {
            DEFERRED.lock().push(line);
            return;
        }
    }
    print(line);
}

/// Writes a user program's bytes (fds 1 and 2) to the console, unchanged.
pub fn write_user(bytes: &[u8]) {
    let Some(&last) = bytes.last() else { return };
    x86_64::instructions::interrupts::without_interrupts(|| serial::write_bytes(bytes));
    USER_LINE_OPEN.store(last != b'\n', Ordering::Relaxed);
    if last == b'\n' {
        flush_deferred();
    }
}

/// Ends an open program line (one newline) and prints the kernel lines that were waiting.
pub fn finish_user_output() {
    if USER_LINE_OPEN.swap(false, Ordering::Relaxed) {
        print(format_args!("\n"));
    }
    flush_deferred();
}

fn flush_deferred() {
    let (lines, dropped) = {
        let mut deferred = DEFERRED.lock();
        (core::mem::take(&mut deferred.lines), core::mem::take(&mut deferred.dropped))
    };
    for line in lines {
        print(format_args!("{line}"));
    }
    if dropped > 0 {
        tagged_line("warn", false, format_args!("{dropped} kernel lines dropped while a program line was open"));
    }
}

/// Linux's `printk_ratelimit()` for warnings a program can trigger at will (an unknown system
/// call, a fault report): at most [`RATELIMIT_BURST`] in any [`RATELIMIT_INTERVAL_US`], the
/// defaults of Linux's `DEFAULT_RATELIMIT_BURST` (10) and `DEFAULT_RATELIMIT_INTERVAL` (5 s).
/// When a new interval starts after some were suppressed, one line says how many (Linux:
/// "N callbacks suppressed").
pub const RATELIMIT_BURST: u32 = 10;
/// See [`RATELIMIT_BURST`]: 5 seconds.
pub const RATELIMIT_INTERVAL_US: u64 = 5_000_000;

struct RateLimit {
    /// Start of the current interval (µs since boot); `None` before the first warning.
    begin: Option<u64>,
    printed: u32,
    missed: u64,
}

impl RateLimit {
    /// Linux: `___ratelimit()`. At time `now` (µs): `Some(n)` if a warning may be printed,
    /// `n` being how many were suppressed before it in earlier intervals; `None` if not.
    fn check(&mut self, now: u64) -> Option<u64> {
        let mut suppressed = 0;
        if self.begin.is_none_or(|begin| now.saturating_sub(begin) >= RATELIMIT_INTERVAL_US) {
            suppressed = core::mem::take(&mut self.missed);
            self.begin = Some(now);
            self.printed = 0;
        }
        if self.printed < RATELIMIT_BURST {
            self.printed += 1;
            Some(suppressed)
        } else {
            self.missed += 1;
            None
        }
    }
}

static RATELIMIT: Mutex<RateLimit> = Mutex::new(RateLimit { begin: None, printed: 0, missed: 0 });

/// May a user-triggered warning be printed now? (Says first how many were suppressed, if any.)
pub fn ratelimit_allows() -> bool {
    let verdict = RATELIMIT.lock().check(time::micros_since_boot());
    match verdict {
        None => false,
        Some(0) => true,
        Some(suppressed) => {
            log(Level::Warn, format_args!("{suppressed} warnings suppressed (rate limit: {RATELIMIT_BURST} per {} s)", RATELIMIT_INTERVAL_US / 1_000_000));
            true
        }
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Error, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Warn, format_args!($($arg)*)) };
}

/// A warning a program can trigger at will, rate-limited ([`ratelimit_allows`]).
#[macro_export]
macro_rules! log_warn_ratelimited {
    ($($arg:tt)*) => {
        if $crate::console::enabled($crate::console::Level::Warn) && $crate::console::ratelimit_allows() {
            $crate::console::log($crate::console::Level::Warn, format_args!($($arg)*))
        }
    };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Info, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    /// Ten warnings in an interval, then silence; the next interval says how many were kept back.
    #[ktest]
    fn user_warnings_are_rate_limited_as_printk_ratelimit() {
        let mut rl = RateLimit { begin: None, printed: 0, missed: 0 };
        let t0 = 1_000_000;
        assert!((0..10).all(|i| rl.check(t0 + i) == Some(0)), "a burst of 10");
        assert!((0..90).all(|i| rl.check(t0 + 100 + i).is_none()), "then nothing");
        assert_eq!(rl.check(t0 + RATELIMIT_INTERVAL_US - 1), None, "still the same interval");
        assert_eq!(rl.check(t0 + RATELIMIT_INTERVAL_US), Some(91), "a new one: 91 suppressed");
        assert_eq!(rl.check(t0 + RATELIMIT_INTERVAL_US + 1), Some(0));
    }

    /// The queue of lines waiting for an open program line keeps 64 and counts the rest.
    #[ktest]
    fn waiting_kernel_lines_are_bounded() {
        let mut deferred = Deferred { lines: Vec::new(), dropped: 0 };
        for i in 0..1000 {
            deferred.push(format_args!("line {i}"));
        }
        assert_eq!(deferred.lines.len(), MAX_DEFERRED);
        assert_eq!(deferred.lines[MAX_DEFERRED - 1], alloc::format!("line {}", MAX_DEFERRED - 1));
        assert_eq!(deferred.dropped, 1000 - MAX_DEFERRED as u64);
    }
}
