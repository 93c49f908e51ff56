//! The machine's NUMA topology: which nodes exist, which CPUs and memory each has, and how far
//! apart they are.
//!
//! Linux learns this from ACPI (the SRAT says which CPU and which memory range belongs to which
//! node — `acpi_numa_init()`; the SLIT gives distances — `acpi_numa_slit_init()`), and without an
//! SRAT puts everything on node 0 ("No NUMA configuration found"). pikku does the same.
//!
//! The node and mask types are [`mempolicy::Node`] and [`mempolicy::NodeMask`] (pure logic,
//! host-tested); the frame allocator ([`super::frame`]) asks [`frame_node`] where a frame lives
//! and hands out frames from a chosen node with fallback in [`distance`] order.
//!
//! Today: one node (node 0) holding every CPU and all memory — the shape of a machine without an
//! SRAT. (Issue #17 item 1 reads the real topology here.)

use mempolicy::{Node, NodeMask};
use x86_64::structures::paging::PhysFrame;

/// The nodes that exist (Linux: `node_online_map`, and `node_states[N_MEMORY]` — pikku only
/// counts a node online if it has memory).
pub fn online_nodes() -> NodeMask {
    NodeMask::single(Node::ZERO)
}

/// One past the highest online node (Linux: `nr_node_ids`).
#[allow(dead_code)] // the policy calls of issue #17 use it
pub fn nr_node_ids() -> usize {
    64 - online_nodes().bits().leading_zeros() as usize
}

/// The node of CPU `cpu` (its index in `percpu`, not its APIC id) (Linux: `cpu_to_node()`).
pub fn cpu_node(_cpu: usize) -> Node {
    Node::ZERO
}

/// The node of the CPU running this code (Linux: `numa_node_id()`). The answer can be stale
/// by the time it is used if the thread migrates — as Linux's: placement is a preference.
#[allow(dead_code)] // the policy calls of issue #17 use it
pub fn this_node() -> Node {
    cpu_node(crate::arch::x86_64::percpu::this_cpu().cpu_id as usize)
}

/// The node whose memory holds `frame` (Linux: `page_to_nid()`).
#[allow(dead_code)] // the policy calls of issue #17 use it
pub fn frame_node(_frame: PhysFrame) -> Node {
    Node::ZERO
}

/// The distance from node `a` to node `b` as the SLIT gives it (Linux: `node_distance()`): 10
/// to itself, 20 to any other node when there is no SLIT — Linux's defaults.
#[allow(dead_code)] // the policy calls of issue #17 use it
pub fn distance(a: Node, b: Node) -> u8 {
    if a == b {
        10
    } else {
        20
    }
}
