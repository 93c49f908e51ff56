//! The machine's NUMA topology: which nodes exist, which CPUs and memory each has, and how far
//! apart they are.
//!
//! Linux learns this from ACPI (the SRAT says which CPU and which memory range belongs to which
//! node — `acpi_numa_init()`; the SLIT gives distances — `acpi_numa_slit_init()`), and without an
//! SRAT puts everything on node 0 ("No NUMA configuration found"). pikku does the same: [`init`]
//! reads both tables once at boot, through the RSDP, with the pure walkers of the `firmware`
//! crate (`firmware::srat`, `firmware::numa::Topology`, host-tested on QEMU's real tables).
//!
//! It runs right after the page tables are known and before the frame allocator starts
//! ([`super::frame::init`] counts each node's frames), so the topology is kept in fixed-size
//! arrays, not on the heap. A CPU's node is looked up by its local APIC id — the SRAT names
//! processors by APIC id, the kernel by its dense index in `percpu` — so [`cpu_node`] is right
//! for every CPU as soon as it has come up.
//!
//! The node and mask types are [`mempolicy::Node`] and [`mempolicy::NodeMask`]; the frame
//! allocator ([`super::frame`]) asks [`frame_node`] where a frame lives and hands out frames
//! from a chosen node with fallback in [`distance`] order.
//!
//! Lock: none. [`TOPOLOGY`] is a `spin::Once`, written once on the boot CPU before any other
//! CPU runs and only read afterwards.

use firmware::numa::Topology;
use mempolicy::{Node, NodeMask};
use spin::Once;
use x86_64::structures::paging::PhysFrame;

use crate::arch::x86_64::percpu;

/// The topology read at boot (unset until [`init`]: then one node, as without an SRAT).
static TOPOLOGY: Once<Topology<'static>> = Once::new();
/// What [`topology`] answers before [`init`] (and for a machine without an SRAT).
static SINGLE_NODE: Topology<'static> = Topology::single_node();

fn topology() -> &'static Topology<'static> {
    TOPOLOGY.get().unwrap_or(&SINGLE_NODE)
}

/// Reads the SRAT and SLIT through the RSDP at physical `rsdp` (from the bootloader). Without
/// an SRAT — or with one that does not parse, or lists no memory — the machine is one node 0.
/// Call once, on the boot CPU, before [`super::frame::init`].
pub fn init(rsdp: Option<u64>) {
    TOPOLOGY.call_once(|| {
        let srat = crate::smp::acpi_table(rsdp, b"SRAT").and_then(firmware::srat::Srat::parse);
        let slit = crate::smp::acpi_table(rsdp, b"SLIT").and_then(firmware::srat::Slit::parse);
        if let Err(e) = srat {
            crate::log_debug!("numa: no usable ACPI SRAT ({e:?})");
        }
        let topology = Topology::new(srat.as_ref().ok(), slit.ok());
        if slit.is_ok() && !topology.has_slit() && topology.from_firmware {
            // Linux: "SLIT table looks invalid. Not used."
            crate::log_warn!("numa: the ACPI SLIT looks invalid; not used (distances 10 local, 20 remote)");
        }
        if topology.dropped_ranges != 0 {
            crate::log_warn!("numa: {} SRAT entries left out (overlapping, or past pikku's limits)", topology.dropped_ranges);
        }
        topology
    });
}

/// The nodes that exist (Linux: `node_online_map`, and `node_states[N_MEMORY]` — pikku only
/// counts a node online if it has memory).
pub fn online_nodes() -> NodeMask {
    topology().nodes_with_memory()
}

/// One past the highest online node (Linux: `nr_node_ids`).
#[allow(dead_code)] // the policy calls of issue #17 use it
pub fn nr_node_ids() -> usize {
    64 - online_nodes().bits().leading_zeros() as usize
}

/// The node of CPU `cpu` (its index in `percpu`, not its APIC id) (Linux: `cpu_to_node()`).
pub fn cpu_node(cpu: usize) -> Node {
    let topology = topology();
    if !topology.from_firmware || cpu >= percpu::MAX_CPUS {
        return Node::ZERO;
    }
    topology.node_of_apic(percpu::cpu(cpu).apic_id.load(core::sync::atomic::Ordering::Relaxed))
}

/// The node of the CPU running this code (Linux: `numa_node_id()`). The answer can be stale
/// by the time it is used if the thread migrates — as Linux's: placement is a preference.
pub fn this_node() -> Node {
    cpu_node(percpu::this_cpu().cpu_id as usize)
}

/// The node whose memory holds `frame` (Linux: `page_to_nid()`): the SRAT range that holds
/// it; node 0 for memory the SRAT does not describe.
pub fn frame_node(frame: PhysFrame) -> Node {
    topology().node_of_address(frame.start_address().as_u64())
}

/// The distance from node `a` to node `b` as the SLIT gives it (Linux: `node_distance()`): 10
/// to itself, 20 to any other node when there is no SLIT — Linux's defaults.
pub fn distance(a: Node, b: Node) -> u8 {
    topology().distance(a, b)
}

/// The physical ranges `[start, end)` of `node`'s memory, lowest first (the SRAT's; none
/// without one — then every frame is node 0's).
pub fn node_ranges(node: Node) -> impl Iterator<Item = (u64, u64)> {
    topology().ranges().iter().filter(move |r| r.node == node).map(|r| (r.start, r.end))
}

/// The boot report's lines: each node with its CPUs and memory, and the distances —
/// `numa: 2 nodes: node 0 cpus 0 mem 256 MiB, node 1 cpus 1 mem 256 MiB` and
/// `numa: distances (SRAT defaults): 10 20 / 20 10`; without an SRAT, Linux's "No NUMA
/// configuration found" and everything on node 0.
pub fn report() {
    use core::fmt::Write;
    let topology = topology();
    let nodes = online_nodes();
    let mut line = alloc::string::String::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut cpus = alloc::string::String::new();
        for cpu in percpu::online_cpus().filter(|c| cpu_node(c.cpu_id as usize) == node) {
            let _ = write!(cpus, "{}{}", if cpus.is_empty() { "" } else { "," }, cpu.cpu_id);
        }
        // The node's span, as Linux reports it ("Node 0 [mem 0x0-0xfffffff]"): with QEMU's
        // ranges a whole number of MiB; without an SRAT, the usable memory.
        let mib = if topology.from_firmware {
            let (low, high) = node_ranges(node).fold((u64::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)));
            high.saturating_sub(low) >> 20
        } else {
            (super::frame::total_usable() as u64 * 4096) >> 20
        };
        let cpus = if cpus.is_empty() { "none" } else { cpus.as_str() };
        let _ = write!(line, "{}node {} cpus {cpus} mem {mib} MiB", if i == 0 { "" } else { ", " }, node.index());
    }
    if !topology.from_firmware {
        crate::log_info!("numa: no NUMA configuration found (no ACPI SRAT): 1 node: {line}");
        return;
    }
    crate::log_info!("numa: {} node{}: {line}", nodes.count(), if nodes.count() == 1 { "" } else { "s" });
    let mut rows = alloc::string::String::new();
    for a in nodes.iter() {
        let row: alloc::vec::Vec<alloc::string::String> = nodes.iter().map(|b| alloc::format!("{}", distance(a, b))).collect();
        let _ = write!(rows, "{}{}", if rows.is_empty() { "" } else { " / " }, row.join(" "));
    }
    let source = if topology.has_slit() { "ACPI SLIT" } else { "no SLIT: 10 local, 20 remote" };
    crate::log_info!("numa: distances ({source}): {rows}");
    let mut free = alloc::string::String::new();
    for node in nodes.iter() {
        let _ = write!(free, " {}:{}", node.index(), super::frame::node_free_count(node));
    }
    crate::log_debug!("numa: free frames per node:{free} (the user reserve, {} frames, is global)", super::frame::user_reserve());
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest]
    fn every_cpu_and_every_frame_is_on_an_online_node() {
        let online = online_nodes();
        assert!(online.contains(Node::ZERO), "node 0 always has memory");
        for cpu in percpu::online_cpus() {
            let node = cpu_node(cpu.cpu_id as usize);
            assert!(online.contains(node), "CPU {} on node {}, not online", cpu.cpu_id, node.index());
        }
        assert!(online.contains(this_node()));
        for node in online.iter() {
            assert_eq!(distance(node, node), 10);
            for (start, end) in node_ranges(node) {
                for address in [start, end - 4096] {
                    let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(address & !0xfff));
                    assert_eq!(frame_node(frame), node);
                }
            }
        }
        assert_eq!(nr_node_ids(), online.count(), "QEMU numbers its nodes densely");
    }

    #[ktest(needs = numa)]
    fn cpus_are_spread_over_the_nodes_as_qemu_was_told() {
        // The harness gives node n the CPUs [n·cpus/N, (n+1)·cpus/N): with one CPU per node,
        // CPU i is on node i; and every pair of distinct nodes is farther than 10.
        let nodes = online_nodes().count();
        let cpus = percpu::online_cpus().count();
        for cpu in percpu::online_cpus() {
            let expected = cpu.cpu_id as usize * nodes / cpus;
            assert_eq!(cpu_node(cpu.cpu_id as usize).index(), expected, "CPU {}", cpu.cpu_id);
        }
        for a in online_nodes().iter() {
            for b in online_nodes().iter().filter(|&b| b != a) {
                assert!(distance(a, b) > 10 && distance(a, b) == distance(b, a));
            }
        }
    }
}
