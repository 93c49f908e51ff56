//! Boot options: the one channel from the host to the kernel.
//!
//! bootloader 0.11 passes the kernel no command line, so `boot` writes one into the ramdisk as
//! the text file [`CMDLINE_PATH`]. Its syntax is Linux's: `key=value` words separated by white
//! space. The kernel reads it right after the console is up; unknown words are reported (one
//! log line each) and otherwise ignored, as Linux does.
//!
//! | word                       | meaning                                                     |
//! |----------------------------|-------------------------------------------------------------|
//! | `log=quiet\|info\|debug`   | console verbosity (`quiet`: errors only; default `info`)    |
//! | `mode=run\|test`           | `run`: boot report then power off; `test`: in-kernel tests  |
//! | `ktest.start_after=NAME`   | test mode: skip every test up to and including `NAME` (the host uses it to resume after a test that panicked) |
//! | `ktest.selftest=1`         | test mode: also run the harness's own deliberately failing tests (panic, hang, triple fault), which the host uses to check the harness |
//! | `ktest.carry=P,F,S`        | test mode: passed/failed/skipped counts of earlier boots of the same run, so the closing count covers them all |
//! | `hugepages=N`              | put N 2-MiB pages in the huge-page pool at boot, as Linux's kernel parameter of the same name (fewer if memory is short) |
//! | `pks=on\|off`              | supervisor protection keys guard the page tables where the CPU has PKS (`on`, the default), or are left off (`off`: to measure what they cost) |
//! | `heartbeat=SECS`           | print a `[… beat] alive` line every SECS seconds of guest time (0, the default: never); the fuzz runner (`make fuzz`) calls a boot hung when these stop |

/// Where the options live inside the ramdisk archive.
pub const CMDLINE_PATH: &str = "pikku/cmdline";

/// Console verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only errors reach the console.
    Quiet,
    /// Errors, warnings and the boot narrative.
    Info,
    /// Everything, including per-step detail.
    Debug,
}

/// What the kernel does once it has booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print the boot report and power off.
    Run,
    /// Run the in-kernel test harness.
    Test,
}

/// The parsed options. Borrowed strings point into the command line text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOptions<'a> {
    pub log: LogLevel,
    pub mode: Mode,
    pub start_after: Option<&'a str>,
    /// Counts carried over from earlier boots of one test run.
    pub carry: Counts,
    /// Run the harness's deliberately failing self-tests too.
    pub harness_selftest: bool,
    /// Seconds between heartbeat lines; 0 = none.
    pub heartbeat: u32,
    /// 2-MiB pages for the huge-page pool at boot (Linux's `hugepages=`); 0 = none.
    pub hugepages: u64,
    /// Guard the page tables with a supervisor protection key where the CPU has PKS.
    pub pks: bool,
}

/// Test counts: passed, failed, skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl Default for BootOptions<'_> {
    fn default() -> Self {
        BootOptions { log: LogLevel::Info, mode: Mode::Run, start_after: None, carry: Counts::default(), harness_selftest: false, heartbeat: 0, hugepages: 0, pks: true }
    }
}

/// A word of the command line that was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown<'a>(pub &'a str);

impl LogLevel {
    /// Parses `quiet`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quiet" => Some(LogLevel::Quiet),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }
    /// The word [`LogLevel::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Quiet => "quiet",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl<'a> BootOptions<'a> {
    /// Parses a command line; calls `unknown` for each word it does not understand.
    pub fn parse(cmdline: &'a str, mut unknown: impl FnMut(Unknown<'a>)) -> Self {
        let mut opts = BootOptions::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "log" => match LogLevel::parse(value) {
                    Some(level) => opts.log = level,
                    None => unknown(Unknown(word)),
                },
                "mode" => match value {
                    "run" => opts.mode = Mode::Run,
                    "test" => opts.mode = Mode::Test,
                    _ => unknown(Unknown(word)),
                },
                "ktest.start_after" if !value.is_empty() => opts.start_after = Some(value),
                "ktest.selftest" if value == "1" => opts.harness_selftest = true,
                "heartbeat" => match value.parse() {
                    Ok(secs) => opts.heartbeat = secs,
                    Err(_) => unknown(Unknown(word)),
                },
                "hugepages" => match value.parse() {
                    Ok(pages) => opts.hugepages = pages,
                    Err(_) => unknown(Unknown(word)),
                },
                "pks" => match value {
                    "on" => opts.pks = true,
                    "off" => opts.pks = false,
                    _ => unknown(Unknown(word)),
                },
                "ktest.carry" => match parse_counts(value) {
                    Some(c) => opts.carry = c,
                    None => unknown(Unknown(word)),
                },
                _ => unknown(Unknown(word)),
            }
        }
        opts
    }

    /// Writes the options back as a command line that [`BootOptions::parse`] reads.
    #[cfg(feature = "std")]
    pub fn to_cmdline(&self) -> String {
        let mut s = format!("log={} mode={}", self.log.as_str(), match self.mode {
            Mode::Run => "run",
            Mode::Test => "test",
        });
        if let Some(name) = self.start_after {
            s.push_str(" ktest.start_after=");
            s.push_str(name);
        }
        if self.harness_selftest {
            s.push_str(" ktest.selftest=1");
        }
        if self.heartbeat != 0 {
            s.push_str(&format!(" heartbeat={}", self.heartbeat));
        }
        if self.hugepages != 0 {
            s.push_str(&format!(" hugepages={}", self.hugepages));
        }
        if !self.pks {
            s.push_str(" pks=off");
        }
        if self.carry != Counts::default() {
            let c = self.carry;
            s.push_str(&format!(" ktest.carry={},{},{}", c.passed, c.failed, c.skipped));
        }
        s
    }
}

fn parse_counts(s: &str) -> Option<Counts> {
    let mut it = s.split(',').map(|n| n.parse::<u32>().ok());
    let counts = Counts { passed: it.next()??, failed: it.next()??, skipped: it.next()?? };
    it.next().is_none().then_some(counts)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn parses_known_words_and_reports_the_rest() {
        let mut unknown = Vec::new();
        let o = BootOptions::parse("log=debug  mode=test ktest.start_after=a::b bogus log=loud", |u| unknown.push(u.0));
        assert_eq!(o, BootOptions { log: LogLevel::Debug, mode: Mode::Test, start_after: Some("a::b"), carry: Counts::default(), harness_selftest: false, heartbeat: 0, hugepages: 0, pks: true });
        assert_eq!(unknown, ["bogus", "log=loud"]);
    }

    #[test]
    fn round_trips() {
        let o = BootOptions {
            log: LogLevel::Quiet,
            mode: Mode::Test,
            start_after: Some("x::y"),
            carry: Counts { passed: 3, failed: 1, skipped: 2 },
            harness_selftest: true,
            heartbeat: 5,
            hugepages: 10,
            pks: false,
        };
        let line = o.to_cmdline();
        assert_eq!(BootOptions::parse(&line, |u| panic!("unknown {u:?}")), o);
        assert_eq!(BootOptions::parse("", |_| {}), BootOptions::default());
        let mut bad = Vec::new();
        BootOptions::parse("ktest.carry=1,2 ktest.carry=1,2,3,4 ktest.carry=a,b,c heartbeat=-1 hugepages=-1 pks=maybe", |u| bad.push(u.0));
        assert_eq!(bad.len(), 6);
        assert!(!BootOptions::parse("pks=off", |_| {}).pks);
        assert!(BootOptions::parse("pks=off pks=on", |_| {}).pks);
    }
}
