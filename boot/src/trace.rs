//! `make trace`: where the instructions of one system call go, function by function, on pikku
//! and on Linux.
//!
//! `make bench` says *how many* instructions an operation costs; this says *where* they are.
//! The program `user/musl/trace.c` surrounds each operation (getpid, pkey_alloc, pkey_free,
//! pkey_mprotect, a pkey fault caught by a handler, a yield round trip between two threads —
//! whose PKRU part, `arch::x86_64::pkru::switch`, is listed instruction by instruction) with calls of
//! `trace_mark(n)`. QEMU starts halted with its
//! gdb server on; gdb (driven by a small Python script) puts a hardware breakpoint on
//! `trace_mark`, and from each mark to the next single-steps the whole machine — user code,
//! the SYSCALL entry, the kernel, SYSRET — recording every instruction pointer. QEMU's single
//! step runs with interrupts and timers held off, so nothing else gets in between; a `rep`
//! string instruction counts once per iteration, as under `-icount` (an iteration is told from
//! a step that executed nothing — gdb sometimes reports one — by RCX counting down). Two runs
//! give the same file.
//!
//! The host then names each address: user addresses from the program's symbols (`nm`), pikku's
//! from its kernel ELF (`nm`), Linux's from `/proc/kallsyms` of the same boot — the program
//! prints it after the last mark, because Debian ships the real `System.map` only in its
//! debug package. pikku's bootloader picks the kernel's load base, so its offset is taken from
//! the trace itself: the first kernel instruction after the user's `syscall` is the SYSCALL
//! entry point, `pikku_syscall_entry`. (kallsyms already shows Linux's addresses as loaded.)
//!
//! Output: the tables on the terminal and in `docs/trace.md`. Needs gdb (installed by
//! `scripts/setup.sh gdb`, which `make trace` runs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{self, Kernel};
use crate::qemu::Qemu;
use crate::run::Init;
use crate::Error;

/// The operations of `user/musl/trace.c`, by mark number.
pub const OPERATIONS: [(u32, &str); 6] = [
    (1, "getpid"),
    (2, "pkey_alloc(0, 0)"),
    (3, "pkey_free"),
    (4, "pkey_mprotect of one present page to another key (via musl's syscall())"),
    (5, "pkey fault → SIGSEGV handler → rt_sigreturn"),
    (6, "sched_yield to another thread and back (two context switches, PKRU unchanged)"),
];

/// The mark of the yield round trip, and the function whose instructions are the PKRU part of
/// a context switch on pikku (`arch::x86_64::pkru::switch`, called by `task::switch_pkru`;
/// never inlined for this reason).
const YIELD_OPERATION: u32 = 6;
const PKRU_SWITCH_FUNCTION: &str = "kernel::arch::x86_64::pkru::switch";

/// The mark number `trace.c` passes for a stretch the debugger runs through untraced.
const UNTRACED: u32 = 99;

/// Where the user/kernel boundary lies: addresses at or above it are the kernel's.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// The gdb script: connect, break on the mark, then record every instruction between marks.
/// `rdi` holds the number of the operation that follows a mark; 0 ends the trace.
const GDB_SCRIPT: &str = r#"
import gdb
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("target remote 127.0.0.1:@PORT@")
gdb.execute("hbreak *@MARK@")
gdb.execute("continue")
out = open("@OUT@", "w")
try:
    while True:
        op = int(gdb.parse_and_eval("$rdi")) & 0xffffffff
        if op == 0:
            break
        if op == @UNTRACED@:
            gdb.execute("continue")
            continue
        prev = None
        steps = 0
        while True:
            gdb.execute("stepi", to_string=True)
            pc = int(gdb.parse_and_eval("$pc")) & 0xffffffffffffffff
            rcx = int(gdb.parse_and_eval("$rcx")) & 0xffffffffffffffff
            if pc == @MARK@:
                break
            # A step that reports the same address again executed nothing — unless it is a
            # `rep` string instruction iterating in place, which counts RCX down each time.
            if (pc, rcx) == prev or (prev is not None and pc == prev[0] and bytes(gdb.selected_inferior().read_memory(pc, 1))[0] not in (0xf2, 0xf3)):
                continue
            out.write("%d %x\n" % (op, pc))
            prev = (pc, rcx)
            steps += 1
            if steps > 1000000:
                raise Exception("no next mark after a million steps")
    out.close()
    # Let the program finish (on Linux it prints the kernel's symbols after the last mark).
    gdb.execute("delete")
    gdb.execute("detach")
except BaseException:
    out.close()
    gdb.execute("kill")
    raise
"#;

/// One kernel's trace: for each operation, the instruction count per function, in the order
/// the functions were first reached.
#[derive(Debug, Default)]
pub struct Trace {
    pub operations: BTreeMap<u32, Vec<(String, u64)>>,
}

impl Trace {
    /// The total for operation `op`.
    pub fn total(&self, op: u32) -> u64 {
        self.operations.get(&op).map_or(0, |rows| rows.iter().map(|(_, n)| n).sum())
    }
}

/// A sorted symbol table: (address, name).
struct Symbols(Vec<(u64, String)>);

impl Symbols {
    /// `nm`-style lines ("ADDRESS TYPE NAME"), text symbols only, addresses shifted by `offset`.
    fn parse(text: &str, offset: u64) -> Symbols {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr.wrapping_add(offset), name.to_string()))
            })
            .collect();
        v.sort();
        Symbols(v)
    }

    fn address_of(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }

    /// The function containing `pc` (the nearest symbol at or below it).
    fn name(&self, pc: u64) -> &str {
        match self.0.partition_point(|(a, _)| *a <= pc) {
            0 => "?",
            i => &self.0[i - 1].1,
        }
    }
}

fn nm(path: &Path) -> Result<String, Error> {
    let out = Command::new("nm").args(["-C", "--defined-only"]).arg(path).output().map_err(|e| format!("cannot run nm: {e}"))?;
    if !out.status.success() {
        return Err(format!("nm {} failed", path.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on localhost for QEMU's gdb server.
fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts `boot` (which runs QEMU halted with its gdb server on `port`) on a thread, runs gdb
/// against it, and returns the raw trace — (operation, instruction pointer) per step — and the
/// program's output.
fn record(port: u16, mark: u64, boot: impl FnOnce() -> Result<String, Error> + Send + 'static) -> Result<(Vec<(u32, u64)>, String), Error> {
    let out = crate::image::unique_path("trace", "txt");
    let script = crate::image::unique_path("trace", "py");
    let text = GDB_SCRIPT
        .replace("@PORT@", &port.to_string())
        .replace("@MARK@", &format!("{mark:#x}"))
        .replace("@UNTRACED@", &UNTRACED.to_string())
        .replace("@OUT@", &out.to_string_lossy());
    std::fs::write(&script, text).map_err(|e| e.to_string())?;
    let qemu = std::thread::spawn(boot);
    // Give QEMU a moment to open the port (gdb retries nothing by itself).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return Err("QEMU's gdb server did not come up".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let gdb = Command::new("gdb").args(["-nx", "-batch", "-x"]).arg(&script).output().map_err(|e| format!("cannot run gdb: {e}"))?;
    let _ = std::fs::remove_file(&script);
    let console = qemu.join().map_err(|_| "the QEMU thread panicked")??;
    let raw = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    if raw.is_empty() {
        return Err(format!("gdb recorded nothing\n--- gdb\n{}{}\n--- console\n{console}", String::from_utf8_lossy(&gdb.stdout), String::from_utf8_lossy(&gdb.stderr)));
    }
    let steps = raw
        .lines()
        .filter_map(|l| {
            let (op, pc) = l.split_once(' ')?;
            Some((op.parse().ok()?, u64::from_str_radix(pc, 16).ok()?))
        })
        .collect();
    Ok((steps, console))
}

/// Names every step and counts per function. `kernel_nm` holds the kernel's symbols at their
/// link addresses; `entry` is the SYSCALL entry's name, used to find the load offset.
/// `entry: None` means the symbols are already at their loaded addresses.
fn summarise(steps: &[(u32, u64)], user: &Symbols, kernel_nm: &str, entry: Option<&str>) -> Result<Trace, Error> {
    let offset = match entry {
        None => 0,
        Some(entry) => load_offset(steps, kernel_nm, entry)?,
    };
    let kernel = Symbols::parse(kernel_nm, offset);
    let mut trace = Trace::default();
    for &(op, pc) in steps {
        let name = if pc >= KERNEL_HALF { kernel.name(pc).to_string() } else { format!("(user) {}", user.name(pc)) };
        let rows = trace.operations.entry(op).or_default();
        match rows.iter_mut().find(|(n, _)| *n == name) {
            Some(row) => row.1 += 1,
            None => rows.push((name, 1)),
        }
    }
    Ok(trace)
}

/// How far the bootloader moved the kernel: the first kernel instruction after the user's
/// `syscall` is the SYSCALL entry point, `entry`, whose link address `kernel_nm` gives.
fn load_offset(steps: &[(u32, u64)], kernel_nm: &str, entry: &str) -> Result<u64, Error> {
    let linked = Symbols::parse(kernel_nm, 0);
    let entry_at = linked.address_of(entry).ok_or_else(|| format!("no symbol {entry} in the kernel"))?;
    let first = steps.iter().map(|&(_, pc)| pc).find(|&pc| pc >= KERNEL_HALF).ok_or("the trace never entered the kernel")?;
    Ok(first.wrapping_sub(entry_at))
}

/// `objdump -d` of an ELF file (Intel syntax, no raw bytes): instruction text by address.
fn disassembly(path: &Path) -> Result<BTreeMap<u64, String>, Error> {
    let out = Command::new("objdump")
        .args(["-d", "-M", "intel", "--no-show-raw-insn"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run objdump: {e}"))?;
    if !out.status.success() {
        return Err(format!("objdump {} failed", path.display()));
    }
    Ok(parse_disassembly(&String::from_utf8_lossy(&out.stdout)))
}

/// The instruction lines of `objdump -d --no-show-raw-insn` ("  17760:\tpush   r14"), by
/// address; symbols' comments (`# 74930 <…>`) are cut off.
fn parse_disassembly(text: &str) -> BTreeMap<u64, String> {
    text.lines()
        .filter_map(|line| {
            let (addr, insn) = line.trim_start().split_once(":\t")?;
            let addr = u64::from_str_radix(addr, 16).ok()?;
            let insn = insn.split(" #").next().unwrap_or(insn).split_whitespace().collect::<Vec<_>>().join(" ");
            Some((addr, insn))
        })
        .collect()
}

/// Operation `op` instruction by instruction: the function and the instruction of every step
/// (kernel addresses moved back by `offset` to find them in the kernel's disassembly) — every
/// step, or with `only`, the steps in that one function.
fn listing(
    steps: &[(u32, u64)],
    op: u32,
    only: Option<&str>,
    offset: u64,
    (kernel, kernel_dis): (&Symbols, &BTreeMap<u64, String>),
    (user, user_dis): (&Symbols, &BTreeMap<u64, String>),
) -> String {
    let mut text = String::new();
    for &(_, pc) in steps.iter().filter(|&&(o, _)| o == op) {
        let (name, insn) = if pc >= KERNEL_HALF {
            let linked = pc.wrapping_sub(offset);
            (kernel.name(linked).to_string(), kernel_dis.get(&linked))
        } else {
            (format!("(user) {}", user.name(pc)), user_dis.get(&pc))
        };
        if only.is_some_and(|f| f != name) {
            continue;
        }
        let short: String = name.chars().take(60).collect();
        writeln!(text, "{short:<60} {}", insn.map_or("?", |s| s.as_str())).unwrap();
    }
    text
}

/// How many times operation `op` entered `function` (a step in it after a step elsewhere).
fn entries(trace: &[(u32, u64)], op: u32, function: &str, offset: u64, kernel: &Symbols) -> usize {
    let names: Vec<&str> = trace.iter().filter(|&&(o, _)| o == op).map(|&(_, pc)| if pc >= KERNEL_HALF { kernel.name(pc.wrapping_sub(offset)) } else { "" }).collect();
    names.iter().enumerate().filter(|&(i, n)| *n == function && (i == 0 || names[i - 1] != function)).count()
}

/// What `make trace` shows pikku instruction by instruction: getpid, and the PKRU part of a
/// context switch (the steps in [`PKRU_SWITCH_FUNCTION`] during the yield round trip, and how
/// many switches they were).
struct Listings {
    getpid: String,
    pkru_switch: String,
    switches: usize,
}

/// pikku's trace, and its listings (getpid, and the PKRU part of a switch) instruction by
/// instruction.
fn trace_pikku(program: &Path, user: &Symbols, mark: u64) -> Result<(Trace, Listings), Error> {
    let kernel = build::kernel(Kernel::Release)?;
    let symbols = nm(&kernel)?;
    let kernel_dis = disassembly(&kernel)?;
    let user_dis = disassembly(program)?;
    let port = free_port()?;
    let init = Init { program: program.to_path_buf(), ..Default::default() };
    let qemu = Qemu { extra_args: vec!["-S".into(), "-gdb".into(), format!("tcp:127.0.0.1:{port}")], ..Qemu::default() };
    let (steps, _) = record(port, mark, move || {
        crate::run::boot(&kernel, &qemu, bootproto::options::LogLevel::Quiet, Some(&init), true).map(|r| r.output)
    })?;
    let offset = load_offset(&steps, &symbols, "pikku_syscall_entry")?;
    let linked = Symbols::parse(&symbols, 0);
    let listings = Listings {
        getpid: listing(&steps, OPERATIONS[0].0, None, offset, (&linked, &kernel_dis), (user, &user_dis)),
        pkru_switch: listing(&steps, YIELD_OPERATION, Some(PKRU_SWITCH_FUNCTION), offset, (&linked, &kernel_dis), (user, &user_dis)),
        switches: entries(&steps, YIELD_OPERATION, PKRU_SWITCH_FUNCTION, offset, &linked),
    };
    Ok((summarise(&steps, user, &symbols, Some("pikku_syscall_entry"))?, listings))
}

fn trace_linux(program: &Path, user: &Symbols, mark: u64) -> Result<Trace, Error> {
    let port = free_port()?;
    let init = Init { program: program.to_path_buf(), ..Default::default() };
    let (steps, output) = record(port, mark, move || {
        let gdb = format!("tcp:127.0.0.1:{port}");
        crate::linux::run_with(&init, &crate::qemu::Qemu::default(), &["-S", "-gdb", &gdb], "").map(|(out, _, _)| out)
    })?;
    summarise(&steps, user, &output, None)
}

/// One operation's table: function and count, largest first within the order of arrival.
fn table(md: &mut String, rows: &[(String, u64)]) {
    writeln!(md, "| function | instructions |\n|---|---:|").unwrap();
    for (name, n) in rows {
        let short: String = name.chars().take(90).collect();
        writeln!(md, "| `{}` | {n} |", short.replace('|', "\\|")).unwrap();
    }
}

/// Runs both traces and writes `docs/trace.md`; returns the Markdown.
pub fn run() -> Result<String, Error> {
    let user_dir = build::user_programs()?;
    let program: PathBuf = user_dir.join("trace");
    let user = Symbols::parse(&nm(&program)?, 0);
    let mark = user.address_of("trace_mark").ok_or("no trace_mark in the trace program")?;
    eprintln!("trace: pikku");
    let (pikku, listings) = trace_pikku(&program, &user, mark)?;
    eprintln!("trace: Linux");
    let linux = trace_linux(&program, &user, mark)?;
    let mut md = String::new();
    writeln!(md, "# Where the instructions go: pikku and Linux, function by function\n").unwrap();
    writeln!(md, "Made by `make trace` (`boot/src/trace.rs`, program `user/musl/trace.c`). Do not edit by hand.\n").unwrap();
    writeln!(md, "Every instruction from one `trace_mark()` call to the next, single-stepped through QEMU's gdb server (`-cpu max`, interrupts held off), user and kernel alike, named by the nearest symbol: pikku's release kernel, Debian's Linux 6.12.117 (`/proc/kallsyms` of the same boot). Functions appear in the order they were first reached; inlined code counts for the function it was inlined into. Totals include the few user instructions around the operation, so they are a little above `make bench`'s figures, which subtract an empty loop.\n").unwrap();
    for (op, name) in OPERATIONS {
        writeln!(md, "## {name}: pikku {}, Linux {}\n", pikku.total(op), linux.total(op)).unwrap();
        writeln!(md, "pikku:\n").unwrap();
        table(&mut md, pikku.operations.get(&op).map_or(&[][..], |v| v));
        writeln!(md, "\nLinux:\n").unwrap();
        table(&mut md, linux.operations.get(&op).map_or(&[][..], |v| v));
        writeln!(md).unwrap();
        if op == OPERATIONS[0].0 {
            writeln!(md, "pikku's {name}, instruction by instruction (function, then the instruction from `objdump -d`):\n\n```\n{}```\n", listings.getpid).unwrap();
        }
        if op == YIELD_OPERATION {
            let steps = listings.pkru_switch.lines().count();
            let per_switch = if listings.switches == 0 { 0.0 } else { steps as f64 / listings.switches as f64 };
            writeln!(md, "### The PKRU part of a context switch: pikku {per_switch:.1} instructions per switch, PKRU unchanged\n").unwrap();
            writeln!(md, "`{PKRU_SWITCH_FUNCTION}` (Linux: `x86_pkru_load()`) in the round trip above: {steps} instructions in {} switches, its `ret` included (the `call` and its two arguments, the threads' saved-PKRU words, are `switch_to`'s). No lock: the OSPKE test, the ECX zeroing, one RDPKRU, the store into the thread leaving, the compare that skips WRPKRU, and the return (only a switch that writes PKRU counts, in two per-CPU counters):\n\n```\n{}```\n", listings.switches, listings.pkru_switch).unwrap();
        }
    }
    let path = crate::repo_root().join("docs").join("trace.md");
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_objdumps_instruction_lines() {
        let text = "0000000000017760 <entry>:\n   17760:\tpush   r14\n   17dcf:\tlea    rcx,[rip+0x5cb5a]        # 74930 <CURRENT>\n\n";
        let d = parse_disassembly(text);
        assert_eq!(d.get(&0x17760).map(String::as_str), Some("push r14"));
        assert_eq!(d.get(&0x17dcf).map(String::as_str), Some("lea rcx,[rip+0x5cb5a]"));
        assert_eq!(d.len(), 2, "the symbol line is not an instruction");
    }

    #[test]
    fn names_addresses_by_the_nearest_symbol_below() {
        let s = Symbols::parse("0000000000001000 T a\n0000000000001040 t b\n0000000000002000 D data\n", 0x10);
        assert_eq!(s.name(0x1010), "a");
        assert_eq!(s.name(0x104f), "a");
        assert_eq!(s.name(0x1050), "b");
        assert_eq!(s.name(0x100f), "?");
        assert_eq!(s.address_of("b"), Some(0x1050));
        assert_eq!(s.address_of("data"), None, "data symbols are not functions");
    }

    #[test]
    fn finds_the_load_offset_from_the_syscall_entry() {
        let nm = "0000000000001000 T pikku_syscall_entry\n0000000000001100 T kernel_fn\n";
        let base = 0xffff_8000_0000_0000u64;
        let steps = [(1, 0x401000), (1, base + 0x1000), (1, base + 0x1101), (1, base + 0x1102), (1, 0x401002)];
        let user = Symbols::parse("0000000000401000 T main\n", 0);
        let t = summarise(&steps, &user, nm, Some("pikku_syscall_entry")).unwrap();
        assert_eq!(
            t.operations[&1],
            vec![("(user) main".to_string(), 2), ("pikku_syscall_entry".to_string(), 1), ("kernel_fn".to_string(), 2)]
        );
        assert_eq!(t.total(1), 5);
    }
}
