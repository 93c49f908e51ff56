//! `pikku` — build, boot and test pikku from the host. `make run` and `make test` call it.
//!
//! ```text
//! pikku run  [--boot bios|uefi] [--cpu MODEL] [--kvm] [--log quiet|info|debug] [--qemu-args "…"]
//! pikku test [--boot bios|uefi] [--cpu MODEL] [--kvm] [--log …] [--qemu-args "…"] [--timeout SECS]
//! ```
//!
//! `run` boots the kernel with its serial console on this terminal and exits with 0 when the
//! kernel powered off normally, 1 otherwise (panic, triple fault, QEMU error). `test` runs the
//! in-kernel suite on one configuration and ends with the count line.

use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use boot::build::{self, Kernel};
use boot::image::Firmware;
use boot::ktest::{Event, Status, Suite};
use boot::qemu::{self, Qemu};
use bootproto::exit::{ExitCode, Outcome};
use bootproto::options::LogLevel;

struct Args {
    command: String,
    qemu: Qemu,
    log: LogLevel,
    timeout: Duration,
}

fn usage() -> String {
    "usage: pikku run|test [--boot bios|uefi] [--cpu MODEL] [--kvm] [--log quiet|info|debug] [--qemu-args \"…\"] [--timeout SECS]".into()
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or_else(usage)?;
    let mut args = Args { command, qemu: Qemu::default(), log: LogLevel::Info, timeout: Duration::from_secs(60) };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        match flag.as_str() {
            "--boot" => {
                let v = value()?;
                args.qemu.firmware = Firmware::parse(&v).ok_or_else(|| format!("--boot {v}: expected bios or uefi"))?;
            }
            "--cpu" => args.qemu.cpu = value()?,
            "--kvm" => args.qemu.kvm = true,
            "--log" => {
                let v = value()?;
                args.log = LogLevel::parse(&v).ok_or_else(|| format!("--log {v}: expected quiet, info or debug"))?;
            }
            "--qemu-args" => args.qemu.extra_args = value()?.split_whitespace().map(String::from).collect(),
            "--timeout" => {
                let v = value()?;
                args.timeout = Duration::from_secs(v.parse().map_err(|_| format!("--timeout {v}: expected seconds"))?);
            }
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    if args.qemu.kvm && !qemu::kvm_available() {
        return Err("KVM=1, but /dev/kvm is not usable here".into());
    }
    Ok(args)
}

fn run(args: &Args) -> Result<bool, String> {
    qemu::check_installed(args.qemu.firmware)?;
    let kernel = build::kernel(Kernel::Run)?;
    let (outcome, _) = boot::run::boot(&kernel, &args.qemu, args.log, false)?;
    match outcome {
        Outcome::Kernel(ExitCode::Success) => Ok(true),
        Outcome::Kernel(ExitCode::Failed) => Err("the kernel reported failure".into()),
        Outcome::Kernel(ExitCode::Panic) => Err("the kernel panicked (report above)".into()),
        Outcome::NoExitDevice => Err("QEMU ended without the kernel's exit code: a triple fault (-no-reboot)".into()),
        Outcome::Unknown(code) => Err(format!("QEMU exited with status {code}")),
    }
}

fn test(args: &Args) -> Result<bool, String> {
    let kernel = build::kernel(Kernel::Test)?;
    let suite = Suite { qemu: args.qemu.clone(), timeout: args.timeout, log: args.log, harness_selftest: false };
    let report = suite.run(&kernel, |event| print_event(&event))?;
    let c = report.counts();
    println!("{} passed, {} failed, {} skipped ({} boots, {:.1} s)", c.passed, c.failed, c.skipped, report.boots, report.elapsed.as_secs_f64());
    Ok(c.failed == 0)
}

/// Prints a suite event the way `make test` shows it.
pub fn print_event(event: &Event) {
    match event {
        Event::Result(r) => match &r.status {
            Status::Passed => println!("test {} ... ok", r.name),
            Status::Skipped(why) => println!("test {} ... skipped ({why})", r.name),
            Status::Failed(msg) => {
                println!("test {} ... FAILED", r.name);
                for line in msg.lines() {
                    println!("    {line}");
                }
            }
        },
        Event::Boot { number, after: Some(name) } => println!("[runner] boot {number}: resuming after {name}"),
        Event::Boot { .. } => {}
        Event::Line(line) => {
            if line.contains(" error]") || line.contains(" warn]") {
                println!("{line}");
            }
        }
    }
}

fn main() -> ProcessExit {
    let result = parse_args().and_then(|args| match args.command.as_str() {
        "run" => run(&args),
        "test" => test(&args),
        other => Err(format!("unknown command {other}\n{}", usage())),
    });
    match result {
        Ok(true) => ProcessExit::SUCCESS,
        Ok(false) => ProcessExit::FAILURE,
        Err(message) => {
            eprintln!("pikku: {message}");
            ProcessExit::FAILURE
        }
    }
}
