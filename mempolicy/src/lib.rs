//! NUMA memory policy as pure logic — the sibling of the `pkeys` crate.
//!
//! A NUMA machine has several *nodes*, each a group of CPUs with the memory nearest to them.
//! A *memory policy* says from which nodes a page should come: per thread (`set_mempolicy`), per
//! memory area (`mbind`), asked back with `get_mempolicy`. This crate holds what needs no hardware:
//! the node number and node-mask types the kernel's topology (`kernel::mm::numa`) and frame
//! allocator speak, and the policy rules built on them. It compiles on the host, where its tests
//! run, and into the kernel.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The most nodes pikku describes: one 64-bit word of mask. (Linux on x86-64 Debian is built with
/// `CONFIG_NODES_SHIFT=10`, 1,024 nodes; what user space sees of that — `maxnode` checks and the
/// width of copied masks — is modelled where the system calls are, not by a wider mask here.)
pub const MAX_NODES: usize = 64;

/// A node number that is always below [`MAX_NODES`] (so it indexes a [`NodeMask`] safely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Node(u8);

impl Node {
    /// Node 0: the only node of a machine without NUMA information (Linux: "No NUMA
    /// configuration found", everything on node 0).
    pub const ZERO: Node = Node(0);

    /// `Some` for `0..MAX_NODES`.
    pub const fn new(n: usize) -> Option<Node> {
        if n < MAX_NODES {
            Some(Node(n as u8))
        } else {
            None
        }
    }

    /// The node's number.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of nodes (Linux: `nodemask_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeMask(u64);

impl NodeMask {
    /// No node.
    pub const EMPTY: NodeMask = NodeMask(0);

    /// The mask whose bit n stands for node n.
    pub const fn from_bits(bits: u64) -> NodeMask {
        NodeMask(bits)
    }

    /// One node.
    pub const fn single(node: Node) -> NodeMask {
        NodeMask(1 << node.0)
    }

    /// Bit n set = node n in the set.
    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn contains(self, node: Node) -> bool {
        self.0 & (1 << node.0) != 0
    }

    pub fn insert(&mut self, node: Node) {
        self.0 |= 1 << node.0;
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many nodes are in the set (Linux: `nodes_weight()`).
    pub const fn count(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The nodes in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = Node> {
        (0..MAX_NODES).filter_map(Node::new).filter(move |&n| self.contains(n))
    }

    /// The `n`-th node of the set, counting from 0 (interleave picks its node this way:
    /// mask {1, 3}, n = 1 → node 3). `None` past the last.
    pub fn nth(self, n: usize) -> Option<Node> {
        self.iter().nth(n)
    }

    pub const fn intersection(self, other: NodeMask) -> NodeMask {
        NodeMask(self.0 & other.0)
    }

    pub const fn union(self, other: NodeMask) -> NodeMask {
        NodeMask(self.0 | other.0)
    }

    /// Is every node of `self` in `other` (Linux: `nodes_subset()`)?
    pub const fn is_subset(self, other: NodeMask) -> bool {
        self.0 & !other.0 == 0
    }

    /// The lowest node of the set (Linux: `first_node()`).
    pub fn first(self) -> Option<Node> {
        self.nth(0)
    }

    /// The position of `node` among the nodes of the set (mask {1, 3}: node 3 is at 1).
    pub fn position(self, node: Node) -> Option<usize> {
        self.contains(node).then(|| (self.0 & ((1u64 << node.0) - 1)).count_ones() as usize)
    }
}

mod policy;
pub use policy::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_counts_within_the_mask() {
        let m = NodeMask::from_bits(0b1010);
        assert_eq!(m.nth(0), Node::new(1));
        assert_eq!(m.nth(1), Node::new(3));
        assert_eq!(m.nth(2), None);
        assert_eq!(m.count(), 2);
    }

    #[test]
    fn node_numbers_stop_at_max_nodes() {
        assert!(Node::new(MAX_NODES - 1).is_some());
        assert!(Node::new(MAX_NODES).is_none());
    }
}
