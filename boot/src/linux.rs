//! The Linux reference runner: the same static program, run as `/init` by Debian's kernel in
//! the same QEMU machine.
//!
//! * **The kernel**: Debian's `linux-image-6.12.117+deb12-amd64` (6.12.117-1~deb12u1, the
//!   version `shared/reference/linux-pkeys.md` was read from), fetched with `apt-get download`
//!   into `target/linux/` — nothing is installed system-wide — and unpacked with `dpkg-deb`. If
//!   that exact version has left the archive, the runner says so and takes the newest
//!   `linux-image-6.12*-amd64` instead.
//! * **The initramfs**: a cpio newc archive with the program as `/init` plus the same files
//!   pikku's ramdisk gets (`rootfs/`, extra files). Arguments go on the kernel command line
//!   after `--`, which Linux hands to init as `argv[1..]`.
//! * **The boot**: [`crate::qemu::Qemu::machine`] (the flags pikku boots with, `-smp` included)
//!   plus `-kernel … -initrd … -append "console=ttyS0 quiet panic=-1 -- ARGS"` (plus
//!   `hugepages=N` when the program needs a huge-page pool, [`crate::run::Init::hugepages`]).
//! * **The output**: Linux's tty turns `\n` into `\r\n` (ONLCR), so `\r\n` becomes `\n`; kernel
//!   log lines (`[    2.226316] …`) are dropped. When init ends, Linux panics with
//!   `Attempted to kill init! exitcode=0x…`: that code is init's wait status (`0x700` = exit 7,
//!   `0xb` = killed by SIGSEGV); `panic=-1` reboots at once and `-no-reboot` ends QEMU. A program
//!   that calls `reboot(LINUX_REBOOT_CMD_POWER_OFF)` ends the machine itself.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use bootproto::cpio;

use crate::qemu::Qemu;
use crate::run::{Init, InitEnd};
use crate::Error;

/// The package the reference document was read from.
pub const PACKAGE: &str = "linux-image-6.12.117+deb12-amd64";
/// Its version.
pub const VERSION: &str = "6.12.117-1~deb12u1";

fn cache_dir() -> PathBuf {
    let dir = crate::repo_root().join("target").join("linux");
    std::fs::create_dir_all(&dir).expect("cannot create target/linux");
    dir
}

/// `apt-get download SPEC` (a package, or `package=version`) into `dir`, as any user (nothing
/// is installed); the path of the `.deb`. Refreshes the package lists once if the first try
/// fails (they may be stale or absent on a fresh machine).
pub fn apt_download(dir: &std::path::Path, spec: &str) -> Result<PathBuf, Error> {
    let run = || Command::new("apt-get").args(["download", "-qq", spec]).current_dir(dir).stderr(Stdio::null()).status();
    if !run().is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get").args(["update", "-qq"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !run().is_ok_and(|s| s.success()) {
            return Err(format!("apt-get download {spec} failed"));
        }
    }
    let package = spec.split('=').next().unwrap_or(spec);
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_"))))
        .ok_or_else(|| format!("apt-get download {spec} left no .deb in {}", dir.display()))
}

fn newest_612() -> Option<String> {
    let out = Command::new("apt-cache").args(["search", "--names-only", "^linux-image-6\\.12.*-amd64$"]).output().ok()?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|n| !n.contains("unsigned") && !n.contains("dbg"))
        .collect();
    names.sort_by_key(|a| version_key(a));
    names.pop()
}

fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// The path of Debian's `vmlinuz` (downloaded and unpacked on first use), and which package
/// it came from.
pub fn kernel() -> Result<(PathBuf, String), Error> {
    let dir = cache_dir();
    let exact = dir.join(format!("vmlinuz-{}", PACKAGE.trim_start_matches("linux-image-")));
    if exact.exists() {
        return Ok((exact, format!("{PACKAGE} {VERSION}")));
    }
    let (package, deb) = match apt_download(&dir, PACKAGE) {
        Ok(deb) => (PACKAGE.to_string(), deb),
        Err(_) => {
            let newest = newest_612().ok_or_else(|| format!("{PACKAGE} is not in the archive, and no linux-image-6.12*-amd64 is"))?;
            eprintln!("pikku: {PACKAGE} ({VERSION}) has left the archive; using {newest} instead");
            let deb = apt_download(&dir, &newest)?;
            (newest, deb)
        }
    };
    let status = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --strip-components=2 --wildcards './boot/vmlinuz-*'")
        .args(["sh", &deb.to_string_lossy(), &dir.to_string_lossy()])
        .status()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let _ = std::fs::remove_file(&deb);
    if !status.success() {
        return Err(format!("could not unpack vmlinuz from {}", deb.display()));
    }
    let vmlinuz = dir.join(format!("vmlinuz-{}", package.trim_start_matches("linux-image-")));
    if !vmlinuz.exists() {
        return Err(format!("{} not found after unpacking", vmlinuz.display()));
    }
    Ok((vmlinuz, package))
}

/// The initramfs for `init`: every file `pikku` would carry, with their directories.
pub fn initramfs(init: &Init) -> Result<Vec<u8>, Error> {
    let files = crate::run::init_files(init)?;
    let mut w = cpio::Writer::new();
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in &files {
        let mut parent = String::new();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
            }
        }
    }
    for d in &dirs {
        w.dir(d);
    }
    for (path, data) in &files {
        w.file(path, 0o755, data);
    }
    Ok(w.finish())
}

/// Is this a kernel log line (`[    2.226316] …`)?
pub fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else { return false };
    let Some((stamp, _)) = rest.split_once(']') else { return false };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Did the boot end the way a test program ends: init ended (the panic line) or powered off?
/// Anything else — no console at all, a reset, a crash before init — is no transcript, and
/// must not become a golden file.
pub fn ended_normally(console: &str) -> bool {
    console.contains("Attempted to kill init!") || console.contains("reboot: Power down")
}

/// Reads init's end from Linux's panic line.
pub fn parse_end(output: &str) -> Option<InitEnd> {
    let (_, code) = output.split_once("Attempted to kill init! exitcode=0x")?;
    let code = u32::from_str_radix(code.split(|c: char| !c.is_ascii_hexdigit()).next()?, 16).ok()?;
    Some(if code & 0x7f == 0 { InitEnd::Exited((code >> 8) as u8) } else { InitEnd::Signaled((code & 0x7f) as u8) })
}

/// Runs `init` on Linux on `machine` (its CPU model, CPUs and NUMA nodes; firmware, KVM and
/// extra arguments are not used); returns the program's output
/// (kernel lines dropped, `\r\n` → `\n`), the full console, and how init ended (`None`: it
/// powered off).
pub fn run(init: &Init, machine: &Qemu) -> Result<(String, String, Option<InitEnd>), Error> {
    run_with(init, machine, &[], "")
}

/// [`run`] with extra QEMU arguments (e.g. `-icount shift=0`) and extra kernel parameters. A
/// machine with more than one CPU waits for its turn (the lock `Qemu::machine` takes) and holds it while it runs.
pub fn run_with(init: &Init, machine: &Qemu, qemu_args: &[&str], kernel_params: &str) -> Result<(String, String, Option<InitEnd>), Error> {
    let (vmlinuz, _) = kernel()?;
    let initrd = crate::image::unique_path("linux-initrd", "cpio");
    std::fs::write(&initrd, initramfs(init)?).map_err(|e| e.to_string())?;
    let mut append = String::from("console=ttyS0 quiet panic=-1");
    if !kernel_params.is_empty() {
        append.push(' ');
        append.push_str(kernel_params);
    }
    if init.hugepages != 0 {
        append.push_str(&format!(" hugepages={}", init.hugepages));
    }
    if !init.args.is_empty() {
        append.push_str(" -- ");
        append.push_str(&init.args.join(" "));
    }
    let qemu = Qemu { cpu: machine.cpu.clone(), extra_args: qemu_args.iter().map(|a| a.to_string()).collect(), smp: machine.smp, numa: machine.numa, ..Qemu::default() };
    let out = qemu
        .machine()
        .args(&qemu.extra_args)
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let _ = std::fs::remove_file(&initrd);
    let console = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let program: String = console.split_inclusive('\n').filter(|l| !is_kernel_line(l)).collect();
    Ok((program, console.clone(), parse_end(&console)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_linux_panic_lines() {
        let out = "hi\n[    2.226316] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000700\n";
        assert_eq!(parse_end(out), Some(InitEnd::Exited(7)));
        assert_eq!(parse_end("Attempted to kill init! exitcode=0x0000000b\n"), Some(InitEnd::Signaled(11)));
        assert_eq!(parse_end("Attempted to kill init! exitcode=0x00000000\n"), Some(InitEnd::Exited(0)));
        assert!(ended_normally(out));
        assert!(ended_normally("powering off\n[   13.375088] reboot: Power down\n"));
        assert!(!ended_normally(""));
        assert!(is_kernel_line("[    2.226316] Kernel panic"));
        assert!(!is_kernel_line("[ktest] start x"));
        assert!(!is_kernel_line("plain"));
    }
}
