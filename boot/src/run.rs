//! Booting the kernel once in run mode (`make run`), with its console on the terminal or
//! captured for a test.

use std::path::Path;
use std::process::Stdio;

use bootproto::exit::{classify, Outcome};
use bootproto::options::{BootOptions, LogLevel, Mode};

use crate::image;
use crate::qemu::Qemu;
use crate::Error;

/// Boots `kernel` with `mode=run`. With `capture`, returns the console output; otherwise the
/// console goes to this process's standard output.
pub fn boot(kernel: &Path, qemu: &Qemu, log: LogLevel, capture: bool) -> Result<(Outcome, String), Error> {
    crate::qemu::check_installed(qemu.firmware)?;
    let options = BootOptions { log, mode: Mode::Run, ..BootOptions::default() };
    let disk = image::disk_image(kernel, &image::ramdisk(&options, &[]), qemu.firmware, log == LogLevel::Debug)?;
    let vars = qemu.prepare_vars()?;
    let mut cmd = qemu.command(&disk, vars.as_deref());
    let result = if capture {
        cmd.stdin(Stdio::null()).output().map(|o| (o.status, String::from_utf8_lossy(&o.stdout).into_owned()))
    } else {
        cmd.status().map(|s| (s, String::new()))
    };
    let _ = std::fs::remove_file(&disk);
    if let Some(v) = vars {
        let _ = std::fs::remove_file(v);
    }
    let (status, output) = result.map_err(|e| format!("cannot start QEMU: {e}"))?;
    Ok((classify(status.code().unwrap_or(-1)), output))
}
