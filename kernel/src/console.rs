//! The console: `print!`/`println!` and the kernel log.
//!
//! Everything goes to the serial port. Kernel log lines are whole lines that start with a
//! bracketed tag — `[  0.412 info] …` (seconds since boot, level) — so that scripts and the
//! host test runner can tell them apart from program or test-harness output. The level is set
//! by the `log=` boot option; `quiet` keeps everything but errors off the console.

use bootproto::options::LogLevel;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

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
    let us = time::micros_since_boot();
    let name = match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    print(format_args!("[{:4}.{:03} {}] {}\n", us / 1_000_000, (us / 1000) % 1000, name, args));
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
