//! The harness's own tests: each ends its boot in a different bad way. They run only with
//! `ktest.selftest=1`; the host test `tests/qemu.rs` (its harness self-test step) boots them and
//! checks that the runner reports each as FAILED with the right reason and still runs every test
//! after it.

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

/// A triple fault (`arch`'s [`triple_fault`](crate::arch::x86_64::trap::triple_fault)): the
/// host sees QEMU end with no exit code of ours and must report this test by name.
#[ktest(needs = harness_selftest)]
fn deliberate_triple_fault() {
    crate::arch::x86_64::trap::triple_fault();
}

/// Runs after the three above: proves the runner resumed after each.
#[ktest(needs = harness_selftest)]
fn runs_after_the_failures() {}
