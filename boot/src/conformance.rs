//! Conformance: the same static programs on pikku and on Linux, compared line by line.
//!
//! Each [`Case`] is a program from `user/` with its arguments and a CPU model. Its
//! *transcript* is the program's output followed by one line saying how it ended
//! (`== exit status 0`, `== killed by signal 11`, `== powered off`). Linux's transcripts are
//! checked in as golden files (`tests/golden/`): `make test` compares pikku against them
//! without booting Linux; `make conformance` boots Linux, refreshes them, fails loudly if Linux
//! itself gave something new, and prints the comparison table.

use std::path::{Path, PathBuf};

use crate::run::{Init, InitEnd};
use crate::Error;

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub program: &'static str,
    pub args: &'static [&'static str],
    pub cpu: &'static str,
}

/// Every case: each a program that prints one line per observable fact.
/// `-cpu max` without LA57, for the cases that probe the top of user space. pikku pages with 4
/// levels, so its user space ends at `TASK_SIZE` = 2^47 - 4 KiB; with LA57 (which `-cpu max`
/// offers) Debian's kernel pages with 5 levels and lets `MAP_FIXED` reach up to 2^56. Both
/// kernels boot the same machine, the one pikku models.
const FOUR_LEVEL_MAX: &str = "max,la57=off";

pub const CASES: &[Case] = &[
    Case { program: "hello", args: &[], cpu: "max" },
    Case { program: "cat_passwd", args: &["one", "two"], cpu: "max" },
    Case { program: "pkeys_ring3", args: &[], cpu: "max" },
    Case { program: "pkeys_ring3", args: &[], cpu: "qemu64" },
    Case { program: "pkeys_rs", args: &[], cpu: "max" },
    Case { program: "pkeys_rs", args: &[], cpu: "qemu64" },
    Case { program: "abi", args: &[], cpu: "max" },
    Case { program: "badptr", args: &[], cpu: "max" },
    Case { program: "poweroff", args: &[], cpu: "max" },
    Case { program: "faults", args: &["priv"], cpu: "max" },
    Case { program: "faults", args: &["rodata"], cpu: "max" },
    Case { program: "faults", args: &["jump"], cpu: "max" },
    Case { program: "faults", args: &["ud2"], cpu: "max" },
    Case { program: "signals", args: &[], cpu: "max" },
    Case { program: "signals", args: &[], cpu: "qemu64" },
    Case { program: "threads", args: &[], cpu: "max" },
    Case { program: "threads", args: &[], cpu: "qemu64" },
    Case { program: "procs", args: &[], cpu: "max" },
    Case { program: "procs", args: &[], cpu: "qemu64" },
    Case { program: "jobctl", args: &[], cpu: "max" },
    Case { program: "ptrace", args: &[], cpu: "max" },
    Case { program: "limits", args: &[], cpu: "max" },
    Case { program: "mprotect_order", args: &[], cpu: "max" },
    Case { program: "mprotect_order", args: &[], cpu: "qemu64" },
    Case { program: "pkeys_mem", args: &[], cpu: "max" },
    Case { program: "pkeys_mem", args: &[], cpu: "qemu64" },
    Case { program: "pkey_fault", args: &["ad-read"], cpu: "max" },
    Case { program: "pkey_fault", args: &["ad-read-mapped"], cpu: "max" },
    Case { program: "pkey_fault", args: &["ad-write"], cpu: "max" },
    Case { program: "pkey_fault", args: &["wd-write"], cpu: "max" },
    Case { program: "pkey_fault", args: &["wd-write-mapped"], cpu: "max" },
    Case { program: "pkey_fault", args: &["xo-read"], cpu: "max" },
    Case { program: "edges", args: &["bounds"], cpu: FOUR_LEVEL_MAX },
    Case { program: "edges", args: &["init"], cpu: FOUR_LEVEL_MAX },
    Case { program: "edges", args: &["sigpipe"], cpu: FOUR_LEVEL_MAX },
    // Four-level paging, as pikku's: with LA57 (which `-cpu max` has) Linux's TASK_SIZE is 2^56.
    Case { program: "hostile", args: &[], cpu: FOUR_LEVEL_MAX },
];

impl Case {
    /// `pkeys_ring3.max`, `faults-priv.max`, …
    pub fn name(&self) -> String {
        let mut n = self.program.to_string();
        for a in self.args {
            n.push('-');
            n.push_str(a);
        }
        format!("{n}.{}", self.cpu)
    }

    /// Its golden file.
    pub fn golden(&self) -> PathBuf {
        crate::repo_root().join("tests").join("golden").join(format!("{}.txt", self.name()))
    }

    /// The program as /init.
    pub fn init(&self, user_dir: &Path) -> Init {
        Init { program: user_dir.join(self.program), args: self.args.iter().map(|a| a.to_string()).collect(), files: Vec::new() }
    }
}

/// Output plus the closing line.
pub fn transcript(program_output: &str, end: Option<InitEnd>) -> String {
    let mut t = program_output.to_string();
    if !t.is_empty() && !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(&match end {
        Some(InitEnd::Exited(c)) => format!("== exit status {c}\n"),
        Some(InitEnd::Signaled(s)) => format!("== killed by signal {s}\n"),
        None => "== powered off\n".to_string(),
    });
    t
}

/// The case's transcript on pikku.
pub fn run_pikku(kernel: &Path, case: &Case, user_dir: &Path) -> Result<String, Error> {
    run_pikku_with_console(kernel, case, user_dir).map(|(t, _)| t)
}

/// The case's transcript on pikku, and the whole console (for checks of the kernel's lines).
pub fn run_pikku_with_console(kernel: &Path, case: &Case, user_dir: &Path) -> Result<(String, String), Error> {
    let qemu = crate::qemu::Qemu { cpu: case.cpu.into(), ..Default::default() };
    let run = crate::run::boot(kernel, &qemu, bootproto::options::LogLevel::Info, Some(&case.init(user_dir)), true)?;
    if run.outcome != bootproto::exit::Outcome::Kernel(bootproto::exit::ExitCode::Success) {
        return Err(format!("pikku did not power off normally ({:?}):\n{}", run.outcome, run.output));
    }
    let program: String = run
        .output
        .split_inclusive('\n')
        .skip_while(|l| !l.contains("] pikku booting"))
        .filter(|l| !l.starts_with('['))
        .collect();
    Ok((transcript(&program, run.init), run.output))
}

/// The case's transcript on Linux.
pub fn run_linux(case: &Case, user_dir: &Path) -> Result<String, Error> {
    let (program, _, end) = crate::linux::run(&case.init(user_dir), case.cpu)?;
    Ok(transcript(&program, end))
}

/// `None` if equal, else (1-based line, expected line, got line).
pub fn first_difference(expected: &str, got: &str) -> Option<(usize, String, String)> {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    (0..e.len().max(g.len())).find(|&i| e.get(i) != g.get(i)).map(|i| {
        (i + 1, e.get(i).unwrap_or(&"(end)").to_string(), g.get(i).unwrap_or(&"(end)").to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_and_differences() {
        assert_eq!(transcript("a\nb", Some(InitEnd::Exited(7))), "a\nb\n== exit status 7\n");
        assert_eq!(transcript("", None), "== powered off\n");
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(first_difference("a\nb\n", "a\nc\n"), Some((2, "b".into(), "c".into())));
        assert_eq!(first_difference("a\n", "a\nextra\n"), Some((2, "(end)".into(), "extra".into())));
        let names: Vec<String> = CASES.iter().map(Case::name).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "case names are unique");
    }
}
