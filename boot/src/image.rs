//! The ramdisk and the disk images.
//!
//! The ramdisk is a cpio newc archive ([`bootproto::cpio`]) holding the boot options at
//! [`bootproto::options::CMDLINE_PATH`], plus any extra files. The `bootloader` crate
//! (`BiosBoot` / `UefiBoot`) writes kernel + ramdisk into a bootable disk image; the bootloader
//! loads both and tells the kernel where the ramdisk is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bootproto::cpio;
use bootproto::options::{BootOptions, CMDLINE_PATH};

use crate::Error;

/// Which firmware boots the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    /// Parses `bios` or `uefi`.
    pub fn parse(s: &str) -> Option<Firmware> {
        match s {
            "bios" => Some(Firmware::Bios),
            "uefi" => Some(Firmware::Uefi),
            _ => None,
        }
    }
}

/// Builds the ramdisk archive: the boot options, then `files` (path in the archive, contents).
/// With `PIKKU_PKS=off` in the environment every boot gets `pks=off` — how the cost of the
/// page-table key is measured over a whole run (`make test`, `make bench`).
pub fn ramdisk(options: &BootOptions, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut options = *options;
    if std::env::var("PIKKU_PKS").is_ok_and(|v| v == "off") {
        options.pks = false;
    }
    let mut w = cpio::Writer::new();
    w.dir("pikku");
    w.file(CMDLINE_PATH, 0o644, options.to_cmdline().as_bytes());
    for (path, data) in files {
        w.file(path, 0o755, data);
    }
    w.finish()
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// A fresh file name in the work directory (several boots may run at once).
pub fn unique_path(stem: &str, ext: &str) -> PathBuf {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    crate::work_dir().join(format!("{stem}-{}-{n}.{ext}", std::process::id()))
}

/// The bootloader's own settings: it logs to serial only when `verbose` (LOG=debug), so that
/// every other line on the console is the kernel's; no framebuffer logging (QEMU runs with no
/// display, and drawing text is slow under emulation).
fn bootloader_config(verbose: bool) -> bootloader::BootConfig {
    let mut config = bootloader::BootConfig::default();
    config.serial_logging = verbose;
    config.frame_buffer_logging = false;
    config
}

/// Writes a disk image that boots `kernel` with `ramdisk`; returns its path. `verbose` lets
/// the bootloader log its own steps to serial.
pub fn disk_image(kernel: &Path, ramdisk: &[u8], firmware: Firmware, verbose: bool) -> Result<PathBuf, Error> {
    let config = bootloader_config(verbose);
    let ramdisk_path = unique_path("ramdisk", "cpio");
    std::fs::write(&ramdisk_path, ramdisk).map_err(|e| format!("cannot write {}: {e}", ramdisk_path.display()))?;
    let (image, result) = match firmware {
        Firmware::Bios => {
            let image = unique_path("pikku-bios", "img");
            let r = bootloader::BiosBoot::new(kernel).set_ramdisk(&ramdisk_path).set_boot_config(&config).create_disk_image(&image);
            (image, r)
        }
        Firmware::Uefi => {
            let image = unique_path("pikku-uefi", "img");
            let r = bootloader::UefiBoot::new(kernel).set_ramdisk(&ramdisk_path).set_boot_config(&config).create_disk_image(&image);
            (image, r)
        }
    };
    let _ = std::fs::remove_file(&ramdisk_path);
    result.map_err(|e| format!("cannot create the disk image: {e:#}"))?;
    Ok(image)
}
