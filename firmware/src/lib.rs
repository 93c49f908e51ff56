//! # firmware — what the firmware tells the kernel, read from byte slices
//!
//! The machine describes itself in ACPI tables (ACPI Specification 6.4, chapter 5 "ACPI
//! Software Programming Model"). The kernel finds them in physical memory; this crate only
//! *reads* them, from byte slices the kernel hands in, so every rule — signatures, lengths,
//! checksums, entry layouts — is tested on the host against tables QEMU really produced
//! (`tests/fixtures/`).
//!
//! * [`acpi`] — the root pointer (RSDP), the root tables (RSDT/XSDT) and finding a table by
//!   its signature;
//! * [`madt`] — the Multiple APIC Description Table: which processors exist (their local APIC
//!   ids) and where the local APIC's registers are;
//! * [`srat`] — the System Resource Affinity Table (which processor and memory range is in
//!   which proximity domain) and the System Locality Information Table (their distances);
//! * [`numa`] — what those two say, in nodes: the topology the kernel's `mm::numa` keeps.
//!
//! Written by hand rather than with the `acpi` crate: the NUMA tables (SRAT, SLIT) are misread
//! by it (an SRAT entry's length taken as two bytes; an empty SLIT matrix for two or more
//! nodes — see [`srat`]), and one walker for all tables is easier to read than two.
#![cfg_attr(not(test), no_std)]
// Pure logic, compiled for the host and the kernel alike: no `unsafe` (the house rule).
#![forbid(unsafe_code)]

pub mod acpi;
pub mod madt;
pub mod numa;
pub mod srat;
