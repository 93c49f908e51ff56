//! The harness's own tests: each ends its boot in a different bad way. They run only with
//! `ktest.selftest=1`; the host test `tests/harness.rs` boots them and checks that the runner
//! reports each as FAILED with the right reason and still runs every test after it.

use ktest_macros::ktest;

/// A failing assertion: the panic handler must report this test FAILED, with the message.
#[ktest(needs = harness_selftest)]
fn deliberate_panic() {
    let answer = 6 * 7;
    assert_eq!(answer, 41, "deliberate failure to check the harness");
}

/// A test that never finishes: the host must kill QEMU and name this test.
#[ktest(needs = harness_selftest)]
fn deliberate_hang() {
    loop {
        core::hint::spin_loop();
    }
}

/// A triple fault: with no usable IDT, an exception becomes a double fault, then a triple
/// fault, which `-no-reboot` turns into QEMU exiting with status 0.
#[ktest(needs = harness_selftest)]
fn deliberate_triple_fault() {
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately destroys the machine state; this test exists to end the boot.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
}

/// Runs after the three above: proves the runner resumed after each.
#[ktest(needs = harness_selftest)]
fn runs_after_the_failures() {}
