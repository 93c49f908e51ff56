//! The MADT ("APIC"): which processors the machine has, and where the local APIC is.
//!
//! ACPI 6.4 §5.2.12 "Multiple APIC Description Table (MADT)", Table 5.43: after the common
//! header, the 32-bit physical address of the local APIC's registers and a flags word (bit 0,
//! PCAT_COMPAT: the legacy 8259 PICs are present too), then a list of interrupt-controller
//! structures, each beginning with a 1-byte type and a 1-byte length (Table 5.45). pikku reads
//! three kinds and steps over the rest by their length:
//!
//! | type | structure (ACPI 6.4)                              | length | what pikku takes          |
//! |------|---------------------------------------------------|--------|---------------------------|
//! | 0    | Processor Local APIC (§5.2.12.2, Table 5.46)      | 8      | APIC id, flags            |
//! | 5    | Local APIC Address Override (§5.2.12.8, Table 5.53)| 12    | the 64-bit address        |
//! | 9    | Processor Local x2APIC (§5.2.12.12, Table 5.59)   | 16     | x2APIC id, flags          |
//!
//! A processor's flags (Table 5.47 "Local APIC Flags"): bit 0 *Enabled* — the processor is
//! ready to use; bit 1 *Online Capable* (ACPI 6.3 on) — not enabled now, but the OS may bring
//! it up. A processor with neither bit may not be used. Linux reads the same entries in
//! `acpi_parse_lapic()` / `acpi_parse_x2apic()` (`arch/x86/kernel/acpi/boot.c`).

use crate::acpi::{check_entries, checked_table, entries, le_u32, le_u64, Error, HEADER_LEN};

/// Where the MADT's fixed fields end and its entries begin.
const ENTRIES_START: usize = HEADER_LEN + 8;

/// One processor the MADT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    /// Its local APIC id (what an IPI is addressed to).
    pub apic_id: u32,
    /// Its ACPI processor UID.
    pub uid: u32,
    /// Flags bit 0: ready to use.
    pub enabled: bool,
    /// Flags bit 1: may be brought up although not enabled.
    pub online_capable: bool,
}

impl Processor {
    /// May the OS start this processor? (Enabled, or online capable.)
    pub fn usable(&self) -> bool {
        self.enabled || self.online_capable
    }

    fn from_flags(apic_id: u32, uid: u32, flags: u32) -> Processor {
        Processor { apic_id, uid, enabled: flags & 1 != 0, online_capable: flags & 2 != 0 }
    }
}

/// A checked MADT.
#[derive(Debug, Clone, Copy)]
pub struct Madt<'a> {
    table: &'a [u8],
    /// The local APIC's physical address: the 32-bit field, or the 64-bit override entry's.
    pub local_apic_address: u64,
    /// Flags bit 0 (PCAT_COMPAT): the machine also has the legacy dual 8259 PICs.
    pub pcat_compat: bool,
}

/// The smallest length each known entry type may have.
fn minimum_length(kind: u8) -> usize {
    match kind {
        0 => 8,
        5 => 12,
        9 => 16,
        _ => 2,
    }
}

impl<'a> Madt<'a> {
    /// Checks the table (signature "APIC", length, checksum) and every entry's length — each
    /// at least 2 and at least its type's size, none running past the table's end — so that
    /// nothing read afterwards can fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Madt<'a>, Error> {
        let table = checked_table(bytes, b"APIC")?;
        check_entries(table, ENTRIES_START, minimum_length)?;
        let mut local_apic_address = u64::from(le_u32(table, HEADER_LEN));
        for (kind, entry) in entries(table, ENTRIES_START) {
            if kind == 5 {
                local_apic_address = le_u64(entry, 4);
            }
        }
        let pcat_compat = le_u32(table, HEADER_LEN + 4) & 1 != 0;
        Ok(Madt { table, local_apic_address, pcat_compat })
    }

    /// Every processor listed (usable or not), in table order — which is the order firmware
    /// expects them to be started in; the first is normally the boot processor.
    pub fn processors(&self) -> impl Iterator<Item = Processor> + 'a {
        entries(self.table, ENTRIES_START).filter_map(|(kind, e)| match kind {
            // An 8-bit id of 0xFF in a type-0 entry is a placeholder, not a processor (Linux
            // skips it too: `acpi_parse_lapic()`).
            0 if e[3] != 0xff => Some(Processor::from_flags(u32::from(e[3]), u32::from(e[2]), le_u32(e, 4))),
            9 => Some(Processor::from_flags(le_u32(e, 4), le_u32(e, 12), le_u32(e, 8))),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::table;

    /// QEMU 7.2's MADT for `-smp 1`, `-smp 2`, `-smp 4` (`-machine pc`, `-cpu max`, SeaBIOS),
    /// hex-dumped by a pikku boot and saved as they were.
    const QEMU_SMP1: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-madt-smp1.bin");
    const QEMU_SMP2: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-madt-smp2.bin");
    const QEMU_SMP4: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-madt-smp4.bin");

    fn apic_ids(madt: &Madt) -> Vec<u32> {
        madt.processors().filter(Processor::usable).map(|p| p.apic_id).collect()
    }

    #[test]
    fn qemu_tables_list_one_two_and_four_processors_at_0xfee00000() {
        for (bytes, ids) in [(QEMU_SMP1, vec![0]), (QEMU_SMP2, vec![0, 1]), (QEMU_SMP4, vec![0, 1, 2, 3])] {
            let madt = Madt::parse(bytes).expect("QEMU's MADT parses");
            assert_eq!(madt.local_apic_address, 0xfee0_0000);
            assert!(madt.pcat_compat, "the PC machine has the 8259s");
            assert_eq!(apic_ids(&madt), ids);
            assert!(madt.processors().all(|p| p.enabled));
        }
    }

    /// The MADT body: local APIC address, flags, then `entries`.
    fn madt(address: u32, entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&address.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"APIC", &body)
    }

    #[test]
    fn a_disabled_processor_is_listed_but_not_usable_and_online_capable_is() {
        let t = madt(
            0xfee0_0000,
            &[
                &[0, 8, 0, 0, 1, 0, 0, 0],           // APIC id 0, enabled
                &[0, 8, 1, 1, 0, 0, 0, 0],           // APIC id 1, disabled
                &[0, 8, 2, 2, 2, 0, 0, 0],           // APIC id 2, online capable
                &[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0], // an I/O APIC: stepped over
                &[0, 8, 3, 0xff, 1, 0, 0, 0],        // id 0xFF: a placeholder
                &[9, 16, 0, 0, 0x10, 1, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0], // x2APIC id 0x110
            ],
        );
        let m = Madt::parse(&t).unwrap();
        let all: Vec<Processor> = m.processors().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1], Processor { apic_id: 1, uid: 1, enabled: false, online_capable: false });
        assert!(!all[1].usable());
        assert_eq!(all[2], Processor { apic_id: 2, uid: 2, enabled: false, online_capable: true });
        assert_eq!(all[3], Processor { apic_id: 0x110, uid: 4, enabled: true, online_capable: false });
        assert_eq!(apic_ids(&m), vec![0, 2, 0x110]);
    }

    #[test]
    fn the_64_bit_override_replaces_the_32_bit_address() {
        let t = madt(0xfee0_0000, &[&[5, 12, 0, 0, 0, 0, 0xd0, 0xfe, 1, 0, 0, 0], &[0, 8, 0, 0, 1, 0, 0, 0]]);
        assert_eq!(Madt::parse(&t).unwrap().local_apic_address, 0x1_fed0_0000);
    }

    #[test]
    fn a_truncated_or_malformed_table_is_an_error_not_a_panic() {
        for cut in 0..QEMU_SMP4.len() {
            assert!(Madt::parse(&QEMU_SMP4[..cut]).is_err(), "cut at {cut}");
        }
        // An entry whose length runs past the end (the checksum still right).
        assert_eq!(Madt::parse(&madt(0xfee0_0000, &[&[0, 8, 0, 0, 1, 0, 0, 0], &[0, 20, 1, 1]])).unwrap_err(), Error::Truncated);
        // A zero length would loop forever; a type-0 entry shorter than 8 would be read past.
        assert_eq!(Madt::parse(&madt(0xfee0_0000, &[&[7, 0, 0, 0]])).unwrap_err(), Error::BadLength);
        assert_eq!(Madt::parse(&madt(0xfee0_0000, &[&[0, 4, 0, 0]])).unwrap_err(), Error::BadLength);
        assert_eq!(Madt::parse(&madt(0xfee0_0000, &[&[0]])).unwrap_err(), Error::Truncated);
        // Every single-byte corruption of a real table is either caught or harmless.
        for at in 0..QEMU_SMP4.len() {
            let mut t = QEMU_SMP4.to_vec();
            t[at] ^= 0x5a;
            let _ = Madt::parse(&t).map(|m| m.processors().count());
        }
    }
}
