//! Memory policies and the argument rules of Linux's policy system calls.
//!
//! A [`Policy`] is what `set_mempolicy` gives a thread and `mbind` gives a range of memory: a
//! [`Mode`] (where pages should come from), the mode flags, and the nodes. "No policy" — the
//! default — is `Option::None` everywhere, as Linux's `NULL` `struct mempolicy *`: the
//! allocation then falls back to the thread's policy, and then to the local node.
//!
//! Everything here is arithmetic on the arguments: which errno, in which order; which bytes of a
//! user node mask are read or written; which node a page goes to. The kernel does the copies
//! and the allocation (`kernel::syscall::mempolicy`, `kernel::mm::policy`). Linux's
//! `mm/mempolicy.c` (6.12) is the behaviour mirrored; the function names are given with each
//! rule.

use crate::{Node, NodeMask, MAX_NODES};
use pkeys::Errno;

/// Linux's `MAX_NUMNODES` in Debian's x86-64 configuration (`CONFIG_NODES_SHIFT=10`): user node
/// masks are checked against 1,024 bits even though pikku keeps only [`MAX_NODES`].
pub const MAX_NUMNODES: u64 = 1024;
/// The longest user node mask, in bits (Linux: `PAGE_SIZE * BITS_PER_BYTE` in `get_nodes()`).
pub const MAX_USER_MASK_BITS: u64 = 4096 * 8;
/// The longest user node mask `get_mempolicy` writes, in bytes (`copy_nodes_to_user()`).
const MAX_COPY_BYTES: u64 = 4096;

/// A policy's mode (`include/uapi/linux/mempolicy.h`'s `MPOL_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No policy of its own: fall back (area → thread → local).
    Default = 0,
    /// The first node of the mask, else anywhere nearest to it.
    Preferred = 1,
    /// Only the nodes of the mask.
    Bind = 2,
    /// Round-robin over the mask, by page index.
    Interleave = 3,
    /// The node of the CPU that allocates.
    Local = 4,
    /// The nodes of the mask first, else anywhere.
    PreferredMany = 5,
    /// Round-robin weighted per node.
    WeightedInterleave = 6,
}

impl Mode {
    /// The mode numbered `n`, if it is one (Linux: `n < MPOL_MAX`).
    pub const fn from_number(n: u32) -> Option<Mode> {
        Some(match n {
            0 => Mode::Default,
            1 => Mode::Preferred,
            2 => Mode::Bind,
            3 => Mode::Interleave,
            4 => Mode::Local,
            5 => Mode::PreferredMany,
            6 => Mode::WeightedInterleave,
            _ => return None,
        })
    }
}

/// The mode flags user space ORs into the mode (`MPOL_MODE_FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModeFlags(u16);

impl ModeFlags {
    pub const NONE: ModeFlags = ModeFlags(0);
    /// `MPOL_F_STATIC_NODES`: the mask names physical nodes, kept as given.
    pub const STATIC_NODES: ModeFlags = ModeFlags(1 << 15);
    /// `MPOL_F_RELATIVE_NODES`: the mask names positions among the allowed nodes.
    pub const RELATIVE_NODES: ModeFlags = ModeFlags(1 << 14);
    /// `MPOL_F_NUMA_BALANCING`: let NUMA balancing move pages (only BIND, PREFERRED_MANY).
    pub const NUMA_BALANCING: ModeFlags = ModeFlags(1 << 13);
    const ALL: u16 = (1 << 15) | (1 << 14) | (1 << 13);

    pub const fn bits(self) -> u16 {
        self.0
    }

    pub const fn contains(self, other: ModeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// STATIC or RELATIVE: the policy remembers the user's mask (Linux:
    /// `mpol_store_user_nodemask()` tests all of `MPOL_MODE_FLAGS`).
    const fn keeps_user_mask(self) -> bool {
        self.0 != 0
    }

    const fn remaps(self) -> bool {
        self.0 & (Self::STATIC_NODES.0 | Self::RELATIVE_NODES.0) != 0
    }
}

/// A memory policy (Linux: `struct mempolicy`); the default policy is `None`, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Never [`Mode::Default`].
    mode: Mode,
    flags: ModeFlags,
    /// The nodes in effect: the user's mask restricted to the allowed nodes (remapped for
    /// RELATIVE; one node for PREFERRED; empty for LOCAL).
    nodes: NodeMask,
    /// The mask as the user gave it, reported back by `get_mempolicy` when a mode flag is set.
    user_nodes: NodeMask,
    /// `set_mempolicy_home_node()`'s node: where BIND and PREFERRED_MANY allocate first.
    home_node: Option<Node>,
}

impl Policy {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn flags(&self) -> ModeFlags {
        self.flags
    }

    /// The nodes the policy allocates from.
    pub fn nodes(&self) -> NodeMask {
        self.nodes
    }

    pub fn home_node(&self) -> Option<Node> {
        self.home_node
    }
}

/// Splits `set_mempolicy`'s or `mbind`'s `mode` argument (a C `int`: the upper 32 bits of the
/// register are ignored) into mode and flags. Linux: `sanitize_mpol_flags()` — a mode of
/// `MPOL_MAX` or more, STATIC with RELATIVE, or NUMA_BALANCING with a mode other than BIND or
/// PREFERRED_MANY → `EINVAL`.
pub fn sanitize_mode(raw: u64) -> Result<(Mode, ModeFlags), Errno> {
    let raw = raw as u32;
    let flags = ModeFlags((raw & ModeFlags::ALL as u32) as u16);
    let mode = Mode::from_number(raw & !(ModeFlags::ALL as u32)).ok_or(Errno::EINVAL)?;
    if flags.contains(ModeFlags::STATIC_NODES) && flags.contains(ModeFlags::RELATIVE_NODES) {
        return Err(Errno::EINVAL);
    }
    if flags.contains(ModeFlags::NUMA_BALANCING) && !matches!(mode, Mode::Bind | Mode::PreferredMany) {
        return Err(Errno::EINVAL);
    }
    Ok((mode, flags))
}

/// Reads a user node mask of `maxnode` bits the way Linux's `get_nodes()` does; `read_word(i)`
/// reads the i-th `unsigned long` of the user's array (`Err(EFAULT)` if it cannot). Returns the
/// nodes below [`MAX_NODES`] (the bits from there to [`MAX_NUMNODES`] are accepted and dropped:
/// no such node can exist here).
///
/// The rules, in order: `maxnode` is first decremented (a historical off-by-one every caller
/// lives with — `maxnode` 0 wraps to `ULONG_MAX`); a NULL mask or nothing left is the empty mask; more than
/// [`MAX_USER_MASK_BITS`] → `EINVAL`; beyond `MAX_NUMNODES`, whole words are read from the last
/// one down and must be zero (`EINVAL`) — whole words, so bits past `maxnode` in the last word
/// count; then the first `min(maxnode, MAX_NUMNODES)` bits are the mask.
pub fn get_nodes(mask_is_null: bool, maxnode: u64, mut read_word: impl FnMut(usize) -> Result<u64, Errno>) -> Result<NodeMask, Errno> {
    let mut maxnode = maxnode.wrapping_sub(1);
    if maxnode == 0 || mask_is_null {
        return Ok(NodeMask::EMPTY);
    }
    if maxnode > MAX_USER_MASK_BITS {
        return Err(Errno::EINVAL);
    }
    while maxnode > MAX_NUMNODES {
        let word = read_word(((maxnode - 1) / 64) as usize)?;
        if word != 0 {
            return Err(Errno::EINVAL);
        }
        maxnode = (maxnode - 64).max(MAX_NUMNODES);
    }
    // pikku's nodes all live in word 0; the words after it (up to MAX_NUMNODES) are read, as
    // Linux reads them (a fault there is EFAULT), and dropped.
    let words = maxnode.div_ceil(64) as usize;
    let mut first = read_word(0)?;
    for i in 1..words {
        read_word(i)?;
    }
    if maxnode < 64 {
        first &= (1u64 << maxnode) - 1;
    }
    Ok(NodeMask::from_bits(first))
}

/// What `get_mempolicy` writes into the user's node mask (Linux: `copy_nodes_to_user()`): the
/// mask's first `copy` bytes, then zeros up to `clear_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskCopy {
    /// Bytes of the kernel's mask written from offset 0.
    pub copy: usize,
    /// Zeros are written from `copy` up to here (equal to `copy`: no tail).
    pub clear_to: usize,
}

/// The copy of a node mask to a user array of `maxnode` bits on a machine whose highest node id
/// is `nr_node_ids - 1`. Linux: `copy_nodes_to_user()` — `ALIGN(maxnode - 1, 64) / 8` bytes in
/// C's wrapping `unsigned long` arithmetic (`maxnode` 1 copies nothing, and so does a huge
/// `maxnode` whose alignment wraps to 0); the kernel's own mask is
/// `BITS_TO_LONGS(nr_node_ids)` words, anything longer is zero-filled, and more than a page
/// → `EINVAL`.
pub fn mask_copy(maxnode: u64, nr_node_ids: usize) -> Result<MaskCopy, Errno> {
    let copy = (maxnode.wrapping_sub(1).wrapping_add(63) & !63) / 8;
    let nbytes = (nr_node_ids as u64).div_ceil(64) * 8;
    if copy > nbytes {
        if copy > MAX_COPY_BYTES {
            return Err(Errno::EINVAL);
        }
        return Ok(MaskCopy { copy: nbytes as usize, clear_to: copy as usize });
    }
    Ok(MaskCopy { copy: copy as usize, clear_to: copy as usize })
}

/// `mpol_relative_nodemask()`: a RELATIVE mask names positions, folded onto the allowed nodes —
/// bit n means the `(n % count)`-th node of `allowed` (mask {1} on nodes {0, 2}: node 2).
pub fn relative_nodes(user: NodeMask, allowed: NodeMask) -> NodeMask {
    let count = allowed.count();
    let mut out = NodeMask::EMPTY;
    if count == 0 {
        return out;
    }
    for n in user.iter() {
        if let Some(node) = allowed.nth(n.index() % count) {
            out.insert(node);
        }
    }
    out
}

/// Makes a policy from `set_mempolicy`'s or `mbind`'s checked mode, flags and mask, against the
/// nodes the caller may use (`allowed`: Linux's `cpuset_current_mems_allowed & N_MEMORY`).
/// `Ok(None)` is the default policy. Linux: `mpol_new()` then `mpol_set_nodemask()` and the
/// mode's `create` — DEFAULT with nodes → `EINVAL`; PREFERRED without nodes is LOCAL (but with
/// STATIC or RELATIVE `EINVAL`); LOCAL with nodes or with STATIC/RELATIVE → `EINVAL`; any other
/// mode needs nodes; finally the mask is restricted to `allowed` (RELATIVE: folded onto it) and
/// an empty result is `EINVAL`. PREFERRED keeps only the first node.
pub fn mpol_new(mode: Mode, flags: ModeFlags, user: NodeMask, allowed: NodeMask) -> Result<Option<Policy>, Errno> {
    let mode = match mode {
        Mode::Default if user.is_empty() => return Ok(None),
        Mode::Default => return Err(Errno::EINVAL),
        Mode::Preferred if user.is_empty() && flags.remaps() => return Err(Errno::EINVAL),
        Mode::Preferred if user.is_empty() => Mode::Local,
        Mode::Local if !user.is_empty() || flags.remaps() => return Err(Errno::EINVAL),
        Mode::Local => Mode::Local,
        _ if user.is_empty() => return Err(Errno::EINVAL),
        other => other,
    };
    let user_nodes = if flags.keeps_user_mask() { user } else { NodeMask::EMPTY };
    if mode == Mode::Local {
        return Ok(Some(Policy { mode, flags, nodes: NodeMask::EMPTY, user_nodes, home_node: None }));
    }
    let nodes = if flags.contains(ModeFlags::RELATIVE_NODES) { relative_nodes(user, allowed) } else { user.intersection(allowed) };
    let nodes = match (mode, nodes.first()) {
        (_, None) => return Err(Errno::EINVAL),
        (Mode::Preferred, Some(first)) => NodeMask::single(first),
        _ => nodes,
    };
    Ok(Some(Policy { mode, flags, nodes, user_nodes, home_node: None }))
}

/// What `get_mempolicy` reports for a policy (`None`: the default): the mode number with its
/// mode flags ORed in, and the node mask — the user's mask if a mode flag is set, else the nodes
/// in effect (empty for DEFAULT and LOCAL). Linux: `do_get_mempolicy()` and
/// `get_policy_nodemask()`.
pub fn reported(policy: Option<&Policy>) -> (i32, NodeMask) {
    match policy {
        None => (Mode::Default as i32, NodeMask::EMPTY),
        Some(p) => {
            let mask = if p.flags.keeps_user_mask() {
                p.user_nodes
            } else if p.mode == Mode::Local {
                NodeMask::EMPTY
            } else {
                p.nodes
            };
            (p.mode as i32 | p.flags.0 as i32, mask)
        }
    }
}

/// `get_mempolicy`'s flags (`MPOL_F_NODE`, `MPOL_F_ADDR`, `MPOL_F_MEMS_ALLOWED`).
pub const MPOL_F_NODE: u64 = 1 << 0;
pub const MPOL_F_ADDR: u64 = 1 << 1;
pub const MPOL_F_MEMS_ALLOWED: u64 = 1 << 2;

/// What a `get_mempolicy` call asks, once its arguments passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetQuery {
    /// `MPOL_F_MEMS_ALLOWED`: policy 0, the nodes the caller may use.
    MemsAllowed,
    /// `MPOL_F_ADDR`: the policy of the area at the address (no fallback to the thread's);
    /// with `node`, the node of the page there instead of the mode.
    Area { node: bool },
    /// The thread's policy; with `node`, the next interleave node (only for an interleave
    /// policy: anything else is `EINVAL`).
    Thread { node: bool },
}

/// The checks of `get_mempolicy(policy, nmask, maxnode, addr, flags)` that need no memory, in
/// Linux's order (`kernel_get_mempolicy()`, `do_get_mempolicy()`): a mask shorter than
/// `nr_node_ids` → `EINVAL`; unknown flags → `EINVAL`; `MPOL_F_MEMS_ALLOWED` with another flag →
/// `EINVAL`; an address without `MPOL_F_ADDR` → `EINVAL`. (The area lookup, `EFAULT`, comes next
/// in the kernel.)
pub fn get_mempolicy_query(mask_is_null: bool, maxnode: u64, addr: u64, flags: u64, nr_node_ids: usize) -> Result<GetQuery, Errno> {
    if !mask_is_null && maxnode < nr_node_ids as u64 {
        return Err(Errno::EINVAL);
    }
    if flags & !(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED) != 0 {
        return Err(Errno::EINVAL);
    }
    let node = flags & MPOL_F_NODE != 0;
    if flags & MPOL_F_MEMS_ALLOWED != 0 {
        return if flags & (MPOL_F_NODE | MPOL_F_ADDR) != 0 { Err(Errno::EINVAL) } else { Ok(GetQuery::MemsAllowed) };
    }
    if flags & MPOL_F_ADDR != 0 {
        return Ok(GetQuery::Area { node });
    }
    if addr != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(GetQuery::Thread { node })
}

/// `mbind`'s flags (`MPOL_MF_*`).
pub const MPOL_MF_STRICT: u64 = 1 << 0;
pub const MPOL_MF_MOVE: u64 = 1 << 1;
pub const MPOL_MF_MOVE_ALL: u64 = 1 << 2;
const MPOL_MF_VALID: u64 = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL;

/// The page size the range checks round to.
const PAGE: u64 = 4096;

/// The range and flags of an `mbind` call that passed [`mbind_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbindRange {
    pub start: u64,
    /// `start` + the length rounded up to pages.
    pub end: u64,
    /// The flags, with STRICT dropped for the default policy (it has no nodes to be strict
    /// about).
    pub flags: u64,
}

/// `mbind`'s checks after the mode and the mask (Linux: the start of `do_mbind()`): unknown
/// flags → `EINVAL`; `MPOL_MF_MOVE_ALL` without `CAP_SYS_NICE` → `EPERM`; an unaligned start →
/// `EINVAL`; the length rounded up to pages (in wrapping arithmetic) making the end wrap below the
/// start → `EINVAL`; an empty range → `Ok(None)`, success with nothing done (the mode is only
/// checked after this).
pub fn mbind_range(start: u64, len: u64, mode: Mode, flags: u64, may_move_all: bool) -> Result<Option<MbindRange>, Errno> {
    if flags & !MPOL_MF_VALID != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MPOL_MF_MOVE_ALL != 0 && !may_move_all {
        return Err(Errno::EPERM);
    }
    let flags = if mode == Mode::Default { flags & !MPOL_MF_STRICT } else { flags };
    page_range(start, len).map(|r| r.map(|(start, end)| MbindRange { start, end, flags }))
}

/// `[start, start + PAGE_ALIGN(len))` as `mbind` and `set_mempolicy_home_node` check it: an
/// unaligned start or a wrapping end → `EINVAL`; `Ok(None)` for an empty range.
fn page_range(start: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
    if !start.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let end = start.wrapping_add(len.wrapping_add(PAGE - 1) & !(PAGE - 1));
    if end < start {
        return Err(Errno::EINVAL);
    }
    Ok((end != start).then_some((start, end)))
}

/// `set_mempolicy_home_node(start, len, home_node, flags)`'s checks (Linux's order): unaligned
/// start → `EINVAL`; flags (reserved) → `EINVAL`; a node that is not online (or past
/// `MAX_NUMNODES`) → `EINVAL`; then the range as `mbind`'s. `Ok(None)`: nothing to do.
pub fn home_node_range(start: u64, len: u64, home_node: u64, flags: u64, online: NodeMask) -> Result<Option<(u64, u64, Node)>, Errno> {
    if !start.is_multiple_of(PAGE) || flags != 0 {
        return Err(Errno::EINVAL);
    }
    let node = Node::new(home_node as usize).filter(|&n| online.contains(n)).ok_or(Errno::EINVAL)?;
    page_range(start, len).map(|r| r.map(|(s, e)| (s, e, node)))
}

/// The policy with a home node (BIND and PREFERRED_MANY only; anything else `EOPNOTSUPP`, as
/// Linux's `set_mempolicy_home_node()`).
pub fn with_home_node(policy: &Policy, home: Node) -> Result<Policy, Errno> {
    match policy.mode {
        Mode::Bind | Mode::PreferredMany => Ok(Policy { home_node: Some(home), ..*policy }),
        _ => Err(Errno::EOPNOTSUPP),
    }
}

/// Where a page is allocated: `preferred` first, within `allowed` (nearest to `preferred`
/// first); if that fails and `then_anywhere`, any node nearest to `preferred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub preferred: Node,
    pub allowed: NodeMask,
    pub then_anywhere: bool,
}

/// The n-th node of an interleave over `nodes` for page index `index` (Linux:
/// `interleave_nid()`: `index % count`-th node of the mask). `None` for an empty mask.
pub fn interleave_node(nodes: NodeMask, index: u64) -> Option<Node> {
    let count = nodes.count() as u64;
    if count == 0 {
        return None;
    }
    nodes.nth((index % count) as usize)
}

/// Weighted interleave (Linux: `weighted_interleave_nid()`): each node of the mask takes
/// `weight(node)` consecutive indices (a weight of 0 counts as 1) in a cycle of the summed
/// weights. Linux 6.12 reads the weights from `/sys/kernel/mm/mempolicy/weighted_interleave/
/// nodeN`; until one is written every weight is 1, which makes this [`interleave_node`].
pub fn weighted_interleave_node(nodes: NodeMask, index: u64, weight: impl Fn(Node) -> u8) -> Option<Node> {
    let total: u64 = nodes.iter().map(|n| weight(n).max(1) as u64).sum();
    if total == 0 {
        return None;
    }
    let mut target = index % total;
    for n in nodes.iter() {
        let w = weight(n).max(1) as u64;
        if target < w {
            return Some(n);
        }
        target -= w;
    }
    None
}

/// The default weighted-interleave weight of every node (no sysfs in pikku).
pub fn default_weight(_: Node) -> u8 {
    1
}

/// Where the page with interleave index `index` (for anonymous memory `addr >> 12`; for a shared
/// object, the page's offset in it) goes under `policy` (`None`: the default) when the
/// allocating CPU is on node `local`. Linux: `policy_nodemask()` with `alloc_pages_mpol()`:
///
/// * default, LOCAL: the local node, falling back anywhere;
/// * PREFERRED: its node, falling back anywhere;
/// * BIND: only its nodes, nearest to the home node if set, else to the local node;
/// * PREFERRED_MANY: its nodes first (nearest to the home node or the local one), then anywhere;
/// * INTERLEAVE / WEIGHTED_INTERLEAVE: the node [`interleave_node`] picks, falling back
///   anywhere.
pub fn placement(policy: Option<&Policy>, index: u64, local: Node) -> Placement {
    let everywhere = NodeMask::from_bits(u64::MAX);
    let anywhere = |preferred| Placement { preferred, allowed: everywhere, then_anywhere: false };
    let Some(p) = policy else { return anywhere(local) };
    match p.mode {
        Mode::Default | Mode::Local => anywhere(local),
        Mode::Preferred => anywhere(p.nodes.first().unwrap_or(local)),
        Mode::Bind => Placement { preferred: p.home_node.unwrap_or(local), allowed: p.nodes, then_anywhere: false },
        Mode::PreferredMany => Placement { preferred: p.home_node.unwrap_or(local), allowed: p.nodes, then_anywhere: true },
        Mode::Interleave => anywhere(interleave_node(p.nodes, index).unwrap_or(local)),
        Mode::WeightedInterleave => anywhere(weighted_interleave_node(p.nodes, index, default_weight).unwrap_or(local)),
    }
}

/// `MPOL_MF_STRICT` and `MPOL_MF_MOVE` look for pages not on the nodes the caller named (the
/// user's mask as given; Linux: `queue_folio_required()` with `MPOL_MF_INVERT`).
pub fn misplaced(node: Node, user_mask: NodeMask) -> bool {
    !user_mask.contains(node)
}

/// The node `get_mempolicy(MPOL_F_NODE)` reports for a thread's interleave policy: the one after
/// the last used (Linux: `next_node_in(current->il_prev, nodes)`; a fresh policy starts with
/// `il_prev = MAX_NUMNODES - 1`, so the first node of the mask).
pub fn next_interleave_node(nodes: NodeMask, previous: Option<Node>) -> Option<Node> {
    let after = previous.map_or(MAX_NODES, |p| p.index() + 1);
    nodes.iter().find(|n| n.index() >= after).or_else(|| nodes.first())
}

/// `migrate_pages(pid, maxnode, old, new)`: which node's pages go where, in Linux's order
/// (`do_migrate_pages()`): each source node of `old` goes to the node at its position in `new`
/// (modulo its size, `node_remap()`); a source that maps to itself, or (when the masks differ in
/// size) that is itself in `new`, stays; among the rest, a source that is not another's
/// destination goes first, so nothing moves twice.
pub fn migration_pairs(old: NodeMask, new: NodeMask) -> impl Iterator<Item = (Node, Node)> {
    let mut todo = old;
    core::iter::from_fn(move || {
        let mut pick = None;
        for s in todo.iter() {
            if old.count() != new.count() && new.contains(s) {
                continue;
            }
            let Some(d) = remap(s, old, new) else { continue };
            if s == d {
                continue;
            }
            pick = Some((s, d));
            if !todo.contains(d) {
                break;
            }
        }
        let (s, d) = pick?;
        todo = NodeMask::from_bits(todo.bits() & !(1 << s.index()));
        Some((s, d))
    })
}

/// Linux's `node_remap()`: the node at `node`'s position in `old`, taken in `new` (modulo its
/// size); `node` itself if it is not in `old`.
fn remap(node: Node, old: NodeMask, new: NodeMask) -> Option<Node> {
    match old.position(node) {
        None => Some(node),
        Some(i) => new.nth(i % new.count().max(1)),
    }
}

#[cfg(test)]
mod tests;
