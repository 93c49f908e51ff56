//! The ACPI root: RSDP → RSDT or XSDT → a table by signature.
//!
//! ACPI 6.4 §5.2.5 "Root System Description Pointer (RSDP)": a 20-byte structure (36 bytes from
//! revision 2 on) whose first 20 bytes, and for revision 2 all 36, sum to 0 modulo 256. It holds
//! the 32-bit address of the RSDT and, from revision 2, the 64-bit address of the XSDT
//! (§5.2.7, §5.2.8), whose entries are 4- or 8-byte physical addresses of the other tables.
//! Every table starts with the same 36-byte header (§5.2.6 "System Description Table Header"):
//! a 4-byte signature, the table's whole length, and a checksum byte that makes the whole table
//! sum to 0.
//!
//! Nothing here reads memory: [`find_table`] asks a `read(physical address, length)` function
//! of the caller (the kernel reads through its physical-memory window; the tests from a fake
//! memory), and every length it is given is checked before it is used.

/// Why a table could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure (or its own length field) needs.
    Truncated,
    /// The signature is not the one expected.
    BadSignature,
    /// The bytes do not sum to 0 modulo 256.
    BadChecksum,
    /// A length field smaller than the header it is part of.
    BadLength,
    /// The caller's `read` could not supply the bytes at an address.
    Unreadable(u64),
    /// No table with the signature is listed in the root table.
    NotFound,
}

/// The size of the common table header (ACPI 6.4 Table 5.4 "DESCRIPTION_HEADER Fields").
pub const HEADER_LEN: usize = 36;

/// What the RSDP says (ACPI 6.4 Table 5.3 "RSDP Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0 (RSDT only), 2 and up for the extended form.
    pub revision: u8,
    /// The RSDT's physical address.
    pub rsdt: u32,
    /// The XSDT's physical address (revision 2 and up; `None` if absent or 0).
    pub xsdt: Option<u64>,
}

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Reads the RSDP from `bytes` (at least 20 bytes; 36 for revision 2 and up).
pub fn parse_rsdp(bytes: &[u8]) -> Result<Rsdp, Error> {
    let v1 = bytes.get(..20).ok_or(Error::Truncated)?;
    if &v1[..8] != b"RSD PTR " {
        return Err(Error::BadSignature);
    }
    if !sums_to_zero(v1) {
        return Err(Error::BadChecksum);
    }
    let revision = v1[15];
    let rsdt = u32_at(v1, 16).ok_or(Error::Truncated)?;
    if revision < 2 {
        return Ok(Rsdp { revision, rsdt, xsdt: None });
    }
    let v2 = bytes.get(..36).ok_or(Error::Truncated)?;
    if !sums_to_zero(v2) {
        return Err(Error::BadChecksum);
    }
    let xsdt = u64_at(v2, 24).ok_or(Error::Truncated)?;
    Ok(Rsdp { revision, rsdt, xsdt: (xsdt != 0).then_some(xsdt) })
}

/// The length a table's header claims (its bytes 4..8), checked to cover at least the header.
pub fn table_length(header: &[u8]) -> Result<usize, Error> {
    let length = u32_at(header, 4).ok_or(Error::Truncated)? as usize;
    if length < HEADER_LEN {
        return Err(Error::BadLength);
    }
    Ok(length)
}

/// Checks a whole table — its signature, its length against the bytes given, its checksum —
/// and returns exactly the table (`bytes` may run on past it).
pub fn checked_table<'a>(bytes: &'a [u8], signature: &[u8; 4]) -> Result<&'a [u8], Error> {
    let header = bytes.get(..HEADER_LEN).ok_or(Error::Truncated)?;
    if &header[..4] != signature {
        return Err(Error::BadSignature);
    }
    let table = bytes.get(..table_length(header)?).ok_or(Error::Truncated)?;
    if !sums_to_zero(table) {
        return Err(Error::BadChecksum);
    }
    Ok(table)
}

/// The physical addresses a checked RSDT (4-byte entries) or XSDT (8-byte entries) lists.
pub fn root_entries(root: &[u8], entry_size: usize) -> impl Iterator<Item = u64> + '_ {
    let body = root.get(HEADER_LEN..).unwrap_or(&[]);
    body.chunks_exact(entry_size).map(move |entry| match entry_size {
        8 => u64_at(entry, 0).unwrap_or(0),
        _ => u32_at(entry, 0).map_or(0, u64::from),
    })
}

/// Finds the table with `signature` through the RSDP in `rsdp`: the XSDT if there is one, the
/// RSDT otherwise. `read(address, length)` returns the `length` bytes at a physical address,
/// or `None` if it cannot. The table returned has been checked ([`checked_table`]).
pub fn find_table<'a>(
    rsdp: &[u8],
    read: impl Fn(u64, usize) -> Option<&'a [u8]>,
    signature: &[u8; 4],
) -> Result<&'a [u8], Error> {
    let rsdp = parse_rsdp(rsdp)?;
    let (root_address, root_signature, entry_size) = match rsdp.xsdt {
        Some(xsdt) => (xsdt, b"XSDT", 8),
        None => (u64::from(rsdp.rsdt), b"RSDT", 4),
    };
    let whole = |address: u64| -> Result<&'a [u8], Error> {
        let header = read(address, HEADER_LEN).ok_or(Error::Unreadable(address))?;
        read(address, table_length(header)?).ok_or(Error::Unreadable(address))
    };
    let root = checked_table(whole(root_address)?, root_signature)?;
    for address in root_entries(root, entry_size) {
        let header = read(address, HEADER_LEN).ok_or(Error::Unreadable(address))?;
        if &header[..4] == signature {
            return checked_table(whole(address)?, signature);
        }
    }
    Err(Error::NotFound)
}

/// Checks a list of ACPI "structures" — the MADT's interrupt controllers, the SRAT's
/// affinities — that runs from byte `start` to the end of a checked `table`: each begins with a
/// one-byte type and a one-byte length (ACPI 6.4 §5.2.12 Table 5.45, §5.2.16 Table 5.79–5.81),
/// the length at least 2 and at least `minimum_length(type)`, none running past the table's
/// end. After this, [`entries`] can read every entry without a failed bound.
pub(crate) fn check_entries(table: &[u8], start: usize, minimum_length: fn(u8) -> usize) -> Result<(), Error> {
    if table.len() < start {
        return Err(Error::Truncated);
    }
    let mut at = start;
    while at < table.len() {
        let (kind, len) = match table.get(at..at + 2) {
            Some(&[kind, len]) => (kind, usize::from(len)),
            _ => return Err(Error::Truncated),
        };
        // A length of 0 or 1 would never move on: the walk would loop.
        if len < minimum_length(kind).max(2) {
            return Err(Error::BadLength);
        }
        table.get(at..at + len).ok_or(Error::Truncated)?;
        at += len;
    }
    Ok(())
}

/// The `(type, entry bytes)` of a list [`check_entries`] accepted.
pub(crate) fn entries(table: &[u8], start: usize) -> impl Iterator<Item = (u8, &[u8])> {
    let mut at = start;
    core::iter::from_fn(move || {
        let kind = *table.get(at)?;
        let len = usize::from(*table.get(at + 1)?);
        let entry = table.get(at..at.checked_add(len)?)?;
        if len < 2 {
            return None;
        }
        at += len;
        Some((kind, entry))
    })
}

/// The little-endian u32 at `at` of an entry whose length has been checked.
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The little-endian u64 at `at` of an entry whose length has been checked.
pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from(le_u32(bytes, at)) | u64::from(le_u32(bytes, at + 4)) << 32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table with `signature`, `body` after the header, and a correct checksum.
    pub(crate) fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(signature);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[9] = 0u8.wrapping_sub(sum);
        t
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = revision;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        let sum20 = r[..20].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        r[8] = 0u8.wrapping_sub(sum20);
        let sum36 = r.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        r[32] = 0u8.wrapping_sub(sum36);
        r
    }

    /// A fake physical memory: tables at fixed addresses.
    fn memory<'a>(tables: &'a [(u64, Vec<u8>)]) -> impl Fn(u64, usize) -> Option<&'a [u8]> + 'a {
        move |address, len| {
            let (_, bytes) = tables.iter().find(|(a, _)| *a == address)?;
            bytes.get(..len)
        }
    }

    #[test]
    fn an_rsdp_is_checked_and_read() {
        let r = rsdp(0, 0x7fe_0000, 0);
        assert_eq!(parse_rsdp(&r), Ok(Rsdp { revision: 0, rsdt: 0x7fe_0000, xsdt: None }));
        assert_eq!(parse_rsdp(&r[..20]), Ok(Rsdp { revision: 0, rsdt: 0x7fe_0000, xsdt: None }));
        let r2 = rsdp(2, 0x1000, 0x2000);
        assert_eq!(parse_rsdp(&r2), Ok(Rsdp { revision: 2, rsdt: 0x1000, xsdt: Some(0x2000) }));
        assert_eq!(parse_rsdp(&r2[..20]), Err(Error::Truncated), "revision 2 needs 36 bytes");
        let mut bad = r2.clone();
        bad[30] ^= 1;
        assert_eq!(parse_rsdp(&bad), Err(Error::BadChecksum));
        let mut bad = r.clone();
        bad[0] = b'X';
        assert_eq!(parse_rsdp(&bad), Err(Error::BadSignature));
        assert_eq!(parse_rsdp(&r[..19]), Err(Error::Truncated));
    }

    #[test]
    fn a_table_is_found_through_the_xsdt_or_the_rsdt() {
        let apic = table(b"APIC", &[1, 2, 3, 4]);
        let facp = table(b"FACP", &[0; 8]);
        let mut xsdt_body = Vec::new();
        xsdt_body.extend_from_slice(&0x3000u64.to_le_bytes());
        xsdt_body.extend_from_slice(&0x4000u64.to_le_bytes());
        let mut rsdt_body = Vec::new();
        rsdt_body.extend_from_slice(&0x4000u32.to_le_bytes());
        let mem = [
            (0x1000, table(b"RSDT", &rsdt_body)),
            (0x2000, table(b"XSDT", &xsdt_body)),
            (0x3000, facp.clone()),
            (0x4000, apic.clone()),
        ];
        let read = memory(&mem);
        assert_eq!(find_table(&rsdp(2, 0x1000, 0x2000), &read, b"APIC"), Ok(&apic[..]));
        assert_eq!(find_table(&rsdp(0, 0x1000, 0), &read, b"APIC"), Ok(&apic[..]));
        assert_eq!(find_table(&rsdp(0, 0x1000, 0), &read, b"FACP"), Err(Error::NotFound), "the RSDT lists only the APIC");
        assert_eq!(find_table(&rsdp(2, 0x1000, 0x2000), &read, b"SRAT"), Err(Error::NotFound));
        assert_eq!(find_table(&rsdp(2, 0x1000, 0x9000), &read, b"APIC"), Err(Error::Unreadable(0x9000)));
    }

    #[test]
    fn a_table_whose_length_or_checksum_lies_is_refused() {
        let t = table(b"APIC", &[0; 10]);
        assert_eq!(checked_table(&t, b"APIC"), Ok(&t[..]));
        assert_eq!(checked_table(&t[..t.len() - 1], b"APIC"), Err(Error::Truncated));
        assert_eq!(checked_table(&t[..20], b"APIC"), Err(Error::Truncated));
        let mut bad = t.clone();
        bad[40] = 7;
        assert_eq!(checked_table(&bad, b"APIC"), Err(Error::BadChecksum));
        let mut short = t.clone();
        short[4..8].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(checked_table(&short, b"APIC"), Err(Error::BadLength));
        let mut huge = t.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(checked_table(&huge, b"APIC"), Err(Error::Truncated));
        assert_eq!(checked_table(&t, b"SRAT"), Err(Error::BadSignature));
    }
}
