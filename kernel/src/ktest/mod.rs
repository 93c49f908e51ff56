//! The in-kernel test harness.
//!
//! Tests are ordinary functions marked `#[ktest]` next to the code they test (see the
//! `ktest-macros` crate); the compiler's `custom_test_frameworks` collects them into one slice
//! for the test build of the kernel (`cargo test` in `kernel/` builds it; `boot` boots it with
//! `mode=test`). [`runner`] runs them in order and prints:
//!
//! ```text
//! [ktest] start pkeys_alloc::fifteen_keys_then_enospc      ← before each test (for hang reports)
//! test pkeys_alloc::fifteen_keys_then_enospc ... ok        ← one result line per test
//! test arch::x86_64::pkru::tests::rdpkru_ud ... skipped (needs no PKU)
//! test foo::bar ... FAILED                                 ← from the panic handler, then
//!     panicked at kernel/src/foo.rs:12:5: assertion …      ←   the message, indented
//! [ktest] 3 skipped
//! 41 passed, 0 failed                                      ← closing line
//! ```
//!
//! The kernel cannot unwind, so a failing assertion ends the boot: the panic handler prints the
//! FAILED line and exits QEMU with `ExitCode::Panic`; the host runner boots again with
//! `ktest.start_after=<that test>` and the counts so far in `ktest.carry=…`, so one failure
//! never hides the others and the closing line of the last boot covers the whole run.
//!
//! A test can also *expect* to end the boot: `#[ktest(panics = "text")]` passes if it panics
//! with a message containing `text` (a kernel stack overflow, reported by the double-fault
//! handler, is such an end). The panic handler then prints the `ok` line and `[ktest] resume
//! after <test>`, and the host boots again after it; a test that returns instead fails.

use bootproto::exit::ExitCode;
use bootproto::options::{BootOptions, Counts};
use crate::sync::Mutex;

use alloc::sync::Arc;

use crate::arch::x86_64::{cpu, qemu};
use crate::mm::address_space::Mm;
use crate::task::{self, Thread};

#[cfg(test)]
mod selftest;

/// What a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Runs everywhere.
    Nothing,
    /// Needs protection keys (OSPKE): skipped under `-cpu qemu64`.
    Pku,
    /// Tests the no-pkeys paths: skipped where pkeys exist.
    NoPku,
    /// The harness's own deliberately failing tests: only with `ktest.selftest=1`.
    HarnessSelftest,
    /// More than one CPU online (QEMU `-smp 2` or more): skipped on one CPU.
    Smp,
    /// More than one NUMA node with memory (QEMU `-numa`, 2 nodes or more): skipped on one.
    Numa,
    /// Page tables guarded by a supervisor protection key (PKS enabled): skipped under
    /// `-cpu qemu64` and with `pks=off`.
    Pks,
    /// PKS enabled and more than one CPU online.
    PksSmp,
}

impl Needs {
    fn met(self) -> bool {
        let pkeys = cpu::pkey_support() == pkeys::Support::Enabled;
        match self {
            Needs::Nothing => true,
            Needs::Pku => pkeys,
            Needs::NoPku => !pkeys,
            Needs::HarnessSelftest => crate::boot_options().harness_selftest,
            Needs::Smp => crate::arch::x86_64::percpu::online_cpus().count() > 1,
            Needs::Numa => crate::mm::numa::online_nodes().count() > 1,
            Needs::Pks => crate::arch::x86_64::pks::enabled(),
            Needs::PksSmp => Needs::Pks.met() && Needs::Smp.met(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Needs::Nothing => "nothing",
            Needs::Pku => "PKU",
            Needs::NoPku => "a CPU without PKU",
            Needs::HarnessSelftest => "ktest.selftest=1",
            Needs::Smp => "more than one CPU",
            Needs::Numa => "more than one NUMA node",
            Needs::Pks => "PKS enabled",
            Needs::PksSmp => "PKS enabled and more than one CPU",
        }
    }
}

/// One registered test (made by `#[ktest]`).
pub struct KTest {
    /// [`module::path::function`], as `module_path!()` spells it.
    pub name: &'static str,
    pub needs: Needs,
    /// `Some(text)`: the test must end the boot with a panic whose message contains `text`.
    pub expect_panic: Option<&'static str>,
    pub run: fn(),
}

impl KTest {
    /// The name without the crate prefix (`kernel::`).
    pub fn short_name(&self) -> &'static str {
        short(self.name)
    }
}

fn short(name: &'static str) -> &'static str {
    name.strip_prefix("kernel::").unwrap_or(name)
}

/// The panic text the running test expects, if any (for the panic handler).
static TESTS_EXPECTING_PANIC: Mutex<Option<&'static str>> = Mutex::new(None);

/// A `fmt::Write` into a fixed buffer (truncating), for the panic path.
struct FixedText {
    bytes: [u8; 512],
    len: usize,
}

impl core::fmt::Write for FixedText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl FixedText {
    fn as_str(&self) -> &str {
        let bytes = &self.bytes[..self.len];
        core::str::from_utf8(bytes).unwrap_or_else(|e| core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""))
    }
}

/// The test running now, and the counts of this run so far (for the panic handler).
static STATE: Mutex<(Option<&'static str>, Counts)> = Mutex::new((None, Counts { passed: 0, failed: 0, skipped: 0 }));

/// Runs every test after `ktest.start_after`, then prints the closing count and ends QEMU.
pub fn runner(tests: &[&KTest]) {
    let opts: BootOptions<'static> = crate::boot_options();
    let start = match opts.start_after {
        None => 0,
        Some(after) => match tests.iter().position(|t| t.short_name() == after) {
            Some(i) => i + 1,
            None => {
                crate::println!("[ktest] error: ktest.start_after={after} names no test");
                qemu::exit(ExitCode::Failed);
            }
        },
    };
    STATE.lock().1 = opts.carry;
    crate::println!("[ktest] running tests {}..{} of {}", start + 1, tests.len(), tests.len());

    for test in &tests[start..] {
        let name = test.short_name();
        if !test.needs.met() {
            crate::println!("test {name} ... skipped (needs {})", test.needs.describe());
            STATE.lock().1.skipped += 1;
            continue;
        }
        crate::println!("[ktest] start {name}");
        *TESTS_EXPECTING_PANIC.lock() = test.expect_panic;
        STATE.lock().0 = Some(test.name);
        (test.run)();
        let mut state = STATE.lock();
        state.0 = None;
        if let Some(expected) = test.expect_panic {
            state.1.failed += 1;
            drop(state);
            crate::println!("test {name} ... FAILED");
            crate::println!("    returned, but it should have panicked with {expected:?}");
            continue;
        }
        state.1.passed += 1;
        drop(state);
        crate::println!("test {name} ... ok");
    }

    let counts = STATE.lock().1;
    crate::println!("[ktest] {} skipped", counts.skipped);
    crate::println!("{} passed, {} failed", counts.passed, counts.failed);
    qemu::exit(if counts.failed == 0 { ExitCode::Success } else { ExitCode::Failed });
}

/// Called by the panic handler: if a test was running, reports it — as passed if it expected
/// this panic, else as FAILED — and returns `true`.
pub fn report_panic(info: &core::panic::PanicInfo) -> bool {
    // The panic may have struck while STATE was locked; never wait for it.
    let Some(state) = STATE.try_lock() else { return false };
    let Some(name) = state.0 else { return false };
    let expected = TESTS_EXPECTING_PANIC.try_lock().and_then(|t| *t);
    if let Some(text) = expected {
        // Formatted into a fixed buffer: the heap may be what broke.
        let mut message = FixedText { bytes: [0; 512], len: 0 };
        let _ = core::fmt::write(&mut message, format_args!("{}", info.message()));
        if message.as_str().contains(text) {
            crate::println!("[ktest] the expected panic: {}", info.message());
            crate::println!("test {} ... ok", short(name));
            crate::println!("[ktest] resume after {}", short(name));
            return true;
        }
        crate::println!("test {} ... FAILED", short(name));
        crate::println!("    panicked, but without {text:?}:");
        crate::println!("    {}", info.message());
        return true;
    }
    crate::println!("test {} ... FAILED", short(name));
    match info.location() {
        Some(loc) => crate::println!("    panicked at {}:{}:{}:", loc.file(), loc.line(), loc.column()),
        None => crate::println!("    panicked:"),
    }
    crate::println!("    {}", info.message());
    true
}

/// Runs `f` as the first thread of a brand-new program: a fresh address space (key map as
/// after exec) and PKRU 0x55555554. Afterwards the previous thread and address space are back
/// and every frame of the program is freed.
pub fn as_fresh_program<R>(f: impl FnOnce(&Arc<Thread>) -> R) -> R {
    let mm = Mm::new().expect("no memory for a test address space").into_ref();
    let thread = Thread::new_program(mm);
    task::run_as(&thread, || f(&thread))
}
