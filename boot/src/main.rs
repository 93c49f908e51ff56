//! `pikku` — build, boot and test pikku from the host. `make run` and `make test` call it.
//!
//! ```text
//! pikku run  [--boot bios|uefi] [--cpu MODEL] [--smp N] [--numa N] [--kvm] [--release] [--log quiet|info|debug] [--qemu-args "…"]
//!            [--init PROGRAM [--files "HOST[:DEST] …"] [-- ARG …]]
//! pikku test [--boot bios|uefi] [--cpu MODEL] [--smp N] [--numa N] [--kvm] [--log …] [--qemu-args "…"] [--timeout SECS]
//! pikku conformance [NAME-PREFIX]   (only the cases whose name starts with it)
//! pikku fuzz [--seed N] [--calls N] [--cpu MODEL] [--verbose]   (one fuzz campaign, one summary line)
//! pikku bench                        (writes BENCHMARKS.md and docs/bench.svg)
//! pikku bench-pikku                  (pikku's figures alone, one run; writes nothing)
//! pikku trace                        (writes docs/trace.md: where the instructions go)
//! ```
//!
//! `run` boots the kernel with its serial console on this terminal. With `--init`, the program runs
//! as `/init` (`argv[0]` = "/init", then every word after `--`, each exactly as the shell passed it
//! — `pikku run --init prog -- "one arg" two` gives two arguments; extra `--files` go into the
//! ramdisk at DEST, default `/` + their name) and `run` exits with its status — N for `exit(N)`,
//! 128 + N for death by signal N. Without `--init` it exits 0 when the kernel powered off normally.
//! Anything else (panic, triple fault, QEMU error) is 1 with a message. `test` runs the in-kernel
//! suite on one configuration and ends with the count line.

use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use boot::build::{self, Kernel};
use boot::image::Firmware;
use boot::ktest::{Event, Suite};
use boot::qemu::{self, Qemu};
use bootproto::exit::{ExitCode, Outcome};
use bootproto::options::LogLevel;

struct Args {
    command: String,
    /// `conformance NAME-PREFIX`
    only: Option<String>,
    init: Option<boot::run::Init>,
    qemu: Qemu,
    log: LogLevel,
    timeout: Duration,
    /// `run --release`: boot the optimized kernel (the one `bench` measures).
    release: bool,
    /// `fuzz --seed N --calls N --verbose`
    seed: u64,
    calls: u64,
    verbose: bool,
}

fn usage() -> String {
    "usage: pikku run|test [--boot bios|uefi] [--cpu MODEL] [--smp N] [--numa N] [--kvm] [--release] [--log quiet|info|debug] [--qemu-args \"…\"] [--timeout SECS]\n       pikku run … --init PROGRAM [--files \"HOST[:DEST] …\"] [-- ARG …]".into()
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or_else(usage)?;
    let mut args = Args { command, only: None, init: None, qemu: Qemu::default(), log: LogLevel::Info, timeout: Duration::from_secs(60), release: false, seed: 1, calls: 1_000_000, verbose: false };
    let (mut program_args, mut files) = (Vec::new(), Vec::new());
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        match flag.as_str() {
            // The program's own arguments: every word after `--`, as the shell split them.
            "--" => program_args.extend(it.by_ref()),
            "--boot" => {
                let v = value()?;
                args.qemu.firmware = Firmware::parse(&v).ok_or_else(|| format!("--boot {v}: expected bios or uefi"))?;
            }
            "--cpu" => args.qemu.cpu = value()?,
            "--smp" => {
                let v = value()?;
                args.qemu.smp = v.parse().ok().filter(|n| (1..=16).contains(n)).ok_or_else(|| format!("--smp {v}: expected 1 to 16"))?;
            }
            "--numa" => {
                let v = value()?;
                args.qemu.numa = v.parse().ok().filter(|n| [1, 2, 4].contains(n)).ok_or_else(|| format!("--numa {v}: expected 1, 2 or 4"))?;
            }
            "--kvm" => args.qemu.kvm = true,
            "--release" => args.release = true,
            "--log" => {
                let v = value()?;
                args.log = LogLevel::parse(&v).ok_or_else(|| format!("--log {v}: expected quiet, info or debug"))?;
            }
            "--qemu-args" => args.qemu.extra_args = value()?.split_whitespace().map(String::from).collect(),
            "--init" => {
                let path = value()?;
                if !path.is_empty() {
                    args.init = Some(boot::run::Init { program: path.into(), ..Default::default() });
                }
            }
            "--files" => {
                for spec in value()?.split_whitespace() {
                    let (host, dest) = match spec.split_once(':') {
                        Some((h, d)) => (h.to_string(), d.to_string()),
                        None => {
                            let name = std::path::Path::new(spec).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                            (spec.to_string(), format!("/{name}"))
                        }
                    };
                    files.push((host.into(), dest));
                }
            }
            "--seed" => args.seed = value()?.parse().map_err(|_| "--seed: expected a number".to_string())?,
            "--calls" => args.calls = value()?.parse().map_err(|_| "--calls: expected a number".to_string())?,
            "--verbose" => args.verbose = true,
            "--timeout" => {
                let v = value()?;
                args.timeout = Duration::from_secs(v.parse().map_err(|_| format!("--timeout {v}: expected seconds"))?);
            }
            other if args.command == "conformance" && args.only.is_none() && !other.starts_with('-') => args.only = Some(other.to_string()),
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    if let Some(init) = &mut args.init {
        init.args = program_args;
        init.files = files;
    } else if !program_args.is_empty() || !files.is_empty() {
        return Err("program arguments (after --) and --files need --init".into());
    }
    if args.qemu.kvm && !qemu::kvm_available() {
        return Err("KVM=1, but /dev/kvm is not usable here".into());
    }
    Ok(args)
}

fn run(args: &Args) -> Result<i32, String> {
    qemu::check_installed(args.qemu.firmware)?;
    let kernel = build::kernel(if args.release { Kernel::Release } else { Kernel::Run })?;
    // Without --init: pikku's demo (user/musl/demo.c) — or, on a machine with NUMA nodes, the
    // placement demo (user/musl/numa_demo.c).
    let demo;
    let init = match &args.init {
        Some(init) => init,
        None => {
            let program = if args.qemu.numa > 0 { "numa_demo" } else { "demo" };
            demo = boot::run::Init { program: build::user_programs()?.join(program), ..Default::default() };
            &demo
        }
    };
    let result = boot::run::boot(&kernel, &args.qemu, args.log, Some(init), false)?;
    match result.outcome {
        Outcome::Kernel(ExitCode::Success) => Ok(result.init.map_or(0, |end| end.shell_status())),
        Outcome::Kernel(ExitCode::Failed) => Err("the kernel reported failure".into()),
        Outcome::Kernel(ExitCode::Panic) => Err("the kernel panicked (report above)".into()),
        Outcome::NoExitDevice => Err("QEMU ended without the kernel's exit code: a triple fault (-no-reboot)".into()),
        Outcome::Unknown(code) => Err(format!("QEMU exited with status {code}")),
    }
}

fn test(args: &Args) -> Result<i32, String> {
    let kernel = build::kernel(Kernel::Test)?;
    let suite = Suite { qemu: args.qemu.clone(), timeout: args.timeout, log: args.log, harness_selftest: false };
    let report = suite.run(&kernel, |event| print_event(&event))?;
    let c = report.counts();
    println!("{} passed, {} failed, {} skipped ({} boots, {:.1} s)", c.passed, c.failed, c.skipped, report.boots, report.elapsed.as_secs_f64());
    Ok(if c.failed == 0 { 0 } else { 1 })
}

/// `make conformance`: every case on Linux (refreshing the golden files) and on pikku.
fn conformance(only: Option<&str>) -> Result<i32, String> {
    use boot::conformance::{first_difference, run_linux, run_pikku, CASES};
    let user = build::user_programs()?;
    let kernel = build::kernel(Kernel::Run)?;
    let (_, package) = boot::linux::kernel()?;
    let started = std::time::Instant::now();
    println!("pikku against Linux ({package}), same QEMU machine (-cpu per case, -m 512M)");
    let mut changed = Vec::new();
    let mut rows = Vec::new();
    for case in CASES.iter().filter(|c| only.is_none_or(|p| c.name().starts_with(p))) {
        let linux = run_linux(case, &user)?;
        let golden = case.golden();
        let old = std::fs::read_to_string(&golden).ok();
        if old.as_deref() != Some(linux.as_str()) {
            if let Some(old) = &old {
                changed.push((case.name(), first_difference(old, &linux)));
            }
            std::fs::create_dir_all(golden.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::write(&golden, &linux).map_err(|e| e.to_string())?;
        }
        let pikku = run_pikku(&kernel, case, &user)?;
        let diff = first_difference(&linux, &pikku);
        println!(
            "{:<32} {:>4} lines  {}",
            case.name(),
            linux.lines().count(),
            match &diff {
                None => "identical".to_string(),
                Some((line, l, p)) => format!("DIFFERENT at line {line}: linux {l:?} / pikku {p:?}"),
            }
        );
        rows.push(diff.is_none());
    }
    // Linux's pkey selftests: the same binaries under the same init; the golden file is the
    // run's summary line (counts, verdict, init's end).
    for config in boot::selftest::CONFIGS.iter().filter(|c| only.is_none_or(|p| format!("selftest-{}", c.name()).starts_with(p))) {
        let (linux, _) = boot::selftest::run_linux(config, &user)?;
        let linux = linux.line();
        let golden = config.golden();
        let old = std::fs::read_to_string(&golden).ok();
        if old.as_deref() != Some(linux.as_str()) {
            if let Some(old) = &old {
                changed.push((format!("selftest-{}", config.name()), first_difference(old, &linux)));
            }
            std::fs::write(&golden, &linux).map_err(|e| e.to_string())?;
        }
        let (pikku, _, _) = boot::selftest::run_pikku(&kernel, config, &user, boot::selftest::RUN_LIMIT)?;
        let pikku = pikku.line();
        let same = pikku == linux;
        println!("{:<48} linux {}  {}", format!("selftest-{}", config.name()), linux.trim_end(), if same { "identical".to_string() } else { format!("DIFFERENT: pikku {}", pikku.trim_end()) });
        rows.push(same);
    }
    let same = rows.iter().filter(|&&r| r).count();
    println!("{same} of {} identical ({:.0} s)", rows.len(), started.elapsed().as_secs_f64());
    if !changed.is_empty() {
        // Either a program under user/ changed (then this is expected: commit the new golden
        // file) or Linux itself answers differently now (then find out why before committing).
        eprintln!("\n*** LINUX'S OUTPUT CHANGED: the golden files below were rewritten from this boot of Linux;");
        eprintln!("*** expected if the program changed, otherwise Linux itself did — review `git diff tests/golden` ***");
        for (name, diff) in &changed {
            eprintln!("  {name}: {diff:?}");
        }
        return Ok(2);
    }
    Ok(if same == rows.len() { 0 } else { 1 })
}

/// `make selftest`: Linux's pkey selftests on pikku, each run compared with Linux's figures.
fn selftest() -> Result<i32, String> {
    use boot::selftest::{judge, run_all_pikku, CONFIGS};
    let user = build::user_programs()?;
    let kernel = build::kernel(Kernel::Run)?;
    let started = std::time::Instant::now();
    let mut failed = 0;
    for (config, result) in CONFIGS.iter().zip(run_all_pikku(&kernel, &user, CONFIGS)) {
        let verdict = result.and_then(|(summary, console, took)| {
            judge(config, &summary, &console).map(|line| format!("{line} ({:.0} s)", took.as_secs_f64()))
        });
        match verdict {
            Ok(line) => println!("{line}  same as Linux"),
            Err(why) => {
                failed += 1;
                println!("{why}");
            }
        }
    }
    println!("{} of {} runs as on Linux ({:.0} s)", CONFIGS.len() - failed, CONFIGS.len(), started.elapsed().as_secs_f64());
    Ok(if failed == 0 { 0 } else { 1 })
}

/// `make fuzz`: one campaign on the debug kernel, its console echoed, then the summary line.
fn fuzz(args: &Args) -> Result<i32, String> {
    qemu::check_installed(args.qemu.firmware)?;
    let kernel = build::kernel(Kernel::Run)?;
    let program = build::user_programs()?.join("fuzz");
    let c = boot::fuzz::campaign(&kernel, &program, &args.qemu.cpu, args.seed, args.calls, args.verbose, true)?;
    println!("{}", c.summary());
    Ok(if c.failure.is_none() { 0 } else { 1 })
}

/// Prints a suite event the way `make test` shows it.
pub fn print_event(event: &Event) {
    for line in event.display_lines("", true) {
        println!("{line}");
    }
}

fn main() -> ProcessExit {
    let result = parse_args().and_then(|args| match args.command.as_str() {
        "run" => run(&args),
        "test" => test(&args),
        "conformance" => conformance(args.only.as_deref()),
        "fuzz" => fuzz(&args),
        "selftest" => selftest(),
        "bench" => boot::bench::run().map(|md| {
            println!("{md}");
            0
        }),
        "bench-pikku" => boot::bench::run_pikku_only().map(|figures| {
            print!("{figures}");
            0
        }),
        "trace" => boot::trace::run().map(|md| {
            println!("{md}");
            0
        }),
        other => Err(format!("unknown command {other}\n{}", usage())),
    });
    match result {
        Ok(code) => ProcessExit::from(code.clamp(0, 255) as u8),
        Err(message) => {
            eprintln!("pikku: {message}");
            ProcessExit::FAILURE
        }
    }
}
