//! The SRAT ("System Resource Affinity Table"): which processor and which memory range belong to
//! which *proximity domain* — the firmware's name for a NUMA node.
//!
//! ACPI 6.4 §5.2.16, Table 5.78: after the common header, 4 bytes that must read 1 and 8
//! reserved bytes, then a list of affinity structures, each beginning with a 1-byte type and a
//! 1-byte length. pikku reads three kinds and steps over the rest by their length:
//!
//! | type | structure (ACPI 6.4)                                       | length | what pikku takes                     |
//! |------|------------------------------------------------------------|--------|--------------------------------------|
//! | 0    | Processor Local APIC/SAPIC Affinity (§5.2.16.1, Table 5.79) | 16     | APIC id, domain, flags (bit 0: enabled) |
//! | 1    | Memory Affinity (§5.2.16.2, Table 5.81)                    | 40     | base, length, domain, flags          |
//! | 2    | Processor Local x2APIC Affinity (§5.2.16.3, Table 5.83)     | 24     | x2APIC id, domain, flags             |
//!
//! A memory entry's flags (Table 5.82): bit 0 *Enabled* — "if clear, the OSPM ignores the
//! contents of the structure" (QEMU 7.2 ends its SRAT with such an entry: base 0, length 0,
//! flags 0); bit 1 *Hot Pluggable*; bit 2 *NonVolatile*.
//!
//! Why not the `acpi` crate: its 6.1.1 and 7.0.0-pre1 releases read an SRAT entry's length as
//! a two-byte field (it is one byte, followed by the domain), so on QEMU's tables they step to
//! the wrong place — and loop, on four nodes — and their SLIT reader returns an empty matrix
//! for two or more nodes. The walk is the one the MADT uses (`acpi::entries`).
//!
//! Linux reads the same entries in `acpi_numa_init()` (`drivers/acpi/numa/srat.c`) and
//! `acpi_numa_processor_affinity_init()` / `acpi_numa_memory_affinity_init()`
//! (`arch/x86/mm/srat.c`, `drivers/acpi/numa/srat.c`). As there, in a table of revision 1 (what
//! QEMU 7.2 emits) a domain is only 8 bits wide: the upper bytes of the field are not read.

use crate::acpi::{check_entries, checked_table, entries, le_u32, le_u64, Error, HEADER_LEN};

/// Where the SRAT's fixed fields end and its entries begin (4 + 8 reserved bytes).
const ENTRIES_START: usize = HEADER_LEN + 12;

/// A processor's place: its APIC id (xAPIC or x2APIC) and its proximity domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorAffinity {
    pub apic_id: u32,
    pub domain: u32,
    /// Flags bit 0: the entry is in use (a disabled entry is to be ignored).
    pub enabled: bool,
}

/// A memory range's place: `[base, base + length)` belongs to `domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryAffinity {
    pub base: u64,
    pub length: u64,
    pub domain: u32,
    /// Flags bit 1: the range may be added or removed while the machine runs.
    pub hot_pluggable: bool,
}

/// A checked SRAT.
#[derive(Debug, Clone, Copy)]
pub struct Srat<'a> {
    table: &'a [u8],
    /// The table's revision (header byte 8): 1 limits domains to 8 bits, 2 and up to 32.
    pub revision: u8,
}

/// The smallest length each known entry type may have.
fn minimum_length(kind: u8) -> usize {
    match kind {
        0 => 16,
        1 => 40,
        2 => 24,
        _ => 2,
    }
}

impl<'a> Srat<'a> {
    /// Checks the table (signature "SRAT", length, checksum) and every entry's length, so that
    /// nothing read afterwards can fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Srat<'a>, Error> {
        let table = checked_table(bytes, b"SRAT")?;
        check_entries(table, ENTRIES_START, minimum_length)?;
        Ok(Srat { table, revision: table[8] })
    }

    /// A domain as the table's revision allows it to be read (Linux:
    /// `acpi_numa_memory_affinity_init()`: `if (acpi_srat_revision <= 1) pxm &= 0xff`).
    fn domain(&self, raw: u32) -> u32 {
        if self.revision <= 1 {
            raw & 0xff
        } else {
            raw
        }
    }

    /// Every processor entry (enabled or not), in table order.
    pub fn processors(&self) -> impl Iterator<Item = ProcessorAffinity> + 'a {
        let srat = *self;
        entries(self.table, ENTRIES_START).filter_map(move |(kind, e)| match kind {
            // Type 0: domain bits 7:0 in byte 2, bits 31:8 in bytes 9..12.
            0 => Some(ProcessorAffinity {
                apic_id: u32::from(e[3]),
                domain: srat.domain(u32::from(e[2]) | (le_u32(e, 8) & 0xffff_ff00)),
                enabled: le_u32(e, 4) & 1 != 0,
            }),
            2 => Some(ProcessorAffinity { apic_id: le_u32(e, 8), domain: le_u32(e, 4), enabled: le_u32(e, 12) & 1 != 0 }),
            _ => None,
        })
    }

    /// The memory entries that are enabled and not empty, in table order (disabled ones — QEMU's
    /// trailing `flags 0, length 0` entry — are skipped, as Linux does).
    pub fn memory(&self) -> impl Iterator<Item = MemoryAffinity> + 'a {
        let srat = *self;
        entries(self.table, ENTRIES_START).filter_map(move |(kind, e)| {
            let flags = if kind == 1 { le_u32(e, 28) } else { 0 };
            let length = if kind == 1 { le_u64(e, 16) } else { 0 };
            (kind == 1 && flags & 1 != 0 && length != 0).then(|| MemoryAffinity {
                base: le_u64(e, 8),
                length,
                domain: srat.domain(le_u32(e, 2)),
                hot_pluggable: flags & 2 != 0,
            })
        })
    }
}

/// The SLIT ("System Locality Information Table", ACPI 6.4 §5.2.17, Table 5.84): after the
/// header, the number of localities N (8 bytes), then an N × N matrix of one-byte relative
/// distances, row i giving the distance from locality (= proximity domain) i to each other.
/// The distance of a domain to itself is 10; 255 means "unreachable".
#[derive(Debug, Clone, Copy)]
pub struct Slit<'a> {
    matrix: &'a [u8],
    localities: usize,
}

impl<'a> Slit<'a> {
    /// Checks the table (signature "SLIT", length, checksum) and that the matrix fits in it.
    pub fn parse(bytes: &'a [u8]) -> Result<Slit<'a>, Error> {
        let table = checked_table(bytes, b"SLIT")?;
        let count = table.get(HEADER_LEN..HEADER_LEN + 8).ok_or(Error::Truncated)?;
        let count = le_u64(count, 0);
        let body = &table[HEADER_LEN + 8..];
        // N² must fit in what the table holds; a huge N is refused before it is squared.
        let localities = usize::try_from(count).map_err(|_| Error::BadLength)?;
        let cells = localities.checked_mul(localities).ok_or(Error::BadLength)?;
        let matrix = body.get(..cells).ok_or(Error::Truncated)?;
        Ok(Slit { matrix, localities })
    }

    /// N, the matrix's side.
    pub fn localities(&self) -> usize {
        self.localities
    }

    /// The distance from domain `from` to domain `to`, if both are in the matrix.
    pub fn distance(&self, from: u32, to: u32) -> Option<u8> {
        let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
        if from >= self.localities || to >= self.localities {
            return None;
        }
        self.matrix.get(from * self.localities + to).copied()
    }

    /// Does the matrix make sense? 10 on the diagonal, more than 10 everywhere else; a table
    /// that breaks this is not used (Linux: `slit_valid()` — "SLIT table looks invalid. Not
    /// used.").
    pub fn is_valid(&self) -> bool {
        (0..self.localities).all(|i| {
            (0..self.localities).all(|j| {
                let d = self.matrix[i * self.localities + j];
                if i == j {
                    d == 10
                } else {
                    d > 10
                }
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::acpi::tests::table;

    /// QEMU 7.2's SRAT for 1, 2 and 4 nodes — `-machine pc -cpu max -m 512M`, N
    /// `memory-backend-ram` objects of 512/N MiB, `-numa node,nodeid=n,cpus=n,memdev=ramn`
    /// (what `make run NUMA=N` boots) — hex-dumped by a pikku boot that found the table through
    /// the RSDP (`firmware::acpi::find_table`) and logged it, then turned back into bytes with
    /// `xxd -r -p`. `-numa dist,…` leaves the SRAT byte for byte the same (checked).
    pub(crate) const QEMU_NUMA1: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-srat-numa1.bin");
    pub(crate) const QEMU_NUMA2: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-srat-numa2.bin");
    pub(crate) const QEMU_NUMA4: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-srat-numa4.bin");
    /// QEMU 7.2's SLIT, the same way, with `-numa dist,src=0,dst=1,val=15` (2 nodes) and with
    /// 0–1 15, 0–2 20, 0–3 30, 1–2 25, 1–3 35, 2–3 17 (4 nodes; QEMU fills in the reverse
    /// direction). Without any `-numa dist` QEMU 7.2 emits no SLIT.
    pub(crate) const QEMU_SLIT2: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-slit-numa2-dist.bin");
    pub(crate) const QEMU_SLIT4: &[u8] = include_bytes!("../tests/fixtures/qemu-7.2-slit-numa4-dist.bin");

    const MIB: u64 = 1 << 20;

    fn ranges(srat: &Srat) -> Vec<(u64, u64, u32)> {
        srat.memory().map(|m| (m.base, m.base + m.length, m.domain)).collect()
    }

    fn cpus(srat: &Srat) -> Vec<(u32, u32)> {
        srat.processors().filter(|p| p.enabled).map(|p| (p.apic_id, p.domain)).collect()
    }

    #[test]
    fn qemu_tables_give_each_node_its_cpu_and_its_share_of_512_mib() {
        let one = Srat::parse(QEMU_NUMA1).expect("QEMU's SRAT parses");
        assert_eq!(one.revision, 1);
        assert_eq!(cpus(&one), vec![(0, 0)]);
        // Node 0 always starts with the low 640 KiB, then from 1 MiB on (the legacy hole).
        assert_eq!(ranges(&one), vec![(0, 0xa_0000, 0), (MIB, 512 * MIB, 0)]);

        let two = Srat::parse(QEMU_NUMA2).unwrap();
        assert_eq!(cpus(&two), vec![(0, 0), (1, 1)]);
        assert_eq!(ranges(&two), vec![(0, 0xa_0000, 0), (MIB, 256 * MIB, 0), (256 * MIB, 512 * MIB, 1)]);

        let four = Srat::parse(QEMU_NUMA4).unwrap();
        assert_eq!(cpus(&four), vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
        assert_eq!(
            ranges(&four),
            vec![(0, 0xa_0000, 0), (MIB, 128 * MIB, 0), (128 * MIB, 256 * MIB, 1), (256 * MIB, 384 * MIB, 2), (384 * MIB, 512 * MIB, 3)]
        );
    }

    #[test]
    fn qemus_trailing_disabled_memory_entry_is_skipped() {
        // The raw walk sees one more type-1 entry than `memory()` returns: the last, all zero.
        let srat = Srat::parse(QEMU_NUMA2).unwrap();
        let raw: Vec<&[u8]> = entries(srat.table, ENTRIES_START).filter(|(k, _)| *k == 1).map(|(_, e)| e).collect();
        assert_eq!(raw.len(), 4);
        assert!(raw[3][2..].iter().all(|&b| b == 0), "flags 0, base 0, length 0");
        assert_eq!(srat.memory().count(), 3);
    }

    #[test]
    fn qemu_slits_give_the_distances_asked_for_and_are_valid() {
        let two = Slit::parse(QEMU_SLIT2).expect("QEMU's SLIT parses");
        assert_eq!(two.localities(), 2);
        assert_eq!([two.distance(0, 0), two.distance(0, 1), two.distance(1, 0), two.distance(1, 1)], [Some(10), Some(15), Some(15), Some(10)]);
        assert!(two.is_valid());
        let four = Slit::parse(QEMU_SLIT4).unwrap();
        let matrix: Vec<Vec<u8>> = (0..4).map(|i| (0..4).map(|j| four.distance(i, j).unwrap()).collect()).collect();
        assert_eq!(matrix, vec![vec![10, 15, 20, 30], vec![15, 10, 25, 35], vec![20, 25, 10, 17], vec![30, 35, 17, 10]]);
        assert!(four.is_valid());
        assert_eq!(four.distance(4, 0), None);
    }

    #[test]
    fn entries_are_read_as_the_spec_lays_them_out() {
        let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // x2APIC affinity: domain 0x102, x2APIC id 0x1234, enabled.
        body.extend_from_slice(&[2, 24, 0, 0, 2, 1, 0, 0, 0x34, 0x12, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Local APIC affinity: domain 0x07 | 0x000300 << 8, APIC id 5, disabled.
        body.extend_from_slice(&[0, 16, 7, 5, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0]);
        // Memory: domain 0x10203, [4 GiB, 4 GiB + 2 MiB), enabled and hot-pluggable.
        let mut mem = vec![1, 40, 3, 2, 1, 0, 0, 0];
        mem.extend_from_slice(&(4u64 << 30).to_le_bytes());
        mem.extend_from_slice(&(2 * MIB).to_le_bytes());
        mem.extend_from_slice(&[0; 4]);
        mem.extend_from_slice(&3u32.to_le_bytes());
        mem.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&mem);
        // An unknown type is stepped over.
        body.extend_from_slice(&[9, 4, 0, 0]);
        let mut t = table(b"SRAT", &body);
        t[8] = 3;
        let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[9] = t[9].wrapping_sub(sum);
        let srat = Srat::parse(&t).unwrap();
        let procs: Vec<ProcessorAffinity> = srat.processors().collect();
        assert_eq!(procs, vec![
            ProcessorAffinity { apic_id: 0x1234, domain: 0x102, enabled: true },
            ProcessorAffinity { apic_id: 5, domain: 0x307, enabled: false },
        ]);
        assert_eq!(srat.memory().collect::<Vec<_>>(), vec![MemoryAffinity { base: 4 << 30, length: 2 * MIB, domain: 0x10203, hot_pluggable: true }]);
    }

    #[test]
    fn a_revision_1_table_has_8_bit_domains() {
        // QEMU's table is revision 1: give its node-1 memory entry a high domain byte; Linux
        // (and pikku) still read domain 1.
        let mut t = QEMU_NUMA2.to_vec();
        let node1 = ENTRIES_START + 2 * 16 + 2 * 40; // after two CPUs and node 0's two ranges
        assert_eq!(&t[node1..node1 + 6], &[1, 40, 1, 0, 0, 0]);
        t[node1 + 5] = 0x01;
        t[9] = t[9].wrapping_sub(1);
        let srat = Srat::parse(&t).unwrap();
        assert_eq!(srat.memory().nth(2).map(|m| m.domain), Some(1));
        t[8] = 2;
        t[9] = t[9].wrapping_sub(1);
        let srat = Srat::parse(&t).unwrap();
        assert_eq!(srat.memory().nth(2).map(|m| m.domain), Some(0x0100_0001), "revision 2 reads all 32 bits");
    }

    #[test]
    fn a_slit_that_lies_about_its_size_or_its_distances_is_refused() {
        let mut body = 3u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[10, 20, 20, 20, 10, 20, 20, 20]); // one cell short
        assert_eq!(Slit::parse(&table(b"SLIT", &body)).unwrap_err(), Error::Truncated);
        let mut body = u64::MAX.to_le_bytes().to_vec();
        body.extend_from_slice(&[10]);
        assert!(Slit::parse(&table(b"SLIT", &body)).is_err(), "N² overflows");
        let mut body = 2u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[10, 20, 20, 11]);
        assert!(!Slit::parse(&table(b"SLIT", &body)).unwrap().is_valid(), "the diagonal must be 10");
        let mut body = 2u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[10, 10, 20, 10]);
        assert!(!Slit::parse(&table(b"SLIT", &body)).unwrap().is_valid(), "another node is never as near as 10");
        assert_eq!(Slit::parse(&QEMU_SLIT2[..40]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn truncated_or_corrupted_tables_are_errors_never_panics() {
        for fixture in [QEMU_NUMA1, QEMU_NUMA2, QEMU_NUMA4] {
            for cut in 0..fixture.len() {
                assert!(Srat::parse(&fixture[..cut]).is_err(), "cut at {cut}");
            }
        }
        for fixture in [QEMU_SLIT2, QEMU_SLIT4] {
            for cut in 0..fixture.len() {
                assert!(Slit::parse(&fixture[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
}
