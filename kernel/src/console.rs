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
//! (panics) do not wait: they start a new line at once.

use alloc::string::String;
use alloc::vec::Vec;
use bootproto::options::LogLevel;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use spin::Mutex;

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
/// Kernel lines waiting for the program's line to end.
static DEFERRED: Mutex<Vec<String>> = Mutex::new(Vec::new());

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

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints without a tag (the `print!` macro).
pub fn print(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = Serial.write_fmt(args);
    });
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
            DEFERRED.lock().push(alloc::format!("{line}"));
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
    let lines = core::mem::take(&mut *DEFERRED.lock());
    for line in lines {
        print(format_args!("{line}"));
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

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Info, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::console::log($crate::console::Level::Debug, format_args!($($arg)*)) };
}
