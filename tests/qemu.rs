//! pikku's QEMU test matrix — what `make test` boots.
//!
//! 1. **Boot reports**: the run kernel under `-cpu max` reports PKU, OSPKE and PKS present and
//!    PKRU 0x55555554; under `-cpu qemu64` all absent; under UEFI it boots too. Each powers off
//!    through the exit device.
//! 2. **The in-kernel suite** under `-cpu max` + BIOS, `-cpu qemu64` + BIOS (the no-pkeys
//!    paths), and `-cpu max` + UEFI. Every test must pass or be skipped for a stated reason,
//!    and the tests that matter for each CPU must actually have run there.
//! 3. **User programs** (static musl and `-nostdlib` executables from `user/`, each booted as
//!    `/init`): their output byte for byte, their exit status, the pkey syscalls and RDPKRU from
//!    ring 3 (against hand-derived transcripts in `tests/expected/`), bad pointers → `EFAULT`,
//!    and programs that fault being stopped with the right signal while the kernel lives on.
//! 4. **The harness itself**: a run with `ktest.selftest=1` must report a panicking test, a
//!    hanging test and a triple-faulting test as FAILED with the right reason, and still run
//!    the test after them; the kernel's closing line must carry the counts across boots.
//!
//! Ends with `N passed, M failed` counting every check and every in-kernel test result.

use std::time::{Duration, Instant};

use boot::build::{self, Kernel};
use boot::image::Firmware;
use boot::ktest::{Event, Report, Status, Suite};
use boot::qemu::Qemu;
use boot::run::{Init, InitEnd};
use bootproto::exit::{ExitCode, Outcome};
use bootproto::options::LogLevel;

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Tally {
    fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("check {name} ... ok");
            }
            Err(why) => {
                self.failed += 1;
                println!("check {name} ... FAILED");
                for line in why.lines() {
                    println!("    {line}");
                }
            }
        }
    }

    fn add_suite(&mut self, report: &Report) {
        let c = report.counts();
        self.passed += c.passed;
        self.failed += c.failed;
        self.skipped += c.skipped;
    }
}

fn print_event(label: &str, event: &Event) {
    match event {
        Event::Result(r) => match &r.status {
            Status::Passed => println!("[{label}] test {} ... ok", r.name),
            Status::Skipped(why) => println!("[{label}] test {} ... skipped ({why})", r.name),
            Status::Failed(msg) => {
                println!("[{label}] test {} ... FAILED", r.name);
                for line in msg.lines() {
                    println!("    {line}");
                }
            }
        },
        Event::Boot { number, after: Some(name) } => println!("[{label}] boot {number}: resuming after {name}"),
        Event::Boot { .. } => {}
        Event::Line(line) => {
            if line.contains(" error]") {
                println!("[{label}] {line}");
            }
        }
    }
}

fn boot_report(kernel: &std::path::Path, firmware: Firmware, cpu: &str, expect: &[&str]) -> Result<(), String> {
    let qemu = Qemu { firmware, cpu: cpu.into(), ..Qemu::default() };
    let run = boot::run::boot(kernel, &qemu, LogLevel::Info, None, true)?;
    let (outcome, output) = (run.outcome, run.output);
    if outcome != Outcome::Kernel(ExitCode::Success) {
        return Err(format!("ended with {outcome:?}:\n{output}"));
    }
    if !output.contains("] pikku booting") {
        return Err(format!("no kernel output:\n{output}"));
    }
    for needle in expect {
        if !output.contains(needle) {
            return Err(format!("the boot report lacks {needle:?}:\n{output}"));
        }
    }
    // From the kernel's first line on (firmware output may precede it), every console line is a
    // kernel log line with a bracketed tag.
    let kernel_lines = output.lines().skip_while(|l| !l.contains("] pikku booting"));
    if let Some(line) = kernel_lines.clone().find(|l| !l.starts_with('[')) {
        return Err(format!("untagged console line {line:?}"));
    }
    Ok(())
}

/// Boots `program` as /init and returns (program output, full console, how init ended).
fn run_program(kernel: &std::path::Path, cpu: &str, program: &std::path::Path, args: &[&str]) -> Result<(String, String, InitEnd), String> {
    let qemu = Qemu { cpu: cpu.into(), ..Qemu::default() };
    let init = Init { program: program.into(), args: args.iter().map(|a| a.to_string()).collect(), files: Vec::new() };
    let run = boot::run::boot(kernel, &qemu, LogLevel::Info, Some(&init), true)?;
    if run.outcome != Outcome::Kernel(ExitCode::Success) {
        return Err(format!("the kernel did not power off normally ({:?}):\n{}", run.outcome, run.output));
    }
    let end = run.init.ok_or_else(|| format!("no init status line:\n{}", run.output))?;
    // The program's bytes: every line after the kernel started that is not a kernel line.
    let program_output: String = run
        .output
        .split_inclusive('\n')
        .skip_while(|l| !l.contains("] pikku booting"))
        .filter(|l| !l.starts_with('['))
        .collect();
    Ok((program_output, run.output, end))
}

fn expect_program(
    kernel: &std::path::Path,
    cpu: &str,
    program: &std::path::Path,
    args: &[&str],
    output: &str,
    end: InitEnd,
    console_has: &[&str],
) -> Result<(), String> {
    let (got, console, got_end) = run_program(kernel, cpu, program, args)?;
    if got != output {
        return Err(format!("program output differs.\n--- expected\n{output}--- got\n{got}--- console\n{console}"));
    }
    if got_end != end {
        return Err(format!("expected {end:?}, got {got_end:?}:\n{console}"));
    }
    for needle in console_has {
        if !console.contains(needle) {
            return Err(format!("console lacks {needle:?}:\n{console}"));
        }
    }
    Ok(())
}

fn user_programs(tally: &mut Tally, kernel: &std::path::Path) {
    let dir = match build::user_programs() {
        Ok(d) => d,
        Err(e) => return tally.check("user_programs_build", Err(e)),
    };
    let p = |name: &str| dir.join(name);
    let expected = |name: &str| std::fs::read_to_string(boot::repo_root().join("tests/expected").join(name)).expect("expected transcript");
    let passwd_first = std::fs::read_to_string(boot::repo_root().join("rootfs/etc/passwd")).unwrap().lines().next().unwrap().to_string();

    tally.check(
        "user_musl_hello_prints_mallocs_and_exits_7",
        expect_program(kernel, "max", &p("hello"), &[], "hello from pikku\ntouched 1024 KiB, checksum 179306496\n", InitEnd::Exited(7), &["starting /init as pid 1"]),
    );
    tally.check(
        "user_musl_reads_etc_passwd_and_gets_args",
        expect_program(
            kernel,
            "max",
            &p("cat_passwd"),
            &["one", "two"],
            &format!("argv[0] = /init\nargv[1] = one\nargv[2] = two\nfirst line of /etc/passwd: {passwd_first}\nfopen(\"/etc/passwd\", \"w\") = NULL, errno Read-only file system\n"),
            InitEnd::Exited(0),
            &[],
        ),
    );
    tally.check(
        "user_pkeys_from_ring3_max",
        expect_program(kernel, "max", &p("pkeys_ring3"), &[], &expected("pkeys_ring3.max.txt"), InitEnd::Exited(0), &[]),
    );
    tally.check(
        "user_pkeys_from_ring3_qemu64",
        expect_program(kernel, "qemu64", &p("pkeys_ring3"), &[], &expected("pkeys_ring3.qemu64.txt"), InitEnd::Exited(0), &[]),
    );
    tally.check(
        "user_rust_no_std_pkeys_max",
        expect_program(
            kernel,
            "max",
            &p("pkeys_rs"),
            &[],
            "rust: ospke = 1\nrust: pkey_alloc(0, PKEY_DISABLE_WRITE) = 1\nrust: pkru = 0x55555558\nrust: pkey_free(1) = 0\nrust: pkey_free(1) = -22\n",
            InitEnd::Exited(0),
            &[],
        ),
    );
    tally.check(
        "user_rust_no_std_pkeys_qemu64",
        expect_program(kernel, "qemu64", &p("pkeys_rs"), &[], "rust: ospke = 0\nrust: pkey_alloc(0, PKEY_DISABLE_WRITE) = -28\n", InitEnd::Exited(0), &[]),
    );
    tally.check(
        "user_raw_bad_pointers_get_efault_unknown_syscalls_enosys",
        run_program(kernel, "max", &p("badptr"), &[]).and_then(|(out, console, end)| {
            if out.contains("FAIL") || !out.ends_with("badptr: all passed\n") || end != InitEnd::Exited(0) {
                return Err(format!("{end:?}\n{console}"));
            }
            if !console.contains("unknown system call 9999: -ENOSYS") {
                return Err(format!("the kernel did not log the unknown syscall:\n{console}"));
            }
            Ok(())
        }),
    );
    tally.check(
        "user_musl_abi_subset_transcript",
        expect_program(kernel, "max", &p("abi"), &[], &expected("abi.txt"), InitEnd::Exited(0), &[]),
    );
    tally.check(
        "user_reboot_power_off_ends_the_machine",
        (|| {
            let qemu = Qemu::default();
            let init = Init { program: p("poweroff"), ..Init::default() };
            let run = boot::run::boot(kernel, &qemu, LogLevel::Info, Some(&init), true)?;
            if run.outcome != Outcome::Kernel(ExitCode::Success) || run.init.is_some() {
                return Err(format!("{:?} / {:?}:\n{}", run.outcome, run.init, run.output));
            }
            if !run.output.contains("powering off\n") || !run.output.contains("power off requested by pid 1 (reboot)") || run.output.contains("reboot returned") {
                return Err(run.output);
            }
            Ok(())
        })(),
    );
    for (what, sig, report) in [
        ("priv", 11, "pid 1 (init): SIGSEGV general protection fault (SI_KERNEL)"),
        ("rodata", 11, "pid 1 (init): SIGSEGV SEGV_ACCERR"),
        ("jump", 11, "pid 1 (init): SIGSEGV SEGV_MAPERR at rip=0x7000deadb000 addr=0x7000deadb000"),
        ("ud2", 4, "pid 1 (init): SIGILL ILL_ILLOPN"),
    ] {
        tally.check(
            &format!("user_fault_{what}_is_stopped_and_reported"),
            expect_program(kernel, "max", &p("faults"), &[what], &format!("about to: {what}\n"), InitEnd::Signaled(sig), &[report]),
        );
    }
}

fn suite(kernel: &std::path::Path, label: &str, firmware: Firmware, cpu: &str) -> Result<Report, String> {
    let suite = Suite::new(firmware, cpu);
    suite.run(kernel, |e| print_event(label, &e))
}

fn status_of<'a>(report: &'a Report, name: &str) -> Option<&'a Status> {
    report.results.iter().find(|r| r.name == name).map(|r| &r.status)
}

/// The in-kernel tests that must have *run* (not been skipped) on a configuration.
fn ran(report: &Report, names: &[&str]) -> Result<(), String> {
    for name in names {
        match status_of(report, name) {
            Some(Status::Passed) => {}
            other => return Err(format!("{name}: expected to pass here, got {other:?}")),
        }
    }
    Ok(())
}

fn closing_line_matches(report: &Report) -> Result<(), String> {
    let c = report.counts();
    let expected = format!("{} passed, {} failed", c.passed, c.failed);
    match report.closing_line.as_deref() {
        Some(line) if line == expected => Ok(()),
        other => Err(format!("kernel's closing line {other:?}, runner counted {expected:?}")),
    }
}

fn main() {
    let started = Instant::now();
    let mut tally = Tally::default();

    let run_kernel = build::kernel(Kernel::Run).unwrap_or_else(|e| panic!("{e}"));
    let test_kernel = build::kernel(Kernel::Test).unwrap_or_else(|e| panic!("{e}"));

    // 1. Boot reports.
    let pkeys_present = ["PKU yes", "OSPKE yes (CR4.PKE set)", "PKS yes", "PKRU of the boot thread: 0x55555554"];
    tally.check("boot_report_max_bios", boot_report(&run_kernel, Firmware::Bios, "max", &pkeys_present));
    tally.check(
        "boot_report_qemu64_bios",
        boot_report(&run_kernel, Firmware::Bios, "qemu64", &["PKU no", "OSPKE no (CR4.PKE clear)", "PKS no", "no PKRU"]),
    );
    tally.check("boot_report_max_uefi", boot_report(&run_kernel, Firmware::Uefi, "max", &pkeys_present));

    // 2. The matrix.
    let pku_tests = [
        "syscall::pkey::tests::fifteen_keys_in_order_then_enospc",
        "syscall::pkey::tests::pkru_gets_exactly_the_requested_rights",
        "mm::address_space::tests::wd_blocks_kernel_writes_to_user_pages_and_ad_blocks_reads",
        "arch::x86_64::cpu::tests::cr4_pke_is_set_and_cpuid_reports_ospke",
    ];
    let no_pku_tests = [
        "syscall::pkey::tests::without_pkeys_alloc_is_enospc_and_free_is_einval",
        "arch::x86_64::pkru::tests::rdpkru_raises_ud_without_cr4_pke",
        "arch::x86_64::cpu::tests::without_pku_nothing_is_enabled",
    ];
    for (label, firmware, cpu, must_run) in [
        ("max/bios", Firmware::Bios, "max", &pku_tests[..]),
        ("qemu64/bios", Firmware::Bios, "qemu64", &no_pku_tests[..]),
        ("max/uefi", Firmware::Uefi, "max", &pku_tests[..]),
    ] {
        match suite(&test_kernel, label, firmware, cpu) {
            Ok(report) => {
                tally.add_suite(&report);
                let c = report.counts();
                println!("[{label}] {} passed, {} failed, {} skipped in {} boot(s), {:.1} s", c.passed, c.failed, c.skipped, report.boots, report.elapsed.as_secs_f64());
                tally.check(&format!("suite_{label}_ran_its_cpu_specific_tests"), ran(&report, must_run));
                tally.check(&format!("suite_{label}_closing_line"), closing_line_matches(&report));
            }
            Err(e) => tally.check(&format!("suite_{label}"), Err(e)),
        }
    }

    // 3. User programs.
    user_programs(&mut tally, &run_kernel);

    // 4. The harness, on its own deliberately failing tests.
    let mut selftest = Suite::new(Firmware::Bios, "max");
    selftest.harness_selftest = true;
    selftest.timeout = Duration::from_secs(15);
    let result = selftest.run(&test_kernel, |e| {
        if let Event::Result(r) = &e {
            if r.name.starts_with("ktest::selftest") {
                print_event("selftest", &e);
            }
        }
    });
    tally.check(
        "harness_reports_panic_hang_and_triple_fault_then_continues",
        result.and_then(|report| {
            let expect = |name: &str, needle: &str| match status_of(&report, &format!("ktest::selftest::{name}")) {
                Some(Status::Failed(msg)) if msg.contains(needle) => Ok(()),
                other => Err(format!("{name}: expected FAILED mentioning {needle:?}, got {other:?}")),
            };
            expect("deliberate_panic", "deliberate failure to check the harness")?;
            expect("deliberate_panic", "ktest/selftest.rs")?;
            expect("deliberate_hang", "hung")?;
            expect("deliberate_triple_fault", "triple fault")?;
            ran(&report, &["ktest::selftest::runs_after_the_failures", "task::tests::threads_share_the_key_map_but_not_pkru"])?;
            if report.counts().failed != 3 || report.boots != 4 {
                return Err(format!("expected 3 failures over 4 boots, got {} over {}", report.counts().failed, report.boots));
            }
            closing_line_matches(&report)
        }),
    );

    println!("[qemu tests] {} skipped, {:.1} s", tally.skipped, started.elapsed().as_secs_f64());
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        std::process::exit(1);
    }
}
