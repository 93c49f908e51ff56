//! QEMU's command line, written in one place.
//!
//! Every boot of pikku — `make run`, the test matrix, the benchmarks and traces — goes through
//! [`Qemu::command`], so all of them agree on the machine: `-cpu max` (which under TCG emulates
//! PKU and PKS) unless told otherwise, 512 MiB, no display, COM1 on standard output, no reboot
//! (a triple fault ends QEMU with status 0 instead of looping), and the `isa-debug-exit` device
//! the kernel ends QEMU with ([`bootproto::exit`]).
//!
//! A machine with more than one CPU (`-smp N`, N > 1) runs a host thread per CPU (QEMU's MTTCG).
//! This machine has 2 cores shared by several sessions, so such guests take turns: whoever boots
//! one holds an exclusive `flock` on [`SMP_LOCK`] while its QEMU runs ([`Qemu::machine`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::Firmware;
use crate::Error;

/// Debian's OVMF (package `ovmf`), the UEFI firmware.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's variable store template; each boot gets its own writable copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub firmware: Firmware,
    /// The `-cpu` model: `max` (PKU, PKS) or e.g. `qemu64` (no PKU).
    pub cpu: String,
    /// Use KVM (only where /dev/kvm works; KVM here exposes no PKU, so never for pkey tests).
    pub kvm: bool,
    /// Extra arguments, passed through as they are.
    pub extra_args: Vec<String>,
    /// Virtual CPUs (`-smp`). 1 — the default — keeps timings and instruction counts as they
    /// were on one CPU (`make bench` needs that). A guest with more takes [`SMP_LOCK`] for its
    /// whole life, so that no two of them run at once on this machine.
    pub smp: u32,
    /// NUMA nodes (`-numa`): 0 — the default — gives QEMU no `-numa` option (no SRAT: one node
    /// for the guest). N ≥ 1 splits the 512 MiB into N equal `memory-backend-ram` objects, one
    /// node each, and gives the machine at least N CPUs spread evenly over the nodes (N = `smp`:
    /// one node per CPU, the shape `make run NUMA=N` and the NUMA conformance cases use).
    pub numa: u32,
}

/// The lock every guest with `-smp` > 1 holds while it runs (an exclusive `flock`): MTTCG runs
/// one host thread per vCPU, and two such guests on a 2-core host starve each other.
pub const SMP_LOCK: &str = "/tmp/pikku-smp.lock";

impl Default for Qemu {
    fn default() -> Self {
        Qemu { firmware: Firmware::Bios, cpu: "max".into(), kvm: false, extra_args: Vec::new(), smp: 1, numa: 0 }
    }
}

/// Checks that QEMU (and OVMF for UEFI) are installed; one line saying what to do if not.
pub fn check_installed(firmware: Firmware) -> Result<(), Error> {
    let qemu_ok = Command::new("qemu-system-x86_64").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !qemu_ok {
        return Err("qemu-system-x86_64 not found: run `scripts/setup.sh` (or `apt-get install qemu-system-x86`)".into());
    }
    if firmware == Firmware::Uefi && !Path::new(OVMF_CODE).exists() {
        return Err(format!("{OVMF_CODE} not found: run `scripts/setup.sh` (or `apt-get install ovmf`)"));
    }
    Ok(())
}

/// The guest's memory, in MiB (QEMU `-m`); with `-numa`, shared equally by the nodes.
pub const MEMORY_MIB: u32 = 512;

impl Qemu {
    /// The CPUs the machine gets: `smp`, but at least one per NUMA node.
    pub fn cpus(&self) -> u32 {
        self.smp.max(self.numa).max(1)
    }

    /// The command that boots `image`. For UEFI, `vars` must be a writable copy of
    /// [`OVMF_VARS`] (see [`Qemu::prepare_vars`]).
    pub fn command(&self, image: &Path, vars: Option<&Path>) -> Command {
        let mut cmd = self.machine();
        if self.firmware == Firmware::Uefi {
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            let vars = vars.expect("UEFI boots need a writable OVMF_VARS copy");
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        cmd.arg("-drive").arg(format!("format=raw,file={}", image.display()));
        cmd.args(&self.extra_args);
        cmd
    }

    /// The machine every boot uses — pikku's and Linux's alike (the conformance runner boots
    /// Debian's kernel with exactly these flags plus `-kernel`/`-initrd`/`-append`).
    pub fn machine(&self) -> Command {
        let cpus = self.cpus();
        let mut cmd = if cpus > 1 {
            // The lock is taken on a descriptor QEMU inherits through `exec`: it is held exactly
            // as long as QEMU lives, whoever ends it (the harness kills the process it started,
            // which by then *is* QEMU).
            let mut sh = Command::new("sh");
            sh.args(["-c", &format!("exec 9>>{SMP_LOCK} && flock 9 && exec qemu-system-x86_64 \"$@\""), "sh"]);
            sh
        } else {
            Command::new("qemu-system-x86_64")
        };
        cmd.args(["-cpu", &self.cpu, "-m", &format!("{MEMORY_MIB}M"), "-no-reboot", "-display", "none", "-monitor", "none"]);
        if cpus > 1 {
            cmd.args(["-smp", &cpus.to_string()]);
        }
        for node in 0..self.numa {
            // Node n: its own RAM object and CPUs [n·cpus/N, (n+1)·cpus/N).
            let (first, end) = (node * cpus / self.numa, (node + 1) * cpus / self.numa);
            cmd.arg("-object").arg(format!("memory-backend-ram,id=ram{node},size={}M", MEMORY_MIB / self.numa));
            cmd.arg("-numa").arg(format!("node,nodeid={node},cpus={first}-{},memdev=ram{node}", end - 1));
        }
        cmd.args(["-serial", "stdio"]);
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        if self.kvm {
            cmd.arg("-enable-kvm");
        }
        cmd
    }

    /// For UEFI: a fresh writable copy of the OVMF variable store (OVMF writes to it).
    pub fn prepare_vars(&self) -> Result<Option<PathBuf>, Error> {
        if self.firmware != Firmware::Uefi {
            return Ok(None);
        }
        let path = crate::image::unique_path("ovmf-vars", "fd");
        std::fs::copy(OVMF_VARS, &path).map_err(|e| format!("cannot copy {OVMF_VARS}: {e}"))?;
        Ok(Some(path))
    }
}

/// Is KVM usable here?
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}
