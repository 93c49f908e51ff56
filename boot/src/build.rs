//! Building the kernel: `cargo build` (or `cargo test --no-run`) in `kernel/`.
//!
//! The kernel is its own cargo workspace with its own target directory (`kernel/target`), so
//! this nested cargo never waits for the lock of an outer `cargo test`. Variables an outer cargo
//! may have set for *its* build are removed so they do not leak into the kernel's.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::Error;

/// Which kernel binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The kernel `make run` boots.
    Run,
    /// The test build: the same kernel plus every `#[ktest]` and the harness.
    Test,
    /// The run kernel, optimized (`--release`): what the benchmarks measure.
    Release,
}

/// Variables an outer cargo sets for its own build, which must not leak into a nested one.
const OUTER_CARGO_VARS: [&str; 5] = ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_MANIFEST_DIR"];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for var in OUTER_CARGO_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(crate::repo_root().join("kernel"));
    cmd
}

/// Builds the kernel and returns the path of its ELF file.
pub fn kernel(which: Kernel) -> Result<PathBuf, Error> {
    let profile = match which {
        Kernel::Run => Some("debug"),
        Kernel::Release => Some("release"),
        Kernel::Test => None,
    };
    if let Some(profile) = profile {
        let mut cmd = cargo();
        cmd.args(["build", "--quiet", "--bin", "kernel"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building the {profile} kernel failed (see the compiler's messages above)"));
        }
        return Ok(crate::repo_root().join("kernel/target/x86_64-unknown-none").join(profile).join("kernel"));
    }
    match which {
        Kernel::Run | Kernel::Release => unreachable!("handled above"),
        Kernel::Test => {
            let out = cargo()
                .args(["test", "--quiet", "--no-run", "--bin", "kernel", "--message-format=json"])
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err("building the test kernel failed (see the compiler's messages above)".into());
            }
            // The last compiler-artifact with an "executable" is the test kernel.
            let stdout = String::from_utf8_lossy(&out.stdout);
            stdout
                .lines()
                .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"test\":true"))
                .filter_map(|l| json_string_field(l, "executable"))
                .next_back()
                .map(PathBuf::from)
                .ok_or_else(|| "cargo built the test kernel but named no executable".into())
        }
    }
}

/// Builds the user programs (`user/Makefile`: musl-gcc and gcc -nostdlib) into
/// `target/user/` and returns that directory.
pub fn user_programs() -> Result<PathBuf, Error> {
    let out = crate::repo_root().join("target").join("user");
    let mut make = Command::new("make");
    for var in OUTER_CARGO_VARS {
        make.env_remove(var);
    }
    let status = make
        .args(["-s", "-C"])
        .arg(crate::repo_root().join("user"))
        .arg(format!("OUT={}", out.display()))
        .status()
        .map_err(|e| format!("cannot run make: {e}"))?;
    if !status.success() {
        return Err("building the user programs failed (is musl-tools installed? run scripts/setup.sh)".into());
    }
    Ok(out)
}

/// Extracts `"field":"value"` from one line of cargo's JSON (values here have no escapes).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_executable_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/x/kernel-abc","fresh":true}"#;
        assert_eq!(super::json_string_field(line, "executable").as_deref(), Some("/x/kernel-abc"));
        assert_eq!(super::json_string_field(r#"{"executable":null}"#, "executable"), None);
    }
}
