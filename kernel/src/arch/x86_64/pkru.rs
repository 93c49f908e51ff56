//! RDPKRU and WRPKRU — the only instructions that touch PKRU.
//!
//! Intel SDM Vol. 2B "RDPKRU—Read Protection Key Rights for User Pages", Vol. 2C "WRPKRU—Write Data
//! to User Page Key Register", Vol. 3A §2.7 "Protection Key Rights Register (PKRU)": RDPKRU (`0f 01
//! ee`) needs ECX = 0 and returns PKRU in EAX (EDX cleared); WRPKRU (`0f 01 ef`) takes the value in
//! EAX and needs ECX = EDX = 0. Both work in any ring, and both raise #UD unless CR4.PKE = 1. So
//! every use here is guarded by OSPKE ([`super::cpu::ospke`]), as Linux's `read_pkru()` /
//! `write_pkru()` are: without it, reads give 0 and writes do nothing — no PKRU instruction ever
//! runs.
//!
//! [`CurrentPkru`] is the calling thread's PKRU as the pure `pkeys` logic sees it: while a thread
//! runs, the hardware register *is* its PKRU.

#[cfg(test)]
use super::extable::Fault;
use core::sync::atomic::AtomicU32;

use super::percpu::{area_slot, AreaCounter};
use pkeys::{Pkru, PkruRegister};

/// Counts for tests and the demo: WRPKRUs executed, WRPKRUs a PKRU update avoided because the
/// value was already there, RDPKRUs executed, and the context switches that had to write PKRU
/// (a switch that finds the value already there counts nothing: the scheduler's count of
/// switches, `task::SWITCHES`, less this one, is the WRPKRUs switches avoided).
/// (Per-CPU counters in each CPU's own area: one instruction each, on every `pkey_alloc` and
/// every context switch that writes PKRU.)
pub static WRPKRU_DONE: AreaCounter<{ area_slot::WRPKRU_DONE }> = AreaCounter;
pub static WRPKRU_SKIPPED: AreaCounter<{ area_slot::WRPKRU_SKIPPED }> = AreaCounter;
pub static SWITCH_WRPKRU: AreaCounter<{ area_slot::SWITCH_WRPKRU }> = AreaCounter;
pub static RDPKRU_DONE: AreaCounter<{ area_slot::RDPKRU_DONE }> = AreaCounter;

#[inline]
fn rdpkru() -> u32 {
    debug_assert!(super::cpu::ospke());
    RDPKRU_DONE.inc();
    let value: u32;
    // SAFETY: only called with OSPKE on (CR4.PKE set), so RDPKRU is defined; ECX = 0 as
    // required; it reads a register and touches no memory.
    unsafe {
        core::arch::asm!("rdpkru", in("ecx") 0, out("eax") value, out("edx") _, options(nomem, nostack, preserves_flags));
    }
    value
}

#[inline]
fn wrpkru(value: u32) {
    debug_assert!(super::cpu::ospke());
    WRPKRU_DONE.inc();
    // SAFETY: only called with OSPKE on; ECX = EDX = 0 as required. PKRU governs user-mode
    // pages only (and supervisor accesses to them), so no kernel data becomes unreachable.
    // Not `nomem`: later memory accesses depend on the new value, so the compiler must not move
    // them across this instruction.
    unsafe {
        core::arch::asm!("wrpkru", in("eax") value, in("ecx") 0, in("edx") 0, options(nostack, preserves_flags));
    }
}

/// Linux: `read_pkru()` — PKRU, or 0 without OSPKE.
#[inline]
pub fn read() -> Pkru {
    if super::cpu::ospke() {
        Pkru::from_bits(rdpkru())
    } else {
        Pkru::ALL_OPEN
    }
}

/// Linux: `write_pkru()` — writes PKRU unless OSPKE is off or the value is already there
/// (WRPKRU serializes-ish and is slow; RDPKRU is cheap).
#[inline]
pub fn write(value: Pkru) {
    if !super::cpu::ospke() {
        return;
    }
    if rdpkru() == value.bits() {
        WRPKRU_SKIPPED.inc();
        return;
    }
    wrpkru(value.bits());
}

/// Replaces PKRU with `f(PKRU)`: [`write()`] for a caller that reads the register first — one
/// OSPKE check and one RDPKRU where [`read()`] then [`write()`] would take two of each. Nothing
/// without OSPKE (`f` is not even called).
#[inline]
pub fn update(f: impl FnOnce(Pkru) -> Pkru) {
    if !super::cpu::ospke() {
        return;
    }
    let old = rdpkru();
    let new = f(Pkru::from_bits(old)).bits();
    if new == old {
        WRPKRU_SKIPPED.inc();
        return;
    }
    wrpkru(new);
}

/// The PKRU part of a context switch (`task::switch_pkru`; Linux: `x86_pkru_load()`): the live
/// PKRU goes into `prev` (the thread leaving), and `next`'s value into the register — unless
/// it is already there (the common case: WRPKRU is the slow one). Nothing without OSPKE.
///
/// Written out in assembly because it runs on every switch, and a function of its own (never
/// inlined) because `make trace` lists exactly its instructions (`docs/trace.md`, "The PKRU
/// part of a context switch"): when PKRU is unchanged, one OSPKE test and its branch, the ECX
/// zeroing, one RDPKRU, one store, one compare and its branch, and the return — eight, no lock,
/// nothing counted (the target). Only a switch that writes counts, in [`WRPKRU_DONE`]
/// and [`SWITCH_WRPKRU`]. (Its RDPKRU is not counted in [`RDPKRU_DONE`] either: every switch
/// with OSPKE does exactly one, and `task::SWITCHES` counts the switches.)
#[inline(never)]
pub fn switch(prev: &AtomicU32, next: &AtomicU32) {
    // SAFETY: RDPKRU/WRPKRU run only after the OSPKE byte (`cpu::OSPKE`, an `AtomicBool` set
    // once at boot, read here as the byte it is) said CR4.PKE is set; ECX = 0 for both and
    // EDX = 0 for WRPKRU (RDPKRU clears EDX and leaves ECX); `prev` and `next` are `AtomicU32`s
    // read and written with plain 32-bit moves (atomic on x86); the counters are this CPU's
    // own per-CPU slots. Not `nomem`: later accesses to user pages depend on the new PKRU.
    unsafe {
        core::arch::asm!(
            "cmp byte ptr [rip + {ospke}], 0",
            "je 3f",
            "xor ecx, ecx",
            "rdpkru",                       // EAX = the live PKRU, EDX = 0
            "mov [{prev}], eax",
            "cmp eax, [{next}]",
            "je 3f",
            "mov eax, [{next}]",
            "wrpkru",
            "inc qword ptr gs:[{done}]",
            "inc qword ptr gs:[{switch_writes}]",
            "3:",
            ospke = sym super::cpu::OSPKE,
            prev = in(reg) prev.as_ptr(),
            next = in(reg) next.as_ptr(),
            done = const AreaCounter::<{ area_slot::WRPKRU_DONE }>::OFFSET,
            switch_writes = const AreaCounter::<{ area_slot::SWITCH_WRPKRU }>::OFFSET,
            out("eax") _,
            out("ecx") _,
            out("edx") _,
            options(nostack),
        );
    }
}

/// The calling thread's PKRU register.
pub struct CurrentPkru;

impl PkruRegister for CurrentPkru {
    #[inline]
    fn read(&self) -> Pkru {
        read()
    }
    #[inline]
    fn write(&mut self, value: Pkru) {
        write(value)
    }
    #[inline]
    fn update(&mut self, f: impl FnOnce(Pkru) -> Pkru) {
        update(f)
    }
}

/// Executes RDPKRU *without* the OSPKE guard, recovering from the #UD it raises on a CPU (or
/// CR4) without protection keys. Exists only so a test can show that the guard above is needed.
#[cfg(test)] // used by the in-kernel tests only
pub fn rdpkru_unguarded() -> Result<u32, Fault> {
    let status: u64;
    let cr2: u64;
    let value: u32;
    // SAFETY: RDPKRU either reads PKRU or raises #UD; the extable entry turns the #UD into a
    // resume at label 3 with the fault in rax/rdx (see extable). ECX = 0 as required.
    unsafe {
        core::arch::asm!(
            "2: rdpkru",
            "mov {value:e}, eax",
            "xor eax, eax",
            "3:",
            crate::extable_entry!("2b", "3b"),
            value = out(reg) value,
            in("ecx") 0,
            inout("rax") 0u64 => status,
            out("rdx") cr2,
            options(nostack),
        );
    }
    match Fault::from_rax(status, cr2) {
        Some(fault) => Err(fault),
        None => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest(needs = no_pku)]
    fn rdpkru_raises_ud_without_cr4_pke() {
        // The reason for every OSPKE guard: on this CPU the instruction itself is invalid.
        let fault = rdpkru_unguarded().expect_err("RDPKRU must fault without PKU");
        assert_eq!(fault.vector, 6, "#UD");
        let before = RDPKRU_DONE.here();
        assert_eq!(read(), Pkru::ALL_OPEN, "read_pkru() is 0 without OSPKE");
        write(Pkru::INIT);
        assert_eq!(RDPKRU_DONE.here(), before, "the guarded paths ran no RDPKRU");
    }

    #[ktest(needs = pku)]
    fn wrpkru_values_read_back_and_equal_writes_are_skipped() {
        let saved = read();
        for value in [0u32, 0x5555_5554, 0xffff_fffc, 0x0000_000c, 0xaaaa_aaa8] {
            write(Pkru::from_bits(value));
            assert_eq!(rdpkru_unguarded(), Ok(value));
        }
        let (done, skipped) = (WRPKRU_DONE.here(), WRPKRU_SKIPPED.here());
        write(Pkru::from_bits(0xaaaa_aaa8));
        assert_eq!(WRPKRU_DONE.here(), done, "no WRPKRU for an unchanged value");
        assert_eq!(WRPKRU_SKIPPED.here(), skipped + 1);
        write(saved);
    }
}
