//! `make bench`: the protection-key hot paths in instructions, pikku against Linux.
//!
//! The program `user/musl/bench.c` runs as `/init` on both kernels with QEMU `-icount shift=0`,
//! where the guest TSC advances one tick per guest instruction, so its RDTSC differences are
//! instruction counts: deterministic, and comparable across kernels on the same emulated CPU.
//! pikku runs its release build; Linux boots with `transparent_hugepage=never norandmaps` so
//! two runs agree. Each side runs twice; the report states how far the two runs differ.
//! Output: `BENCHMARKS.md` and `docs/bench.svg` (the same comparison as a chart).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::build::{self, Kernel};
use crate::qemu::Qemu;
use crate::run::Init;
use crate::Error;

const ICOUNT: [&str; 2] = ["-icount", "shift=0"];
const LINUX_PARAMS: &str = "transparent_hugepage=never norandmaps";

/// One figure: cheapest batch per operation and the mean, in instructions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub min: f64,
    pub mean: f64,
}

/// All figures of one run, in the program's order, plus its calibration line.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub order: Vec<String>,
    pub figures: BTreeMap<String, Figure>,
    pub calibration: String,
}

/// Reads the `bench NAME MIN MEAN OPS` lines (names may contain spaces).
pub fn parse(output: &str) -> Run {
    let mut run = Run::default();
    for line in output.lines() {
        if line.starts_with("calibration:") || line.starts_with("empty loop:") {
            run.calibration.push_str(line.trim());
            run.calibration.push('\n');
        }
        let Some(rest) = line.strip_prefix("bench ") else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < 4 {
            continue;
        }
        let n = words.len();
        let (Ok(min), Ok(mean)) = (words[n - 3].parse::<f64>(), words[n - 2].parse::<f64>()) else { continue };
        let name = words[..n - 3].join(" ");
        run.order.push(name.clone());
        run.figures.insert(name, Figure { min, mean });
    }
    run
}

fn pikku_run(kernel: &std::path::Path, init: &Init) -> Result<Run, Error> {
    pikku_run_on(kernel, init, 1)
}

fn pikku_run_on(kernel: &std::path::Path, init: &Init, smp: u32) -> Result<Run, Error> {
    let qemu = Qemu { extra_args: ICOUNT.iter().map(|s| s.to_string()).collect(), smp, ..Qemu::default() };
    let r = crate::run::boot(kernel, &qemu, bootproto::options::LogLevel::Quiet, Some(init), true)?;
    let run = parse(&r.output);
    if !r.output.contains("bench done") {
        return Err(format!("the benchmark did not finish on pikku:\n{}", r.output));
    }
    Ok(run)
}

fn linux_run(init: &Init) -> Result<Run, Error> {
    linux_run_on(init, 1)
}

fn linux_run_on(init: &Init, smp: u32) -> Result<Run, Error> {
    let (out, console, _) = crate::linux::run_with(init, &crate::qemu::Qemu { smp, ..Default::default() }, &ICOUNT, LINUX_PARAMS)?;
    if !out.contains("bench done") {
        return Err(format!("the benchmark did not finish on Linux:\n{console}"));
    }
    Ok(parse(&out))
}

/// Largest relative difference between two runs' minimums.
fn spread(a: &Run, b: &Run) -> f64 {
    a.figures
        .iter()
        .filter_map(|(k, fa)| b.figures.get(k).map(|fb| (fa.min - fb.min).abs() / fa.min.abs().max(1.0)))
        .fold(0.0, f64::max)
}

/// `pikku bench-pikku`: one run of pikku alone, its figures as the program printed them (for
/// a quick look while working on a hot path; writes nothing).
pub fn run_pikku_only() -> Result<String, Error> {
    let user = build::user_programs()?;
    let kernel = build::kernel(Kernel::Release)?;
    let init = Init { program: user.join("bench"), ..Default::default() };
    let run = pikku_run(&kernel, &init)?;
    Ok(run.order.iter().map(|name| format!("{name:<40} {:>12.1} {:>12.1}\n", run.figures[name].min, run.figures[name].mean)).collect())
}

/// Runs everything and writes the report; returns the Markdown.
pub fn run() -> Result<String, Error> {
    let user = build::user_programs()?;
    let kernel = build::kernel(Kernel::Release)?;
    let (_, package) = crate::linux::kernel()?;
    let init = Init { program: user.join("bench"), ..Default::default() };
    eprintln!("bench: pikku, run 1 of 2");
    let p1 = pikku_run(&kernel, &init)?;
    eprintln!("bench: pikku, run 2 of 2");
    let p2 = pikku_run(&kernel, &init)?;
    eprintln!("bench: Linux, run 1 of 2");
    let l1 = linux_run(&init)?;
    eprintln!("bench: Linux, run 2 of 2");
    let l2 = linux_run(&init)?;
    // The shootdown row: both kernels booted with two CPUs, the second thread on CPU 1.
    let shootdown = Init { program: user.join("bench"), args: vec!["shootdown".into()], ..Default::default() };
    eprintln!("bench: pikku, the shootdown row (-smp 2)");
    let ps = pikku_run_on(&kernel, &shootdown, 2)?;
    eprintln!("bench: Linux, the shootdown row (-smp 2)");
    let ls = linux_run_on(&shootdown, 2)?;
    // The page-table rows: pikku with its page tables guarded by PKS and with `pks=off`.
    let tables = Init { program: user.join("bench"), args: vec!["page-tables".into()], ..Default::default() };
    eprintln!("bench: pikku, the page-table rows with PKS on");
    let pks_on = pikku_run(&kernel, &tables)?;
    eprintln!("bench: pikku, the page-table rows with pks=off");
    let pks_off = pikku_run(&kernel, &Init { pks_off: true, ..tables.clone() })?;
    eprintln!("bench: Linux, the page-table rows");
    let pks_linux = linux_run(&tables)?;
    let (mut p1, mut l1) = (p1, l1);
    for (run, extra) in [(&mut p1, &ps), (&mut l1, &ls)] {
        for name in &extra.order {
            run.order.push(name.clone());
            run.figures.insert(name.clone(), extra.figures[name]);
        }
    }
    let qemu_version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();

    let mut md = String::new();
    writeln!(md, "# Benchmarks: pikku against Linux, in instructions\n").unwrap();
    writeln!(md, "Made by `make bench` (`boot/src/bench.rs`, program `user/musl/bench.c`). Do not edit by hand.\n").unwrap();
    writeln!(md, "- Machine: {qemu_version}, `-cpu max -m 512M -icount shift=0` (one guest TSC tick per guest instruction).").unwrap();
    writeln!(md, "- Linux: Debian `{package}` (6.12.117-1~deb12u1), booted with `{LINUX_PARAMS}`.").unwrap();
    writeln!(md, "- pikku: the release build of the kernel, at the commit this file was committed with.").unwrap();
    writeln!(md, "- Method: per operation, the cheapest batch (100 operations; fewer for the large `pkey_mprotect` ranges) minus the empty loop, divided by the batch size; and the mean over all batches.").unwrap();
    writeln!(md, "- The row \"pkey_mprotect 1 page, other thread on CPU 1\" comes from a separate boot of each kernel with `-smp 2`: a second thread of the process spins with PAUSE on CPU 1, so every call must shoot down CPU 1's TLB entry before it returns. Under `-icount` the two vCPUs run in turn on one instruction counter, so the figure includes CPU 1's instructions (its PAUSE loop while the call runs, the IPI handler, the INVLPG); one run per kernel.").unwrap();
    writeln!(md, "- Repeatability: two runs per kernel; largest difference between runs: pikku {:.3} %, Linux {:.3} %.\n", spread(&p1, &p2) * 100.0, spread(&l1, &l2) * 100.0).unwrap();
    writeln!(md, "Calibration (pikku):\n\n```\n{}```\n", p1.calibration).unwrap();
    writeln!(md, "| operation | pikku min | Linux min | pikku / Linux | target (issue #19) | met | pikku mean | Linux mean |").unwrap();
    writeln!(md, "|---|---:|---:|---:|---:|:---:|---:|---:|").unwrap();
    let mut verdicts = String::new();
    for name in &p1.order {
        let p = p1.figures[name];
        match l1.figures.get(name) {
            Some(l) => {
                let (target, met) = match target(name, l.min) {
                    Some(t) => {
                        let met = p.min <= t.bound;
                        writeln!(verdicts, "- {name}: {:.1} against a target of {} ({:.1}): {}.", p.min, t.rule, t.bound, if met { "met" } else { "not met" }).unwrap();
                        (format!("≤ {:.1} ({})", t.bound, t.rule), if met { "yes" } else { "no" })
                    }
                    None => ("—".to_string(), "—"),
                };
                writeln!(md, "| {name} | {:.1} | {:.1} | {:.2} | {target} | {met} | {:.1} | {:.1} |", p.min, l.min, p.min / l.min.max(0.1), p.mean, l.mean)
            }
            None => writeln!(md, "| {name} | {:.1} | — | — | — | — | {:.1} | — |", p.min, p.mean),
        }
        .unwrap();
    }
    writeln!(md, "\nTargets (issue #19; the other rows' target is to get no worse):\n\n{verdicts}").unwrap();
    let diff = |run: &Run| -> Option<f64> {
        Some(run.figures.get("yield round trip, other PKRU")?.min - run.figures.get("yield round trip, same PKRU")?.min)
    };
    writeln!(md).unwrap();
    if let (Some(pd), Some(ld)) = (diff(&p1), diff(&l1)) {
        writeln!(md, "The PKRU share of a context switch (a round trip has two switches; different PKRU minus same PKRU): pikku {:.1} instructions, Linux {:.1}.", pd, ld).unwrap();
    }
    writeln!(md, "\n![pikku and Linux, instructions per operation](docs/bench.svg)\n").unwrap();
    write_area_growth(&mut md, &p1, &l1);
    write_page_table_rows(&mut md, &pks_on, &pks_off, &pks_linux);
    writeln!(md, "Notes:\n").unwrap();
    writeln!(md, "- The largest `pkey_mprotect` range is 32,768 pages (128 MiB), not 262,144 (1 GiB): the machine has 512 MiB, and every page is touched first so the call has PTEs to rewrite.").unwrap();
    writeln!(md, "- The largest address space has 50,000 areas, not 100,000: Linux refuses more than `vm.max_map_count` = 65,530 mappings.").unwrap();
    writeln!(md, "- The PKRU part of a switch when PKRU is unchanged has a target too (at most 8 instructions, no lock): pikku skips WRPKRU then (an RDPKRU and a compare); `make trace` shows the instructions.").unwrap();
    writeln!(md, "- The many-area rows visit the areas in a fixed pseudo-random order (the same on both kernels), so a cache of the last area found cannot flatter them.").unwrap();
    writeln!(md, "- Linux's means are far above its minimums for the calls where it does deferred work (RCU, timer ticks at 250 Hz land in some batches); the minimum is the figure to compare.").unwrap();
    std::fs::write(crate::repo_root().join("BENCHMARKS.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(crate::repo_root().join("docs").join("bench.svg"), chart(&p1, &l1)).map_err(|e| e.to_string())?;
    Ok(md)
}

/// The rows `pkey_mprotect in N areas`, as `(N, row name)`, in the program's order.
fn area_rows(run: &Run) -> Vec<(u64, &String)> {
    run.order.iter().filter_map(|name| Some((name.strip_prefix("pkey_mprotect in ")?.strip_suffix(" areas")?.parse().ok()?, name))).collect()
}

/// The growth series of the many-area rows (issue #19, item 4): what one `pkey_mprotect`
/// costs as the address space grows, and how much of it the size adds (the figure minus the
/// figure for one area) — the lookup's share, which grows with the height of the tree of areas.
fn write_area_growth(md: &mut String, pikku: &Run, linux: &Run) {
    let rows = area_rows(pikku);
    let base = |run: &Run| rows.first().and_then(|(_, name)| run.figures.get(*name)).map(|f| f.min);
    let (Some(p0), Some(l0)) = (base(pikku), base(linux)) else { return };
    writeln!(md, "## Many areas: the growth series\n").unwrap();
    writeln!(md, "One page's `pkey_mprotect` in an address space of N one-page areas, visited in a fixed pseudo-random order. pikku keeps its areas in a B-tree (`vma::VmaMap`: `BTreeMap` with cursors, one walk from the root per lookup or change), Linux in its maple tree (a B-tree with 16-way nodes). pikku's growth follows the height of its tree, log(N); Linux's figure hardly moves with N: a 16-way tree is about 4 levels high at 50,000 areas, and the call's fixed cost is larger than the walk.\n").unwrap();
    writeln!(md, "| areas | pikku min | Linux min | pikku / Linux | pikku − pikku at {} | Linux − Linux at {} |", rows[0].0, rows[0].0).unwrap();
    writeln!(md, "|---:|---:|---:|---:|---:|---:|").unwrap();
    for (count, name) in &rows {
        let p = pikku.figures[*name].min;
        let Some(l) = linux.figures.get(*name).map(|f| f.min) else { continue };
        writeln!(md, "| {count} | {p:.1} | {l:.1} | {:.2} | {:+.1} | {:+.1} |", p / l.max(0.1), p - p0, l - l0).unwrap();
    }
    writeln!(md).unwrap();
}

/// The cost of guarding page tables with a supervisor key (issue #18): the calls that write
/// page tables, pikku with PKS on and with `pks=off`, separate boots; Linux for scale.
fn write_page_table_rows(md: &mut String, on: &Run, off: &Run, linux: &Run) {
    writeln!(md, "## Page tables under a supervisor key (PKS), on and off\n").unwrap();
    writeln!(md, "`bench page-tables`, booted twice: pikku as always (page tables guarded by key 1; each call that writes page tables opens one write window: two WRMSRs to IA32_PKRS) and with the boot option `pks=off`. Instruction counts do not see what a WRMSR to IA32_PKRS costs QEMU itself (it flushes its software TLB): see README, \"PKU and PKS\", for the wall-clock of the test suite.\n").unwrap();
    writeln!(md, "| operation | pikku, PKS on | pikku, pks=off | PKS on − off | Linux |").unwrap();
    writeln!(md, "|---|---:|---:|---:|---:|").unwrap();
    for name in &on.order {
        let (Some(a), Some(b)) = (on.figures.get(name), off.figures.get(name)) else { continue };
        let l = linux.figures.get(name).map_or("—".to_string(), |l| format!("{:.1}", l.min));
        writeln!(md, "| {name} | {:.1} | {:.1} | {:+.1} | {l} |", a.min, b.min, a.min - b.min).unwrap();
    }
    writeln!(md).unwrap();
}

/// A row's target from issue #19: at most `bound` instructions, by `rule`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub bound: f64,
    pub rule: &'static str,
}

/// The target of row `name`, given Linux's figure for it (`None`: the row's target is only to
/// get no worse).
pub fn target(name: &str, linux: f64) -> Option<Target> {
    let (fraction, rule) = match name {
        "getpid" => (1.0 / 3.0, "1/3 of Linux"),
        "pkey_alloc+pkey_free" => (1.0 / 4.0, "1/4 of Linux"),
        "pkey fault+handler+sigreturn" => (1.0 / 3.0, "1/3 of Linux"),
        "pkey_mprotect in 1000 areas" | "pkey_mprotect in 50000 areas" => (1.0, "Linux"),
        _ => return None,
    };
    Some(Target { bound: linux * fraction, rule })
}

/// A horizontal bar chart (log scale) of the cheapest batch, pikku against Linux.
pub fn chart(pikku: &Run, linux: &Run) -> String {
    let rows: Vec<(&String, f64, Option<f64>)> =
        pikku.order.iter().map(|n| (n, pikku.figures[n].min, linux.figures.get(n).map(|f| f.min))).collect();
    let (left, width, row_h) = (250.0, 520.0, 34.0);
    let max = rows.iter().flat_map(|(_, p, l)| [*p, l.unwrap_or(0.0)]).fold(1.0f64, f64::max);
    let scale = |v: f64| if v <= 1.0 { 2.0 } else { (v.log10() / max.log10()) * width };
    let height = 60.0 + rows.len() as f64 * row_h;
    let mut svg = String::new();
    writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#, left + width + 90.0).unwrap();
    writeln!(svg, r#"<text x="10" y="20" font-size="14" font-weight="bold">Instructions per operation (log scale): pikku vs Linux 6.12, QEMU -icount</text>"#).unwrap();
    writeln!(svg, r##"<rect x="10" y="30" width="12" height="10" fill="#2a7ab0"/><text x="26" y="39">pikku</text><rect x="80" y="30" width="12" height="10" fill="#c0c0c0"/><text x="96" y="39">Linux</text>"##).unwrap();
    for (i, (name, p, l)) in rows.iter().enumerate() {
        let y = 50.0 + i as f64 * row_h;
        writeln!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 8.0, y + 18.0, name).unwrap();
        writeln!(svg, r##"<rect x="{left}" y="{y}" width="{:.1}" height="13" fill="#2a7ab0"/><text x="{:.1}" y="{}">{:.0}</text>"##, scale(*p), left + scale(*p) + 4.0, y + 11.0, p).unwrap();
        if let Some(l) = l {
            writeln!(svg, r##"<rect x="{left}" y="{}" width="{:.1}" height="13" fill="#c0c0c0"/><text x="{:.1}" y="{}">{:.0}</text>"##, y + 15.0, scale(*l), left + scale(*l) + 4.0, y + 26.0, l).unwrap();
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_issues_fractions_of_linux() {
        assert_eq!(target("getpid", 300.0), Some(Target { bound: 100.0, rule: "1/3 of Linux" }));
        assert_eq!(target("pkey_alloc+pkey_free", 668.0).map(|t| t.bound), Some(167.0));
        assert_eq!(target("pkey_mprotect in 50000 areas", 2485.0).map(|t| t.bound), Some(2485.0));
        assert_eq!(target("rdpkru", 1.0), None, "rows without a target only must not get worse");
    }

    #[test]
    fn the_growth_series_is_every_many_area_row_with_its_count() {
        let r = parse("bench getpid 99.0 99.1 10000\nbench pkey_mprotect in 1 areas 1200.0 1201.0 10000\nbench pkey_mprotect 1 pages 1300.0 1301.0 10000\nbench pkey_mprotect in 50000 areas 1500.0 1510.0 10000\n");
        let rows: Vec<(u64, &str)> = area_rows(&r).into_iter().map(|(n, name)| (n, name.as_str())).collect();
        assert_eq!(rows, [(1, "pkey_mprotect in 1 areas"), (50000, "pkey_mprotect in 50000 areas")]);
        let mut md = String::new();
        write_area_growth(&mut md, &r, &r);
        assert!(md.contains("| 50000 | 1500.0 | 1500.0 | 1.00 | +300.0 | +300.0 |"), "{md}");
    }

    #[test]
    fn parses_names_with_spaces() {
        let r = parse("calibration: x\nbench getpid        205.0   205.2   10000\nbench yield round trip, same PKRU   1113.0  1115.8 10000\nbench done\n");
        assert_eq!(r.order, ["getpid", "yield round trip, same PKRU"]);
        assert_eq!(r.figures["getpid"], Figure { min: 205.0, mean: 205.2 });
        assert!(chart(&r, &r).contains("<svg"));
    }
}
