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
    crate::qemu::check_installed(qemu.firmware)?;
    let options = BootOptions { log, mode: Mode::Run, ..BootOptions::default() };
    let files = match init {
        Some(init) => init_files(init)?,
        None => rootfs_files(),
    };
    let disk = image::disk_image(kernel, &image::ramdisk(&options, &files), qemu.firmware, log == LogLevel::Debug)?;
    let vars = qemu.prepare_vars()?;
    let mut child = qemu
        .command(&disk, vars.as_deref())
        .stdin(if capture { Stdio::null() } else { Stdio::inherit() })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        if !capture {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    let _ = std::fs::remove_file(&disk);
    if let Some(v) = vars {
        let _ = std::fs::remove_file(v);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let init_end = parse_init_end(&text);
    Ok(RunResult { outcome: classify(status.code().unwrap_or(-1)), output: if capture { text } else { String::new() }, init: init_end })
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
