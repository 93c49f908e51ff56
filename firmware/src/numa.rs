//! The NUMA topology the SRAT and SLIT describe, in nodes: which node each processor and each
//! memory range belongs to, and how far apart the nodes are.
//!
//! The firmware speaks of *proximity domains* (any 32-bit numbers); the kernel of *nodes*
//! (dense numbers from 0). As Linux (`acpi_map_pxm_to_node()`), a domain becomes the next free
//! node number the first time it is seen — processors first, in table order, then memory
//! ranges — so QEMU's domains 0, 1, 2, 3 are nodes 0, 1, 2, 3. Distances come from the SLIT,
//! indexed by domain; without a SLIT (QEMU 7.2 emits one only for `-numa dist,…`), or with one
//! that is not valid, a node is 10 from itself and 20 from every other (Linux:
//! `numa_alloc_distance()`'s `LOCAL_DISTANCE` / `REMOTE_DISTANCE`).
//!
//! No SRAT, or one without a single enabled memory range, gives Linux's "No NUMA configuration
//! found": one node 0 holding every processor and all memory (`numa_init(dummy_numa_init)`).
//!
//! Fixed-size arrays, no allocation: the kernel builds this before it has a heap if it wants to.

use crate::srat::{Slit, Srat};
use mempolicy::{Node, NodeMask, MAX_NODES};

/// Memory ranges the topology keeps (QEMU: the node count + 1, node 0's low 640 KiB being its
/// own range); further ones are dropped and counted in [`Topology::dropped_ranges`].
pub const MAX_RANGES: usize = 32;
/// Processor entries the topology keeps (pikku's `MAX_CPUS` is smaller).
pub const MAX_PROCESSORS: usize = 64;

/// Physical memory `[start, end)` on `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    pub start: u64,
    pub end: u64,
    pub node: Node,
}

/// The machine's nodes (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct Topology<'a> {
    /// `domains[n]`: the proximity domain of node n, for the first `nodes` nodes.
    domains: [u32; MAX_NODES],
    nodes: usize,
    /// `(APIC id, node)` of every enabled processor entry, in table order.
    processors: [(u32, Node); MAX_PROCESSORS],
    processor_count: usize,
    /// Sorted by start, never overlapping.
    ranges: [MemoryRange; MAX_RANGES],
    range_count: usize,
    /// Ranges (or processors) left out: more than the arrays hold, overlapping an earlier
    /// range, or in a domain past the 64th.
    pub dropped_ranges: usize,
    /// The SLIT, if there is one and it is valid.
    slit: Option<Slit<'a>>,
    /// Was there an SRAT with memory in it? (`false`: Linux's "No NUMA configuration found".)
    pub from_firmware: bool,
}

impl<'a> Topology<'a> {
    /// One node 0 with everything: the machine without an SRAT.
    pub const fn single_node() -> Topology<'static> {
        Topology {
            domains: [0; MAX_NODES],
            nodes: 1,
            processors: [(0, Node::ZERO); MAX_PROCESSORS],
            processor_count: 0,
            ranges: [MemoryRange { start: 0, end: 0, node: Node::ZERO }; MAX_RANGES],
            range_count: 0,
            dropped_ranges: 0,
            slit: None,
            from_firmware: false,
        }
    }

    /// The topology the tables describe (either may be absent).
    pub fn new(srat: Option<&Srat<'a>>, slit: Option<Slit<'a>>) -> Topology<'a> {
        let Some(srat) = srat.filter(|s| s.memory().next().is_some()) else {
            return Topology::single_node();
        };
        let mut t = Topology { slit: slit.filter(Slit::is_valid), from_firmware: true, nodes: 0, ..Topology::single_node() };
        for p in srat.processors().filter(|p| p.enabled) {
            match (t.node_of_domain(p.domain), t.processor_count < MAX_PROCESSORS) {
                (Some(node), true) => {
                    t.processors[t.processor_count] = (p.apic_id, node);
                    t.processor_count += 1;
                }
                _ => t.dropped_ranges += 1,
            }
        }
        for m in srat.memory() {
            let Some(node) = t.node_of_domain(m.domain) else {
                t.dropped_ranges += 1;
                continue;
            };
            let end = m.base.saturating_add(m.length);
            t.add_range(MemoryRange { start: m.base, end, node });
        }
        t
    }

    /// The node of `domain`, numbering it now if it is new (Linux: `acpi_map_pxm_to_node()`);
    /// `None` once all [`MAX_NODES`] numbers are taken.
    fn node_of_domain(&mut self, domain: u32) -> Option<Node> {
        if let Some(n) = self.domains[..self.nodes].iter().position(|&d| d == domain) {
            return Node::new(n);
        }
        let node = Node::new(self.nodes)?;
        self.domains[self.nodes] = domain;
        self.nodes += 1;
        Some(node)
    }

    /// Puts a range into the sorted list, unless it overlaps one already there (the first
    /// word stands, as Linux's `numa_cleanup_meminfo()` refuses overlaps between nodes).
    fn add_range(&mut self, range: MemoryRange) {
        let taken = &self.ranges[..self.range_count];
        if self.range_count == MAX_RANGES || taken.iter().any(|r| r.start < range.end && range.start < r.end) {
            self.dropped_ranges += 1;
            return;
        }
        let at = taken.iter().position(|r| r.start > range.start).unwrap_or(self.range_count);
        self.ranges.copy_within(at..self.range_count, at + 1);
        self.ranges[at] = range;
        self.range_count += 1;
    }

    /// The nodes that have memory (Linux: `node_states[N_MEMORY]`).
    pub fn nodes_with_memory(&self) -> NodeMask {
        if !self.from_firmware {
            return NodeMask::single(Node::ZERO);
        }
        let mut mask = NodeMask::EMPTY;
        for r in self.ranges() {
            mask.insert(r.node);
        }
        mask
    }

    /// How many node numbers are in use (with or without memory).
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The memory ranges, lowest first.
    pub fn ranges(&self) -> &[MemoryRange] {
        &self.ranges[..self.range_count]
    }

    /// The node of physical address `address`: the range that holds it, else node 0 (memory
    /// the SRAT does not describe — and every address, without an SRAT).
    pub fn node_of_address(&self, address: u64) -> Node {
        let ranges = self.ranges();
        // The last range starting at or below the address (sorted, disjoint).
        let after = ranges.partition_point(|r| r.start <= address);
        match after.checked_sub(1).map(|i| ranges[i]) {
            Some(r) if address < r.end => r.node,
            _ => Node::ZERO,
        }
    }

    /// The node of the processor with local APIC id `apic_id`: its SRAT entry's, else node 0
    /// (Linux leaves such a CPU on `NUMA_NO_NODE` and later puts it on node 0 or the nearest
    /// node with memory; QEMU lists every CPU).
    pub fn node_of_apic(&self, apic_id: u32) -> Node {
        self.processors[..self.processor_count].iter().find(|(id, _)| *id == apic_id).map_or(Node::ZERO, |&(_, n)| n)
    }

    /// The distance from node `a` to node `b` (Linux: `node_distance()`): the SLIT's entry for
    /// their domains, else 10 to itself and 20 to any other.
    pub fn distance(&self, a: Node, b: Node) -> u8 {
        let from_slit = self.slit.and_then(|slit| {
            let (da, db) = (self.domains.get(..self.nodes)?.get(a.index())?, self.domains[..self.nodes].get(b.index())?);
            slit.distance(*da, *db)
        });
        from_slit.unwrap_or(if a == b { 10 } else { 20 })
    }

    /// Did a valid SLIT give the distances?
    pub fn has_slit(&self) -> bool {
        self.slit.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::table;
    use crate::srat::tests::{QEMU_NUMA1, QEMU_NUMA2, QEMU_NUMA4, QEMU_SLIT2, QEMU_SLIT4};

    const MIB: u64 = 1 << 20;

    fn node(n: usize) -> Node {
        Node::new(n).unwrap()
    }

    fn topology(srat: &'static [u8], slit: Option<&'static [u8]>) -> Topology<'static> {
        Topology::new(Some(&Srat::parse(srat).unwrap()), slit.map(|s| Slit::parse(s).unwrap()))
    }

    fn matrix(t: &Topology, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|a| (0..n).map(|b| t.distance(node(a), node(b))).collect()).collect()
    }

    #[test]
    fn qemus_nodes_are_its_domains_with_their_cpus_and_memory() {
        for (srat, n) in [(QEMU_NUMA1, 1), (QEMU_NUMA2, 2), (QEMU_NUMA4, 4)] {
            let t = topology(srat, None);
            assert!(t.from_firmware);
            assert_eq!(t.node_count(), n);
            assert_eq!(t.nodes_with_memory(), NodeMask::from_bits((1 << n) - 1));
            let per_node = 512 * MIB / n as u64;
            for i in 0..n {
                assert_eq!(t.node_of_apic(i as u32), node(i), "CPU {i} on node {i}");
                assert_eq!(t.node_of_address(i as u64 * per_node + 4096), node(i));
                assert_eq!(t.node_of_address((i as u64 + 1) * per_node - 1), node(i), "last byte of node {i}");
            }
            assert_eq!(t.node_of_address(0), node(0));
            assert_eq!(t.node_of_address(0xb_0000), node(0), "the legacy hole: not in the SRAT, node 0");
            assert_eq!(t.node_of_address(4 << 30), node(0), "beyond the described memory: node 0");
            assert_eq!(t.dropped_ranges, 0);
        }
    }

    #[test]
    fn without_a_slit_distances_are_10_and_20_and_with_one_qemus() {
        assert_eq!(matrix(&topology(QEMU_NUMA2, None), 2), vec![vec![10, 20], vec![20, 10]]);
        let t4 = topology(QEMU_NUMA4, None);
        assert!(!t4.has_slit());
        assert_eq!(matrix(&t4, 4)[3], vec![20, 20, 20, 10]);
        assert_eq!(matrix(&topology(QEMU_NUMA2, Some(QEMU_SLIT2)), 2), vec![vec![10, 15], vec![15, 10]]);
        assert_eq!(
            matrix(&topology(QEMU_NUMA4, Some(QEMU_SLIT4)), 4),
            vec![vec![10, 15, 20, 30], vec![15, 10, 25, 35], vec![20, 25, 10, 17], vec![30, 35, 17, 10]]
        );
        // One node's SRAT with no SLIT: 10 to itself.
        assert_eq!(matrix(&topology(QEMU_NUMA1, None), 1), vec![vec![10]]);
    }

    #[test]
    fn no_srat_is_one_node_0_with_everything() {
        let t = Topology::new(None, Some(Slit::parse(QEMU_SLIT2).unwrap()));
        assert!(!t.from_firmware);
        assert_eq!(t.node_count(), 1);
        assert_eq!(t.nodes_with_memory(), NodeMask::single(Node::ZERO));
        assert_eq!(t.node_of_address(300 * MIB), Node::ZERO);
        assert_eq!(t.node_of_apic(3), Node::ZERO);
        assert_eq!(t.distance(Node::ZERO, Node::ZERO), 10);
    }

    /// An SRAT (revision 3) of `entries`.
    fn srat(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for e in entries {
            body.extend_from_slice(e);
        }
        let mut t = table(b"SRAT", &body);
        t[8] = 3;
        t[9] = t[9].wrapping_sub(2);
        t
    }

    fn cpu(apic_id: u8, domain: u8) -> Vec<u8> {
        vec![0, 16, domain, apic_id, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    }

    fn mem(base: u64, length: u64, domain: u32) -> Vec<u8> {
        let mut e = vec![1, 40];
        e.extend_from_slice(&domain.to_le_bytes());
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&base.to_le_bytes());
        e.extend_from_slice(&length.to_le_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&[0; 8]);
        e
    }

    #[test]
    fn domains_are_numbered_in_the_order_linux_sees_them() {
        // Domains 7 and 3: CPUs first, so 7 → node 0, 3 → node 1; memory of domain 9 → node 2.
        let bytes = srat(&[mem(0, 16 * MIB, 3), cpu(0, 7), cpu(1, 3), mem(16 * MIB, 16 * MIB, 7), mem(32 * MIB, MIB, 9)]);
        let s = Srat::parse(&bytes).unwrap();
        let t = Topology::new(Some(&s), None);
        assert_eq!((t.node_of_apic(0), t.node_of_apic(1)), (node(0), node(1)));
        assert_eq!(t.node_of_address(0), node(1));
        assert_eq!(t.node_of_address(16 * MIB), node(0));
        assert_eq!(t.node_of_address(32 * MIB), node(2));
        assert_eq!(t.ranges().iter().map(|r| r.start).collect::<Vec<_>>(), vec![0, 16 * MIB, 32 * MIB], "sorted");
        // Domain 7 is locality 7 of a SLIT: one too small for it gives the defaults.
        let mut body = 2u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[10, 12, 12, 10]);
        let small = table(b"SLIT", &body);
        let t = Topology::new(Some(&s), Some(Slit::parse(&small).unwrap()));
        assert_eq!(t.distance(node(0), node(1)), 20);
    }

    #[test]
    fn overlapping_ranges_and_an_srat_without_memory_are_handled_as_linux() {
        let bytes = srat(&[cpu(0, 0), mem(0, 64 * MIB, 0), mem(32 * MIB, 64 * MIB, 1)]);
        let t = Topology::new(Some(&Srat::parse(&bytes).unwrap()), None);
        assert_eq!(t.dropped_ranges, 1);
        assert_eq!(t.node_of_address(80 * MIB), Node::ZERO);
        assert_eq!(t.nodes_with_memory(), NodeMask::single(Node::ZERO));
        let bytes = srat(&[cpu(0, 0), cpu(1, 1)]);
        let t = Topology::new(Some(&Srat::parse(&bytes).unwrap()), None);
        assert!(!t.from_firmware, "no memory in the SRAT: no NUMA configuration");
    }

    #[test]
    fn an_invalid_slit_is_not_used() {
        let mut body = 2u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[10, 5, 5, 10]);
        let bad = table(b"SLIT", &body);
        let t = Topology::new(Some(&Srat::parse(QEMU_NUMA2).unwrap()), Some(Slit::parse(&bad).unwrap()));
        assert!(!t.has_slit());
        assert_eq!(t.distance(node(0), node(1)), 20);
    }

    /// Garbage never panics: every single-byte corruption of every fixture (with the checksum
    /// repaired, so the walk really runs on it), and pseudo-random entry lists.
    #[test]
    fn corrupted_and_random_tables_never_panic() {
        let repaired = |mut t: Vec<u8>| {
            t[9] = 0;
            let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
            t[9] = 0u8.wrapping_sub(sum);
            t
        };
        let check = |srat: &[u8], slit: &[u8]| {
            let srat = Srat::parse(srat).ok();
            let slit = Slit::parse(slit).ok();
            let t = Topology::new(srat.as_ref(), slit);
            for a in 0..MAX_NODES {
                let _ = t.distance(node(a), node(a / 2));
            }
            let _ = (t.node_of_address(u64::MAX), t.node_of_apic(u32::MAX), t.nodes_with_memory());
        };
        for fixture in [QEMU_NUMA1, QEMU_NUMA2, QEMU_NUMA4] {
            for at in 10..fixture.len() {
                for flip in [0x01, 0x5a, 0xff] {
                    let mut t = fixture.to_vec();
                    t[at] ^= flip;
                    check(&repaired(t), QEMU_SLIT4);
                }
            }
        }
        for at in 10..QEMU_SLIT4.len() {
            let mut t = QEMU_SLIT4.to_vec();
            t[at] ^= 0xff;
            check(QEMU_NUMA4, &repaired(t));
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            check(&table(b"SRAT", &body), &table(b"SLIT", &body));
        }
    }
}
