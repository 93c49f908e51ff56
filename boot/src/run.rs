//! Booting the kernel once in run mode (`make run`), with its console forwarded to the
//! terminal byte for byte, or captured for a test.
//!
//! When the ramdisk holds a program as `/init`, the kernel runs it and ends with one line —
//! `init exited with status N` or `init killed by signal N (NAME)` — which [`boot`] turns into
//! [`RunResult::init`], and `make run` into its own exit status (N, or 128 + N for a signal,
//! as a shell reports it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bootproto::exit::{classify, Outcome};
use bootproto::options::{BootOptions, LogLevel, Mode};

use crate::image;
use crate::qemu::Qemu;
use crate::Error;

/// A program to run as `/init`, with its arguments and extra files.
#[derive(Debug, Clone, Default)]
pub struct Init {
    /// The static ELF file on the host.
    pub program: PathBuf,
    /// Arguments after `argv[0]` (which is `/init`).
    pub args: Vec<String>,
    /// Extra files: (path on the host, path in the ramdisk).
    pub files: Vec<(PathBuf, String)>,
    /// 2-MiB huge pages the kernel puts in its pool at boot: Linux's `hugepages=` kernel
    /// parameter, which both kernels take (pikku as the boot option of the same name), so a
    /// program can use `MAP_HUGETLB` without writing `/proc/sys/vm/nr_hugepages` first. 0: none.
    pub hugepages: u64,
    /// Boot pikku with `pks=off` (its page tables not guarded by a supervisor key, where the
    /// CPU has PKS): `make bench`'s PKS-off rows. Linux ignores it (it has no PKS).
    pub pks_off: bool,
}

/// How the first user program ended, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitEnd {
    Exited(u8),
    Signaled(u8),
}

impl InitEnd {
    /// What a shell would report: the code, or 128 + the signal.
    pub fn shell_status(self) -> i32 {
        match self {
            InitEnd::Exited(c) => c as i32,
            InitEnd::Signaled(s) => 128 + s as i32,
        }
    }
}

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    /// The console output (empty unless captured).
    pub output: String,
    pub init: Option<InitEnd>,
}

/// The files every ramdisk carries (`rootfs/` in the repository: `/etc/passwd`, …).
pub fn rootfs_files() -> Vec<(String, Vec<u8>)> {
    let root = crate::repo_root().join("rootfs");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(data) = std::fs::read(&p) {
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                out.push((format!("/{rel}"), data));
            }
        }
    }
    out.sort();
    out
}

/// The ramdisk files for `init`: the program as `/init`, `pikku/argv` and `pikku/envp`
/// (NUL-separated), the rootfs and the extra files.
pub fn init_files(init: &Init) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let program = std::fs::read(&init.program).map_err(|e| format!("cannot read {}: {e}", init.program.display()))?;
    let mut argv = b"/init\0".to_vec();
    for a in &init.args {
        argv.extend_from_slice(a.as_bytes());
        argv.push(0);
    }
    // Linux hands init HOME=/ and TERM=linux.
    let envp = b"HOME=/\0TERM=linux\0".to_vec();
    let mut files = rootfs_files();
    files.push(("/init".into(), program));
    files.push(("/pikku/argv".into(), argv));
    files.push(("/pikku/envp".into(), envp));
    for (host, dest) in &init.files {
        let data = std::fs::read(host).map_err(|e| format!("cannot read {}: {e}", host.display()))?;
        files.push((dest.clone(), data));
    }
    Ok(files)
}

/// Parses the kernel's closing line for `/init`.
pub fn parse_init_end(output: &str) -> Option<InitEnd> {
    output.lines().rev().find_map(|line| {
        let (_, rest) = line.split_once(" exit] init ")?;
        if let Some(n) = rest.strip_prefix("exited with status ") {
            return n.trim().parse().ok().map(InitEnd::Exited);
        }
        let n = rest.strip_prefix("killed by signal ")?;
        n.split_whitespace().next()?.parse().ok().map(InitEnd::Signaled)
    })
}

/// Boots `kernel` with `mode=run`, optionally running `init`. With `capture`, the console
/// output is returned; otherwise it is forwarded to standard output as it arrives.
pub fn boot(kernel: &Path, qemu: &Qemu, log: LogLevel, init: Option<&Init>, capture: bool) -> Result<RunResult, Error> {
    let watch = Watch { heartbeat: None, limit: None, echo: !capture, keep: capture };
    boot_watched(kernel, qemu, log, init, &watch).map(|(result, _)| result)
}

/// How [`boot_watched`] treats the console.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Boot with `heartbeat=1` and call the kernel hung (stop QEMU) when no heartbeat line
    /// arrives for this long.
    pub heartbeat: Option<Duration>,
    /// Stop QEMU after this long whatever happens (a program that stalls in user space while
    /// the kernel's heartbeat goes on).
    pub limit: Option<Duration>,
    /// Forward the console to standard output as it arrives (heartbeat lines left out).
    pub echo: bool,
    /// Return the console output in [`RunResult::output`].
    pub keep: bool,
}

/// The kernel's heartbeat line (`heartbeat=` boot option) ends with this.
pub const HEARTBEAT: &str = " beat] alive";

/// Why [`boot_watched`] stopped QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The heartbeat stopped: the kernel hung.
    Hung,
    /// [`Watch::limit`] passed.
    OverTime,
}

/// Boots like [`boot`], watching for the kernel's heartbeat. Returns the result and why QEMU
/// was stopped, if it was.
pub fn boot_watched(kernel: &Path, qemu: &Qemu, log: LogLevel, init: Option<&Init>, watch: &Watch) -> Result<(RunResult, Option<Stopped>), Error> {
    crate::qemu::check_installed(qemu.firmware)?;
    let heartbeat = watch.heartbeat.map_or(0, |_| 1);
    let hugepages = init.map_or(0, |i| i.hugepages);
    let pks = !init.is_some_and(|i| i.pks_off);
    let options = BootOptions { log, mode: Mode::Run, heartbeat, hugepages, pks, ..BootOptions::default() };
    let files = match init {
        Some(init) => init_files(init)?,
        None => rootfs_files(),
    };
    let disk = image::disk_image(kernel, &image::ramdisk(&options, &files), qemu.firmware, log == LogLevel::Debug)?;
    let vars = qemu.prepare_vars()?;
    let mut child = qemu
        .command(&disk, vars.as_deref())
        .stdin(if watch.echo { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    // A reader thread, so that the wait for output can time out.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut line = Vec::new();
    let started = Instant::now();
    let mut last_beat = started;
    let mut booted = false;
    let patience = watch.heartbeat.unwrap_or(Duration::MAX);
    let limit = watch.limit.unwrap_or(Duration::MAX);
    let stopped = loop {
        let received = rx.recv_timeout(Duration::from_millis(500));
        let why = if booted && last_beat.elapsed() > patience {
            Some(Stopped::Hung)
        } else if started.elapsed() > limit {
            Some(Stopped::OverTime)
        } else {
            None
        };
        if why.is_some() {
            let _ = child.kill();
            break why;
        }
        let chunk = match received {
            Ok(chunk) => chunk,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        };
        if watch.heartbeat.is_none() {
            // Nothing to filter: byte for byte, as it arrives (a prompt without a newline too).
            if watch.echo {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&chunk);
                let _ = out.flush();
            }
            seen.extend_from_slice(&chunk);
            continue;
        }
        for &b in &chunk {
            line.push(b);
            if b != b'\n' {
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            // The kernel's first line starts the wait for its first heartbeat (firmware and
            // bootloader before it can take a while on a busy machine: only `limit` bounds them).
            if text.trim_end().ends_with(HEARTBEAT) || text.contains("] pikku booting") {
                last_beat = Instant::now();
                booted = true;
            }
            if text.trim_end().ends_with(HEARTBEAT) {
            } else {
                if watch.echo {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&line);
                    let _ = out.flush();
                }
                seen.extend_from_slice(&line);
            }
            line.clear();
        }
    };
    if watch.echo {
        let _ = std::io::stdout().lock().write_all(&line);
    }
    seen.extend_from_slice(&line);
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    let _ = reader.join();
    let _ = std::fs::remove_file(&disk);
    if let Some(v) = vars {
        let _ = std::fs::remove_file(v);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let init_end = parse_init_end(&text);
    let result = RunResult { outcome: classify(status.code().unwrap_or(-1)), output: if watch.keep { text } else { String::new() }, init: init_end };
    Ok((result, stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_init_line() {
        assert_eq!(parse_init_end("hello\n[   0.100 exit] init exited with status 7\n"), Some(InitEnd::Exited(7)));
        assert_eq!(parse_init_end("[   0.1 exit] init killed by signal 11 (SIGSEGV)\n"), Some(InitEnd::Signaled(11)));
        assert_eq!(parse_init_end("init exited with status 3\n"), None, "a program's own text is not the kernel's line");
        assert_eq!(InitEnd::Signaled(11).shell_status(), 139);
    }
}
