//! `make fuzz`: one campaign of the system-call fuzzer (`user/musl/fuzz.c`) on the debug kernel
//! (overflow checks on), judged from the host.
//!
//! The fuzzer runs as `/init` with a seed and a number of calls; the kernel prints a heartbeat
//! line every second (boot option `heartbeat=1`). The campaign fails if the kernel panics or
//! triple-faults, if the heartbeat stops for [`HANG`] (a hang with interrupts off), if the fuzzer
//! reports a failed check or does not finish, or if the kernel's closing memory line shows
//! frames or processes not given back. One summary line says which.

use std::path::Path;
use std::time::{Duration, Instant};

use bootproto::exit::{ExitCode, Outcome};
use bootproto::options::LogLevel;

use crate::qemu::Qemu;
use crate::run::{Init, InitEnd, Stopped, Watch};
use crate::Error;

/// No heartbeat for this long (host time; the guest beats every second of its TSC clock, which
/// under TCG on a busy machine can be several host seconds) is a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// How long a campaign of `calls` may take before it counts as stalled: a minute to boot, plus
/// 100 calls a second (the debug kernel under TCG manages about ten times that).
pub fn time_limit(calls: u64) -> Duration {
    Duration::from_secs(60 + calls / 100)
}

/// What one campaign found.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub seed: u64,
    pub calls: u64,
    pub cpu: String,
    pub elapsed: Duration,
    /// `None` if every check held; else what went wrong.
    pub failure: Option<String>,
    /// The kernel's memory line, if it printed one.
    pub memory: Option<String>,
    /// The console (heartbeats left out).
    pub output: String,
}

impl Campaign {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        // A rate only for a campaign that issued all its calls.
        let rate = match self.failure {
            None => format!("{:.0} calls/s", self.calls as f64 / secs.max(0.001)),
            Some(_) => "stopped early".into(),
        };
        format!(
            "fuzz: seed {} cpu {}: {} calls in {:.0} s ({}): {}{}",
            self.seed,
            self.cpu,
            self.calls,
            secs,
            rate,
            self.failure.as_deref().unwrap_or("no panic, no hang, every frame and process back"),
            self.memory.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default()
        )
    }
}

/// Checks the kernel's report after `/init` ended — "memory: F1 frames free before /init was
/// loaded, F2 after it ended; the heap and the kernel-stack page tables held H1 frames before, H2
/// after, with B1 heap bytes in use before, B2 after; processes left: [...]": every frame is
/// back (the heap may have grown, so its frames count as held: F1 + H1 = F2 + H2), every heap
/// byte is back (B1 = B2), and no process is left. `Err` says what did not come back.
pub fn check_memory_line(line: &str) -> Result<(), String> {
    let body = line.split_once("memory: ").map_or(line, |(_, b)| b);
    let (numbers, left) = body.split_once("processes left: ").ok_or_else(|| format!("no process list in {line:?}"))?;
    let nums: Vec<u64> = numbers.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let [free_before, free_after, held_before, held_after, bytes_before, bytes_after] = nums[..] else {
        return Err(format!("cannot read the memory line {line:?}"));
    };
    if free_before + held_before != free_after + held_after || bytes_before != bytes_after {
        return Err(format!("not all given back: {body}"));
    }
    if left.trim() != "[]" {
        return Err(format!("processes left over: {}", left.trim()));
    }
    Ok(())
}

/// Checks the kernel's line "kernel stacks: N in use, …; tasks: T (threads-max M)" after
/// `/init` ended: no kernel stack and no task may be left.
pub fn check_stacks_line(line: &str) -> Result<(), String> {
    if line.contains("kernel stacks: 0 in use") && line.contains("tasks: 0 (") {
        Ok(())
    } else {
        Err(format!("kernel stacks or tasks left over: {line}"))
    }
}

/// Runs one campaign: `fuzz SEED CALLS [v]` as `/init` under `cpu`, echoing the console if `echo`.
pub fn campaign(kernel: &Path, fuzz: &Path, cpu: &str, seed: u64, calls: u64, verbose: bool, echo: bool) -> Result<Campaign, Error> {
    let mut args = vec![seed.to_string(), calls.to_string()];
    if verbose {
        args.push("v".into());
    }
    let init = Init { program: fuzz.to_path_buf(), args, ..Default::default() };
    let qemu = Qemu { cpu: cpu.into(), ..Qemu::default() };
    let watch = Watch { heartbeat: Some(HANG), limit: Some(time_limit(calls)), echo, keep: true };
    let started = Instant::now();
    let (run, stopped) = crate::run::boot_watched(kernel, &qemu, LogLevel::Info, Some(&init), &watch)?;
    let elapsed = started.elapsed();
    let out = &run.output;
    let memory = out.lines().find(|l| l.contains("] memory: ") && l.contains("processes left")).map(|l| l.split_once("] ").map_or(l, |(_, r)| r).to_string());
    let done = out.lines().find(|l| l.starts_with("fuzz: done:"));
    let failure = if stopped == Some(Stopped::Hung) {
        Some(format!("HANG: no heartbeat for {} s", HANG.as_secs()))
    } else if stopped == Some(Stopped::OverTime) {
        Some(format!("STALLED: not finished after {} s (the heartbeat went on: a stall in user space)", time_limit(calls).as_secs()))
    } else if run.outcome == Outcome::Kernel(ExitCode::Panic) {
        Some(format!("PANIC: {}", out.lines().find(|l| l.contains("PANIC") || l.contains("panic")).unwrap_or("(no panic line)")))
    } else if run.outcome != Outcome::Kernel(ExitCode::Success) {
        Some(format!("the kernel did not power off normally ({:?})", run.outcome))
    } else if let Some(line) = out.lines().find(|l| l.starts_with("fuzz: STALL")) {
        Some(format!("STALLED: {line}"))
    } else if let Some(line) = out.lines().find(|l| l.starts_with("fuzz: FAIL") || l.contains("reported a failed check")) {
        Some(format!("CHECK FAILED: {line}"))
    } else if done.is_none() || run.init != Some(InitEnd::Exited(0)) {
        Some(format!("the fuzzer did not finish (init: {:?})", run.init))
    } else {
        match memory.as_deref().map(check_memory_line) {
            None => Some("no memory line from the kernel".into()),
            Some(Err(e)) => Some(format!("LEAK: {e}")),
            Some(Ok(())) => None,
        }
    };
    Ok(Campaign { seed, calls, cpu: cpu.into(), elapsed, failure, memory, output: run.output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lines() {
        let line = "memory: 100 frames free before /init was loaded, 98 after it ended; the heap and the kernel-stack page tables held 10 frames before, 12 after, with 5000 heap bytes in use before, 5000 after; processes left: []";
        assert!(check_memory_line(line).is_ok(), "the heap grew by two frames: none lost");
        assert!(check_memory_line(&line.replace("98 after", "97 after")).is_err(), "a frame lost");
        assert!(check_memory_line(&line.replace("5000 after", "5008 after")).is_err(), "heap bytes lost");
        assert!(check_memory_line(&line.replace("left: []", "left: [7]")).is_err(), "a process left");
        assert!(check_memory_line("memory: 100 frames free before /init was loaded, 100 after it ended; processes left: []").is_err(), "the old line");
        assert!(check_memory_line("memory: garbled").is_err());
        assert!(check_stacks_line("kernel stacks: 0 in use, deepest use 5192 of 16384 bytes; tasks: 0 (threads-max 3984)").is_ok());
        assert!(check_stacks_line("kernel stacks: 1 in use, deepest use 5192 of 16384 bytes; tasks: 1 (threads-max 3984)").is_err());
    }
}
