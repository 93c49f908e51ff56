//! Running the in-kernel test suite from the host.
//!
//! One *run* is one or more *boots* of the test kernel. Each boot prints, per test, a start
//! marker and a result line (see the kernel's `ktest` module). The runner reads the serial
//! output as it arrives and decides what each boot's end means:
//!
//! | the boot ended with…                         | the runner…                                      |
//! |----------------------------------------------|--------------------------------------------------|
//! | `Success`/`Failed` and a closing count line   | is done                                          |
//! | `Panic` right after a `FAILED` result line    | boots again after that test                      |
//! | `Panic` after `[ktest] resume after X` (a test that expected to end the boot) | boots again after X |
//! | QEMU status 0 (triple fault, `-no-reboot`)    | records the running test as FAILED, boots again after it |
//! | no output for [`Suite::timeout`] (60 s before the kernel's first line) | kills QEMU, records the running test as hung (FAILED), boots again after it |
//! | a panic or hang outside any test              | stops with an error naming the last kernel lines |
//!
//! Counts from earlier boots travel to the next in `ktest.carry=…`, so the kernel's closing
//! line of the last boot covers the whole run, and the runner checks it against its own tally.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bootproto::exit::{classify, ExitCode, Outcome};
use bootproto::options::{BootOptions, Counts, LogLevel, Mode};

use crate::image::{self, Firmware};
use crate::qemu::Qemu;
use crate::Error;

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Passed,
    /// Skipped, with the reason the kernel gave.
    Skipped(String),
    /// Failed, with the kernel's message (panic text, or what the runner observed).
    Failed(String),
}

/// One test's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub status: Status,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub results: Vec<TestResult>,
    /// The kernel's closing line of the last boot (`N passed, M failed`).
    pub closing_line: Option<String>,
    pub boots: u32,
    pub elapsed: Duration,
}

impl Report {
    /// Passed, failed and skipped tests.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.results {
            match r.status {
                Status::Passed => c.passed += 1,
                Status::Failed(_) => c.failed += 1,
                Status::Skipped(_) => c.skipped += 1,
            }
        }
        c
    }

    /// The results whose status is `Failed`.
    pub fn failures(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|r| matches!(r.status, Status::Failed(_)))
    }
}

/// What the runner reports while it works (for live output).
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A test finished.
    Result(&'a TestResult),
    /// A boot starts (after the named test, if any).
    Boot { number: u32, after: Option<&'a str> },
    /// A line of serial output that is neither a result nor a marker (kernel log, messages).
    Line(&'a str),
}

impl Event<'_> {
    /// The lines `make test` shows for this event, each prefixed with `prefix` (e.g.
    /// `"[max/bios] "`); kernel lines are shown only if they are errors (or warnings, with
    /// `show_warnings`).
    pub fn display_lines(&self, prefix: &str, show_warnings: bool) -> Vec<String> {
        match self {
            Event::Result(r) => match &r.status {
                Status::Passed => vec![format!("{prefix}test {} ... ok", r.name)],
                Status::Skipped(why) => vec![format!("{prefix}test {} ... skipped ({why})", r.name)],
                Status::Failed(msg) => std::iter::once(format!("{prefix}test {} ... FAILED", r.name))
                    .chain(msg.lines().map(|l| format!("    {l}")))
                    .collect(),
            },
            Event::Boot { number, after: Some(name) } => vec![format!("{prefix}boot {number}: resuming after {name}")],
            Event::Boot { .. } => Vec::new(),
            Event::Line(line) if line.contains(" error]") || (show_warnings && line.contains(" warn]")) => {
                vec![format!("{prefix}{line}")]
            }
            Event::Line(_) => Vec::new(),
        }
    }
}

/// How long a boot may stay silent before the kernel's first line (QEMU and firmware starting),
/// whatever [`Suite::timeout`] says: a generous fixed allowance, since no test runs yet.
const STARTUP_ALLOWANCE: Duration = Duration::from_secs(60);

/// A test-suite run configuration.
#[derive(Debug, Clone)]
pub struct Suite {
    pub qemu: Qemu,
    /// How long a boot may print nothing before it counts as hung.
    pub timeout: Duration,
    pub log: LogLevel,
    /// Also run the harness's deliberately failing self-tests.
    pub harness_selftest: bool,
}

impl Suite {
    /// A run on `cpu` with `firmware`, a 60-second silence limit, `log=info`.
    pub fn new(firmware: Firmware, cpu: &str) -> Suite {
        Suite {
            qemu: Qemu { firmware, cpu: cpu.into(), ..Qemu::default() },
            timeout: Duration::from_secs(60),
            log: LogLevel::Info,
            harness_selftest: false,
        }
    }

    /// Runs every test of the test kernel at `kernel`, booting as often as needed.
    pub fn run(&self, kernel: &Path, mut on_event: impl FnMut(Event)) -> Result<Report, Error> {
        crate::qemu::check_installed(self.qemu.firmware)?;
        let started = Instant::now();
        let mut report = Report::default();
        let mut after: Option<String> = None;
        loop {
            report.boots += 1;
            on_event(Event::Boot { number: report.boots, after: after.as_deref() });
            let options = BootOptions {
                log: self.log,
                mode: Mode::Test,
                start_after: after.as_deref(),
                carry: report.counts(),
                harness_selftest: self.harness_selftest,
                heartbeat: 0,
                hugepages: 0,
                pks: true,
            };
            let boot = self.boot_once(kernel, &options, &mut report, &mut on_event)?;
            match boot {
                BootEnd::Finished => break,
                BootEnd::ResumeAfter(name) => after = Some(name),
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn boot_once(
        &self,
        kernel: &Path,
        options: &BootOptions,
        report: &mut Report,
        on_event: &mut impl FnMut(Event),
    ) -> Result<BootEnd, Error> {
        let ramdisk = image::ramdisk(options, &crate::run::rootfs_files());
        let disk = image::disk_image(kernel, &ramdisk, self.qemu.firmware, self.log == LogLevel::Debug)?;
        let vars = self.qemu.prepare_vars()?;
        let mut child = self
            .qemu
            .command(&disk, vars.as_deref())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;

        // A reader thread turns the serial stream into lines, so the wait below can time out.
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut parser = Parser::default();
        let mut timed_out = false;
        // The silence limit is for the kernel: until its first line, QEMU and the firmware are
        // still starting, which on a loaded machine has taken over 20 s — a short limit meant
        // to catch a hung test must not fire then.
        let mut started = false;
        loop {
            let limit = if started { self.timeout } else { self.timeout.max(STARTUP_ALLOWANCE) };
            match rx.recv_timeout(limit) {
                Ok(line) => {
                    started = true;
                    for result in parser.feed(&line) {
                        report.results.push(result);
                        on_event(Event::Result(report.results.last().unwrap()));
                    }
                    if parser.is_plain(&line) {
                        on_event(Event::Line(&line));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().map_err(|e| format!("waiting for qemu: {e}"))?;
        let _ = reader.join();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        let _ = std::fs::remove_file(&disk);
        if let Some(v) = vars {
            let _ = std::fs::remove_file(v);
        }
        if let Some(result) = parser.finish() {
            report.results.push(result);
            on_event(Event::Result(report.results.last().unwrap()));
        }

        let last_lines = parser.tail.join("\n");
        if timed_out {
            let Some(name) = parser.running.take() else {
                return Err(format!("the kernel printed nothing for {:?} outside any test; last lines:\n{last_lines}", self.timeout));
            };
            report.results.push(TestResult {
                name: name.clone(),
                status: Status::Failed(format!("hung: no output for {:?}; QEMU killed", self.timeout)),
            });
            on_event(Event::Result(report.results.last().unwrap()));
            return Ok(BootEnd::ResumeAfter(name));
        }

        match classify(status.code().unwrap_or(-1)) {
            Outcome::Kernel(ExitCode::Success) | Outcome::Kernel(ExitCode::Failed) => {
                report.closing_line = parser.closing.clone();
                if parser.closing.is_none() {
                    return Err(format!("the test kernel ended without its closing count; last lines:\n{last_lines}"));
                }
                Ok(BootEnd::Finished)
            }
            Outcome::Kernel(ExitCode::Panic) => match parser.last_failed.take().or_else(|| parser.resume_after.take()) {
                Some(name) => Ok(BootEnd::ResumeAfter(name)),
                None => Err(format!("kernel panic outside any test:\n{last_lines}")),
            },
            Outcome::NoExitDevice => {
                let Some(name) = parser.running.take() else {
                    return Err(format!("QEMU ended without the exit device (triple fault?) outside any test:\n{last_lines}"));
                };
                report.results.push(TestResult {
                    name: name.clone(),
                    status: Status::Failed("QEMU ended without the exit device: triple fault (-no-reboot)".into()),
                });
                on_event(Event::Result(report.results.last().unwrap()));
                Ok(BootEnd::ResumeAfter(name))
            }
            Outcome::Unknown(code) => Err(format!("QEMU exited with status {code}: {}\n{last_lines}", stderr.trim())),
        }
    }
}

enum BootEnd {
    Finished,
    ResumeAfter(String),
}

/// Reads the harness's lines.
#[derive(Default)]
struct Parser {
    /// The test that started and has no result yet.
    running: Option<String>,
    /// A FAILED test whose indented message lines are still arriving.
    failing: Option<(String, Vec<String>)>,
    /// The last test reported FAILED in this boot.
    last_failed: Option<String>,
    /// A test that passed by ending the boot with the panic it expected.
    resume_after: Option<String>,
    closing: Option<String>,
    /// The last lines seen, for error messages.
    tail: Vec<String>,
}

impl Parser {
    fn feed(&mut self, line: &str) -> Vec<TestResult> {
        self.tail.push(line.to_string());
        if self.tail.len() > 20 {
            self.tail.remove(0);
        }
        let mut out = Vec::new();
        if let Some((_, message)) = &mut self.failing {
            if let Some(text) = line.strip_prefix("    ") {
                message.push(text.to_string());
                return out;
            }
            out.extend(self.finish());
        }
        if let Some(name) = line.strip_prefix("[ktest] start ") {
            self.running = Some(name.trim().to_string());
        } else if let Some(name) = line.strip_prefix("[ktest] resume after ") {
            self.resume_after = Some(name.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                self.running = None;
                out.push(TestResult { name: name.into(), status: Status::Passed });
            } else if let Some((name, why)) = rest.split_once(" ... skipped ") {
                out.push(TestResult { name: name.into(), status: Status::Skipped(why.trim_matches(['(', ')']).into()) });
            } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
                self.running = None;
                self.last_failed = Some(name.to_string());
                self.failing = Some((name.to_string(), Vec::new()));
            }
        } else if is_closing_line(line) {
            self.closing = Some(line.to_string());
        }
        out
    }

    /// Ends a FAILED block whose message is complete.
    fn finish(&mut self) -> Option<TestResult> {
        let (name, message) = self.failing.take()?;
        Some(TestResult { name, status: Status::Failed(message.join("\n")) })
    }

    /// Is this line plain output (not a harness line)?
    fn is_plain(&self, line: &str) -> bool {
        !(line.starts_with("[ktest] start ") || line.starts_with("test ") || line.starts_with("    ") || is_closing_line(line))
    }
}

/// `N passed, M failed`.
pub fn is_closing_line(line: &str) -> bool {
    let Some((p, f)) = line.split_once(" passed, ") else { return false };
    let Some(f) = f.strip_suffix(" failed") else { return false };
    p.parse::<u32>().is_ok() && f.parse::<u32>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results_failures_and_the_closing_line() {
        let mut p = Parser::default();
        let mut results = Vec::new();
        for line in [
            "[ 0.1 info] booting",
            "[ktest] start a::one",
            "test a::one ... ok",
            "test a::two ... skipped (needs PKU)",
            "[ktest] start a::three",
            "test a::three ... FAILED",
            "    panicked at x.rs:1:2:",
            "    boom",
            "2 passed, 1 failed",
        ] {
            results.extend(p.feed(line));
        }
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].status, Status::Passed);
        assert_eq!(results[1].status, Status::Skipped("needs PKU".into()));
        assert_eq!(results[2].status, Status::Failed("panicked at x.rs:1:2:\nboom".into()));
        assert_eq!(p.closing.as_deref(), Some("2 passed, 1 failed"));
        assert_eq!(p.last_failed.as_deref(), Some("a::three"));
        assert!(p.running.is_none());
    }

    #[test]
    fn a_test_that_ended_the_boot_as_it_expected_is_resumed_after() {
        let mut p = Parser::default();
        let mut results = Vec::new();
        for line in [
            "[ktest] start a::overflows",
            "[ktest] the expected panic: kernel stack overflow: thread 1 …",
            "test a::overflows ... ok",
            "[ktest] resume after a::overflows",
        ] {
            results.extend(p.feed(line));
        }
        assert_eq!(results, vec![TestResult { name: "a::overflows".into(), status: Status::Passed }]);
        assert_eq!(p.resume_after.as_deref(), Some("a::overflows"));
        assert!(p.running.is_none() && p.last_failed.is_none());
    }

    #[test]
    fn a_start_without_result_is_the_running_test() {
        let mut p = Parser::default();
        p.feed("[ktest] start x::hangs");
        assert_eq!(p.running.as_deref(), Some("x::hangs"));
        assert!(is_closing_line("10 passed, 0 failed"));
        assert!(!is_closing_line("10 passed, 0 failed, 2 skipped"));
        assert!(!is_closing_line("a passed, 0 failed"));
    }
}
