//! `make selftest`: Linux's own protection-key selftests, unmodified, on pikku.
//!
//! * **The source**: Debian's `linux-source-6.12` (6.12.117-1~deb12u1, the kernel the goldens
//!   come from), fetched with `apt-get download` into `target/selftest/` — nothing installed,
//!   no Linux source in the repository (it is GPL) — and only the seven files the two tests
//!   need extracted from its tarball. If that version has left the archive, the newest
//!   `linux-source-6.12` is taken, with a message saying so.
//! * **The binaries**: `protection_keys_64` (glibc and musl) and `pkey_sighandler_tests_64`
//!   (glibc; 6.12's does not build with musl, which lacks `__u64` and the pkey wrappers), built
//!   with the selftest Makefile's x86-64 flags (`-O2 -U_FORTIFY_SOURCE -no-pie -m64 -mxsave`,
//!   its `LDLIBS`) plus `-static`. Built once; rebuilt only when a source file is newer.
//! * **The runs**: each binary under `user/musl/selftest_init.c` as `/init`, as root or after
//!   dropping to uid/gid 1000; init reaps every descendant (test 18 hands the run down to a
//!   grandchild 22 times) and exits with the first failing status. A [`Config`] is one such
//!   run on one CPU model.
//! * **The verdict**: distinct `(test, iteration)` PASSED pairs (a libc that finds stdout is
//!   not a terminal buffers it, and forks then print lines twice), whether the last
//!   descendant said `done (all tests OK)`, and how init ended — one summary line per run,
//!   the [`Summary`]. Linux's summaries are golden files (`tests/golden/selftest-*.txt`),
//!   recorded by `make conformance` from the same binaries under the same init on Debian's
//!   kernel; `make test` and `make selftest` compare pikku's with them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::{Init, InitEnd};
use crate::Error;

/// The source package and the version the goldens come from.
pub const PACKAGE: &str = "linux-source-6.12";
pub const VERSION: &str = "6.12.117-1~deb12u1";

/// The selftest directory inside the source tree.
const MM: &str = "tools/testing/selftests/mm";
/// The files the two tests are built from (the Makefile also links `vm_util.c`, which neither
/// test calls; both build alone).
const SOURCES: &[&str] = &[
    "tools/testing/selftests/mm/protection_keys.c",
    "tools/testing/selftests/mm/pkey_sighandler_tests.c",
    "tools/testing/selftests/mm/pkey-helpers.h",
    "tools/testing/selftests/mm/pkey-x86.h",
    "tools/testing/selftests/mm/pkey-powerpc.h",
    "tools/testing/selftests/mm/pkey-arm64.h",
    "tools/testing/selftests/kselftest.h",
];

/// The selftest Makefile's flags for `$(BINARIES_64)` (`CFLAGS`, `-U_FORTIFY_SOURCE`,
/// `-no-pie`, `-m64 -mxsave`), plus `-static`.
const CFLAGS: &[&str] = &["-Wall", "-O2", "-U_FORTIFY_SOURCE", "-no-pie", "-m64", "-mxsave", "-static"];
/// Its `LDLIBS` for them.
const LDLIBS: &[&str] = &["-lrt", "-lpthread", "-lm", "-lrt", "-ldl"];

/// Checks a protection_keys run makes: 21 tests × 22 iterations on x86-64.
pub const PROTECTION_KEYS_CHECKS: u32 = 462;
/// Tests in pkey_sighandler_tests.
pub const SIGHANDLER_CHECKS: u32 = 5;

fn dir() -> PathBuf {
    let d = crate::repo_root().join("target").join("selftest");
    std::fs::create_dir_all(&d).expect("cannot create target/selftest");
    d
}

fn src_dir() -> PathBuf {
    dir().join("src")
}

/// Downloads the source package and extracts the seven selftest files into `target/selftest/src/`, once.
pub fn sources() -> Result<PathBuf, Error> {
    let src = src_dir();
    if SOURCES.iter().all(|f| src.join(f).exists()) {
        return Ok(src);
    }
    let deb = match crate::linux::apt_download(&dir(), &format!("{PACKAGE}={VERSION}")) {
        Ok(deb) => deb,
        Err(_) => {
            eprintln!("pikku: {PACKAGE} {VERSION} has left the archive; using the newest {PACKAGE} instead (the goldens may need `make conformance`)");
            crate::linux::apt_download(&dir(), PACKAGE).map_err(|e| format!("{e} (no network, or no Debian archive in the apt sources?)"))?
        }
    };
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    // The .deb holds usr/src/linux-source-6.12.tar.xz; take just our files out of that.
    let members: Vec<String> = SOURCES.iter().map(|f| format!("linux-source-6.12/{f}")).collect();
    let status = Command::new("sh")
        .arg("-c")
        .arg("deb=$1 src=$2; shift 2; dpkg-deb --fsys-tarfile \"$deb\" | tar -xO ./usr/src/linux-source-6.12.tar.xz | tar -xJ -C \"$src\" --strip-components=1 \"$@\"")
        .arg("sh")
        .arg(&deb)
        .arg(&src)
        .args(&members)
        .status()
        .map_err(|e| format!("cannot run dpkg-deb/tar: {e}"))?;
    let _ = std::fs::remove_file(&deb);
    if !status.success() || !SOURCES.iter().all(|f| src.join(f).exists()) {
        return Err(format!("could not extract the selftest sources from {}", deb.display()));
    }
    Ok(src)
}

/// Which C library a binary is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Musl,
}

/// The two tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    ProtectionKeys,
    SighandlerTests,
}

impl Test {
    fn source(self) -> &'static str {
        match self {
            Test::ProtectionKeys => "protection_keys.c",
            Test::SighandlerTests => "pkey_sighandler_tests.c",
        }
    }

    /// The Makefile's name for the 64-bit binary.
    pub fn binary(self) -> &'static str {
        match self {
            Test::ProtectionKeys => "protection_keys_64",
            Test::SighandlerTests => "pkey_sighandler_tests_64",
        }
    }

    /// How many checks one run makes.
    pub fn checks(self) -> u32 {
        match self {
            Test::ProtectionKeys => PROTECTION_KEYS_CHECKS,
            Test::SighandlerTests => SIGHANDLER_CHECKS,
        }
    }
}

/// musl's include path has no kernel headers; `protection_keys.c` includes `<linux/elf.h>` and
/// `<linux/futex.h>`. These are the system's (Debian's `linux-libc-dev`), as musl's own
/// Debian packaging suggests: only `linux/`, `asm/` and `asm-generic/`, nothing of glibc.
fn musl_kernel_headers() -> Result<PathBuf, Error> {
    let d = dir().join("musl-include");
    for (name, target) in [("linux", "/usr/include/linux"), ("asm", "/usr/include/x86_64-linux-gnu/asm"), ("asm-generic", "/usr/include/asm-generic")] {
        let link = d.join(name);
        if link.exists() {
            continue;
        }
        if !Path::new(target).exists() {
            return Err(format!("{target} not found: install linux-libc-dev"));
        }
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(target, &link).map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    Ok(d)
}

/// Builds `test` with `libc` (once: again only when a source is newer); its path.
pub fn binary(test: Test, libc: Libc) -> Result<PathBuf, Error> {
    let src = sources()?;
    let mm = src.join(MM);
    let out = dir().join(format!("{}.{}", test.binary(), match libc {
        Libc::Glibc => "glibc",
        Libc::Musl => "musl",
    }));
    let newest_source = SOURCES.iter().filter_map(|f| std::fs::metadata(src.join(f)).and_then(|m| m.modified()).ok()).max();
    if let (Ok(built), Some(newest)) = (std::fs::metadata(&out).and_then(|m| m.modified()), newest_source) {
        if built >= newest {
            return Ok(out);
        }
    }
    let mut cc = match libc {
        Libc::Glibc => Command::new("gcc"),
        Libc::Musl => {
            let mut c = Command::new("musl-gcc");
            c.arg("-isystem").arg(musl_kernel_headers()?);
            c
        }
    };
    let result = cc.args(CFLAGS).arg(test.source()).args(LDLIBS).arg("-o").arg(&out).current_dir(&mm).output().map_err(|e| format!("cannot run the C compiler: {e}"))?;
    if !result.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(format!("building {} with {libc:?} failed:\n{}", test.binary(), String::from_utf8_lossy(&result.stderr)));
    }
    Ok(out)
}

/// One run: a test, built with a libc, as root or uid 1000, on a CPU model.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub test: Test,
    pub libc: Libc,
    pub root: bool,
    pub cpu: &'static str,
    /// CPUs (QEMU `-smp`): 1, or several for the run that repeats one configuration with its
    /// threads and forks really running at once.
    pub smp: u32,
}

/// Every run `make selftest` and `make test` make: protection_keys with each libc, as root and
/// as uid 1000; the sighandler tests; the "no pkeys" path under `-cpu qemu64`; and one
/// configuration again on four CPUs.
pub const CONFIGS: &[Config] = &[
    Config { test: Test::ProtectionKeys, libc: Libc::Glibc, root: false, cpu: "max", smp: 1 },
    Config { test: Test::ProtectionKeys, libc: Libc::Musl, root: false, cpu: "max", smp: 1 },
    Config { test: Test::ProtectionKeys, libc: Libc::Glibc, root: true, cpu: "max", smp: 1 },
    Config { test: Test::ProtectionKeys, libc: Libc::Musl, root: true, cpu: "max", smp: 1 },
    Config { test: Test::SighandlerTests, libc: Libc::Glibc, root: true, cpu: "max", smp: 1 },
    Config { test: Test::ProtectionKeys, libc: Libc::Glibc, root: false, cpu: "qemu64", smp: 1 },
    Config { test: Test::ProtectionKeys, libc: Libc::Glibc, root: false, cpu: "max", smp: crate::conformance::SMP },
];

impl Config {
    /// `protection_keys_64-glibc-uid1000.max`, …
    pub fn name(&self) -> String {
        let libc = match self.libc {
            Libc::Glibc => "glibc",
            Libc::Musl => "musl",
        };
        let smp = if self.smp > 1 { format!(".smp{}", self.smp) } else { String::new() };
        format!("{}-{libc}-{}.{}{smp}", self.test.binary(), if self.root { "root" } else { "uid1000" }, self.cpu)
    }

    /// Linux's summary for it.
    pub fn golden(&self) -> PathBuf {
        crate::repo_root().join("tests").join("golden").join(format!("selftest-{}.txt", self.name()))
    }

    /// The init and files for this run.
    pub fn init(&self, user_dir: &Path) -> Result<Init, Error> {
        let binary = binary(self.test, self.libc)?;
        let dest = format!("/{}", self.test.binary());
        Ok(Init {
            program: user_dir.join("selftest_init"),
            args: vec![if self.root { "root" } else { "user" }.to_string(), dest.clone()],
            files: vec![(binary, dest)],
            // The root run fills the pool itself, through /proc/sys/vm/nr_hugepages.
            hugepages: 0,
            pks_off: false,
        })
    }
}

/// What one run showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Distinct (test, iteration) PASSED pairs, or distinct `ok N` lines of the sighandler
    /// tests.
    pub passed: u32,
    /// Out of.
    pub checks: u32,
    /// The last descendant said `done (all tests OK)` (protection_keys), or the TAP totals
    /// said no failure (sighandler tests).
    pub all_ok: bool,
    /// How init ended: the first failing status of a descendant, or 0.
    pub end: Option<InitEnd>,
    /// protection_keys' `has pkeys: N` line (1 with PKU and OSPKE, 0 on the no-pkeys path).
    pub has_pkeys: Option<String>,
}

impl Summary {
    /// Reads a run's program output.
    pub fn parse(test: Test, output: &str, end: Option<InitEnd>) -> Summary {
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        match test {
            Test::ProtectionKeys => {
                // "test %2d PASSED (iteration %d)", found anywhere (a line may be cut into by
                // another process's output).
                for (at, _) in output.match_indices("test ") {
                    if let Some(pair) = parse_passed(&output[at + 5..]) {
                        pairs.push(pair);
                    }
                }
            }
            Test::SighandlerTests => {
                // kselftest's TAP: "ok N name".
                for line in output.lines() {
                    if let Some(n) = line.strip_prefix("ok ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()) {
                        pairs.push((n, 0));
                    }
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        let all_ok = match test {
            Test::ProtectionKeys => output.contains("done (all tests OK)"),
            Test::SighandlerTests => output.contains("# Totals: pass:5 fail:0"),
        };
        let has_pkeys = output.lines().find_map(|l| l.strip_prefix("has pkeys: ")).map(|v| v.trim().to_string());
        Summary { passed: pairs.len() as u32, checks: test.checks(), all_ok, end, has_pkeys }
    }

    /// The golden file's text: one line.
    pub fn line(&self) -> String {
        let end = match self.end {
            Some(InitEnd::Exited(c)) => format!("init exited with status {c}"),
            Some(InitEnd::Signaled(s)) => format!("init killed by signal {s}"),
            None => "init did not end".to_string(),
        };
        let pkeys = self.has_pkeys.as_ref().map_or(String::new(), |v| format!("has pkeys: {v}; "));
        format!("{pkeys}{}/{} distinct PASSED, {}, {end}\n", self.passed, self.checks, if self.all_ok { "all tests OK" } else { "not all tests OK" })
    }
}

/// `" 3 PASSED (iteration 7)"` after "test" → (3, 7).
fn parse_passed(rest: &str) -> Option<(u32, u32)> {
    let rest = rest.trim_start();
    let (test, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("PASSED (iteration ")?;
    let (iteration, _) = rest.split_once(')')?;
    Some((test.parse().ok()?, iteration.parse().ok()?))
}

/// A run on pikku: its summary, the whole console, and how long it took.
pub fn run_pikku(kernel: &Path, config: &Config, user_dir: &Path, limit: Duration) -> PikkuRun {
    let init = config.init(user_dir)?;
    let qemu = crate::qemu::Qemu { cpu: config.cpu.into(), smp: config.smp, ..Default::default() };
    let watch = crate::run::Watch { heartbeat: None, limit: Some(limit), echo: false, keep: true };
    let started = Instant::now();
    let (run, stopped) = crate::run::boot_watched(kernel, &qemu, bootproto::options::LogLevel::Info, Some(&init), &watch)?;
    let took = started.elapsed();
    let program: String = run.output.split_inclusive('\n').skip_while(|l| !l.contains("] pikku booting")).filter(|l| !l.starts_with('[')).collect();
    let mut console = run.output.clone();
    if stopped.is_some() {
        console.push_str(&format!("\n(stopped after {} s)\n", limit.as_secs()));
    }
    Ok((Summary::parse(config.test, &program, run.init), console, took))
}

/// A run on Linux (the reference runner): its summary and the program's output.
pub fn run_linux(config: &Config, user_dir: &Path) -> Result<(Summary, String), Error> {
    let (program, _, end) = crate::linux::run(&config.init(user_dir)?, &crate::qemu::Qemu { cpu: config.cpu.into(), smp: config.smp, ..Default::default() })?;
    Ok((Summary::parse(config.test, &program, end), program))
}

/// One run on pikku: its summary, the whole console, how long it took.
pub type PikkuRun = Result<(Summary, String, Duration), Error>;

/// How long one run on pikku may take before it is stopped (a hang is a failure, not a wait).
pub const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs `configs` on pikku, two QEMUs at a time (the machine has two cores), building every
/// binary first; the results in `configs`' order.
pub fn run_all_pikku(kernel: &Path, user_dir: &Path, configs: &[Config]) -> Vec<PikkuRun> {
    for c in configs {
        if let Err(e) = binary(c.test, c.libc) {
            return configs.iter().map(|_| Err(e.clone())).collect();
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<PikkuRun>>> = configs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(config) = configs.get(i) else { break };
                *results[i].lock().unwrap() = Some(run_pikku(kernel, config, user_dir, RUN_LIMIT));
            });
        }
    });
    results.into_iter().map(|r| r.into_inner().unwrap().expect("every run was made")).collect()
}

/// The kernel's unknown-system-call lines in a console.
pub fn unknown_syscalls(console: &str) -> Vec<&str> {
    console.lines().filter(|l| l.starts_with('[') && l.contains("unknown system call")).collect()
}

/// Compares a pikku run with Linux's golden summary: `Ok` with the report line, or `Err`.
pub fn judge(config: &Config, pikku: &Summary, console: &str) -> Result<String, String> {
    let golden = std::fs::read_to_string(config.golden())
        .map_err(|e| format!("{}: {e} (run `make conformance ONLY=selftest` to record Linux's figures)", config.golden().display()))?;
    let ours = pikku.line();
    let unknown = unknown_syscalls(console);
    let report = format!("{}: {}", config.name(), ours.trim_end());
    if ours != golden || !unknown.is_empty() {
        let mut why = format!("{report}\n  Linux: {}", golden.trim_end());
        for l in unknown {
            why.push_str(&format!("\n  {l}"));
        }
        let tail: Vec<&str> = console.lines().filter(|l| !l.contains("PASSED (iteration")).collect();
        let tail = &tail[tail.len().saturating_sub(25)..];
        why.push_str(&format!("\n--- the console's last lines, PASSED lines left out\n{}", tail.join("\n")));
        return Err(why);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_pairs_whatever_the_duplicates() {
        let out = "has pkeys: 1\ntest  0 PASSED (iteration 1)\ntest  0 PASSED (iteration 1)\nxtest 13 PASSED (iteration 22)\ntest 1 FAILED\ndone (all tests OK)\n";
        let s = Summary::parse(Test::ProtectionKeys, out, Some(InitEnd::Exited(0)));
        assert_eq!((s.passed, s.all_ok), (2, true));
        assert_eq!(s.line(), "has pkeys: 1; 2/462 distinct PASSED, all tests OK, init exited with status 0\n");
        let s = Summary::parse(Test::ProtectionKeys, "test 14 PASSED (iteration", Some(InitEnd::Exited(113)));
        assert_eq!((s.passed, s.all_ok), (0, false));
        let tap = "TAP version 13\n1..5\nok 1 a\nok 2 b\nnot ok 3 c\nok 2 b\n# Totals: pass:2 fail:1\n";
        let s = Summary::parse(Test::SighandlerTests, tap, Some(InitEnd::Exited(1)));
        assert_eq!((s.passed, s.checks, s.all_ok), (2, 5, false));
    }

    #[test]
    fn config_names_are_unique() {
        let mut names: Vec<String> = CONFIGS.iter().map(Config::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONFIGS.len());
    }
}
