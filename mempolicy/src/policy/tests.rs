//! The policy rules against Linux's documented and measured behaviour, and property tests
//! against small models written another way (sets and 128-bit arithmetic).

use super::*;
use proptest::prelude::*;

fn mask(nodes: &[usize]) -> NodeMask {
    let mut m = NodeMask::EMPTY;
    for &n in nodes {
        m.insert(Node::new(n).unwrap());
    }
    m
}

fn node(n: usize) -> Node {
    Node::new(n).unwrap()
}

#[test]
fn sanitize_mode_checks_as_linux() {
    assert_eq!(sanitize_mode(2), Ok((Mode::Bind, ModeFlags::NONE)));
    assert_eq!(sanitize_mode(7), Err(Errno::EINVAL));
    assert_eq!(sanitize_mode(u64::MAX), Err(Errno::EINVAL));
    assert_eq!(sanitize_mode(0x1_0000_0002), Ok((Mode::Bind, ModeFlags::NONE)), "the mode is a C int");
    assert_eq!(sanitize_mode(0x1_0002), Err(Errno::EINVAL), "bit 16 is no flag");
    assert_eq!(sanitize_mode(2 | 1 << 15 | 1 << 14), Err(Errno::EINVAL));
    assert_eq!(sanitize_mode(2 | 1 << 13), Ok((Mode::Bind, ModeFlags::NUMA_BALANCING)));
    assert_eq!(sanitize_mode(5 | 1 << 13), Ok((Mode::PreferredMany, ModeFlags::NUMA_BALANCING)));
    assert_eq!(sanitize_mode(3 | 1 << 13), Err(Errno::EINVAL));
    assert_eq!(sanitize_mode(1 | 1 << 13), Err(Errno::EINVAL));
}

#[test]
fn mpol_new_follows_the_mode_rules() {
    let all = mask(&[0, 1]);
    assert_eq!(mpol_new(Mode::Default, ModeFlags::NONE, NodeMask::EMPTY, all), Ok(None));
    assert_eq!(mpol_new(Mode::Default, ModeFlags::NONE, mask(&[0]), all), Err(Errno::EINVAL));
    let local = mpol_new(Mode::Preferred, ModeFlags::NONE, NodeMask::EMPTY, all).unwrap().unwrap();
    assert_eq!(local.mode(), Mode::Local, "PREFERRED without nodes is LOCAL");
    assert_eq!(mpol_new(Mode::Preferred, ModeFlags::STATIC_NODES, NodeMask::EMPTY, all), Err(Errno::EINVAL));
    assert_eq!(mpol_new(Mode::Local, ModeFlags::NONE, mask(&[0]), all), Err(Errno::EINVAL));
    assert_eq!(mpol_new(Mode::Local, ModeFlags::RELATIVE_NODES, NodeMask::EMPTY, all), Err(Errno::EINVAL));
    assert_eq!(mpol_new(Mode::Bind, ModeFlags::NONE, NodeMask::EMPTY, all), Err(Errno::EINVAL));
    assert_eq!(mpol_new(Mode::Bind, ModeFlags::NONE, mask(&[5]), all), Err(Errno::EINVAL), "no allowed node left");
    let p = mpol_new(Mode::Preferred, ModeFlags::NONE, mask(&[1, 0]), all).unwrap().unwrap();
    assert_eq!(p.nodes(), mask(&[0]), "PREFERRED keeps the first node");
    let s = mpol_new(Mode::Bind, ModeFlags::STATIC_NODES, mask(&[0, 5]), all).unwrap().unwrap();
    assert_eq!((s.nodes(), reported(Some(&s))), (mask(&[0]), (2 | 1 << 15, mask(&[0, 5]))));
    let r = mpol_new(Mode::Bind, ModeFlags::RELATIVE_NODES, mask(&[5]), all).unwrap().unwrap();
    assert_eq!(r.nodes(), mask(&[1]), "5 % 2 = 1: the second allowed node");
    assert_eq!(reported(Some(&local)), (4, NodeMask::EMPTY));
    assert_eq!(reported(None), (0, NodeMask::EMPTY));
}

#[test]
fn get_nodes_reads_as_linux() {
    let words = |w: &'static [u64]| move |i: usize| Ok(w.get(i).copied().unwrap_or(0));
    assert_eq!(get_nodes(false, 0, words(&[1])), Err(Errno::EINVAL), "maxnode 0 - 1 wraps to ULONG_MAX");
    assert_eq!(get_nodes(true, 0, words(&[1])), Ok(NodeMask::EMPTY), "but a NULL mask is empty");
    assert_eq!(get_nodes(false, 1, words(&[1])), Ok(NodeMask::EMPTY), "maxnode is decremented first");
    assert_eq!(get_nodes(false, 2, words(&[3])), Ok(mask(&[0])), "one bit: node 0 only");
    assert_eq!(get_nodes(true, 64, words(&[3])), Ok(NodeMask::EMPTY));
    assert_eq!(get_nodes(false, 32769, words(&[1])), Ok(mask(&[0])));
    assert_eq!(get_nodes(false, 32770, words(&[1])), Err(Errno::EINVAL));
    assert_eq!(get_nodes(false, u64::MAX, words(&[1])), Err(Errno::EINVAL));
    assert_eq!(get_nodes(false, 1, |_| Err(Errno::EFAULT)), Ok(NodeMask::EMPTY), "nothing read");
    assert_eq!(get_nodes(false, 64, |_| Err(Errno::EFAULT)), Err(Errno::EFAULT));
    let mut big = [0u64; 18];
    big[0] = 1;
    big[16] = 1; // bit 1024
    assert_eq!(get_nodes(false, 1025, |i| Ok(big[i])), Ok(mask(&[0])), "bit 1024 is past maxnode - 1");
    assert_eq!(get_nodes(false, 1026, |i| Ok(big[i])), Err(Errno::EINVAL));
}

#[test]
fn mask_copy_has_linuxs_sizes() {
    // One node (nr_node_ids 1): the kernel's mask is one word.
    assert_eq!(mask_copy(1, 1), Ok(MaskCopy { copy: 0, clear_to: 0 }), "maxnode 1 copies nothing");
    assert_eq!(mask_copy(2, 1), Ok(MaskCopy { copy: 8, clear_to: 8 }));
    assert_eq!(mask_copy(65, 1), Ok(MaskCopy { copy: 8, clear_to: 8 }));
    assert_eq!(mask_copy(66, 1), Ok(MaskCopy { copy: 8, clear_to: 16 }));
    assert_eq!(mask_copy(32769, 4), Ok(MaskCopy { copy: 8, clear_to: 4096 }));
    assert_eq!(mask_copy(32770, 4), Err(Errno::EINVAL));
    assert_eq!(mask_copy(u64::MAX, 1), Ok(MaskCopy { copy: 0, clear_to: 0 }), "ALIGN wraps to 0");
    assert_eq!(mask_copy(u64::MAX - 63, 1), Err(Errno::EINVAL));
}

#[test]
fn get_mempolicy_checks_in_linuxs_order() {
    use GetQuery::*;
    assert_eq!(get_mempolicy_query(false, 0, 0, 8, 1), Err(Errno::EINVAL));
    assert_eq!(get_mempolicy_query(true, 0, 0, 0, 1), Ok(Thread { node: false }), "no mask, no maxnode check");
    assert_eq!(get_mempolicy_query(false, 1, 0x1234, MPOL_F_MEMS_ALLOWED, 1), Ok(MemsAllowed));
    assert_eq!(get_mempolicy_query(false, 1, 0, MPOL_F_MEMS_ALLOWED | MPOL_F_NODE, 1), Err(Errno::EINVAL));
    assert_eq!(get_mempolicy_query(false, 1, 5, MPOL_F_NODE | MPOL_F_ADDR, 1), Ok(Area { node: true }));
    assert_eq!(get_mempolicy_query(false, 1, 5, 0, 1), Err(Errno::EINVAL));
    assert_eq!(get_mempolicy_query(false, 1, 5, 0, 2), Err(Errno::EINVAL));
}

#[test]
fn mbind_and_home_node_ranges() {
    assert_eq!(mbind_range(0x1000, 1, Mode::Bind, 0, true), Ok(Some(MbindRange { start: 0x1000, end: 0x2000, flags: 0 })));
    assert_eq!(mbind_range(0x1000, 0, Mode::Bind, 8, true), Err(Errno::EINVAL), "flags before the length");
    assert_eq!(mbind_range(0x1000, 0x1000, Mode::Bind, MPOL_MF_MOVE_ALL, false), Err(Errno::EPERM));
    assert_eq!(mbind_range(0x1001, 0, Mode::Bind, 0, true), Err(Errno::EINVAL));
    assert_eq!(mbind_range(0x1000, 0, Mode::Bind, 0, true), Ok(None));
    assert_eq!(mbind_range(0x1000, 0u64.wrapping_sub(4095), Mode::Bind, 0, true), Ok(None), "PAGE_ALIGN wraps to 0");
    assert_eq!(mbind_range(0x1000, 0u64.wrapping_sub(4096), Mode::Bind, 0, true), Err(Errno::EINVAL));
    assert_eq!(mbind_range(0x1000, 1, Mode::Default, MPOL_MF_STRICT, true).unwrap().unwrap().flags, 0);
    let online = mask(&[0, 1]);
    assert_eq!(home_node_range(0x1000, 0, 2, 0, online), Err(Errno::EINVAL));
    assert_eq!(home_node_range(0x1000, 0, 1, 1, online), Err(Errno::EINVAL));
    assert_eq!(home_node_range(0x1000, 0, 1, 0, online), Ok(None));
    assert_eq!(home_node_range(0x1000, 0x1000, 1, 0, online), Ok(Some((0x1000, 0x2000, node(1)))));
}

#[test]
fn placement_by_mode() {
    let all = mask(&[0, 1, 2, 3]);
    let pol = |m, nodes| mpol_new(m, ModeFlags::NONE, nodes, all).unwrap();
    assert_eq!(placement(None, 7, node(2)).preferred, node(2));
    let bind = pol(Mode::Bind, mask(&[1, 3])).unwrap();
    assert_eq!(placement(Some(&bind), 0, node(2)), Placement { preferred: node(2), allowed: mask(&[1, 3]), then_anywhere: false });
    let homed = with_home_node(&bind, node(3)).unwrap();
    assert_eq!(placement(Some(&homed), 0, node(0)).preferred, node(3));
    let il = pol(Mode::Interleave, mask(&[1, 3])).unwrap();
    assert_eq!(placement(Some(&il), 4, node(0)).preferred, node(1));
    assert_eq!(placement(Some(&il), 5, node(0)).preferred, node(3));
    assert_eq!(with_home_node(&il, node(1)), Err(Errno::EOPNOTSUPP));
    assert!(placement(Some(&pol(Mode::PreferredMany, mask(&[1])).unwrap()), 0, node(0)).then_anywhere);
}

#[test]
fn next_interleave_node_wraps() {
    let m = mask(&[1, 3]);
    assert_eq!(next_interleave_node(m, None), Some(node(1)));
    assert_eq!(next_interleave_node(m, Some(node(1))), Some(node(3)));
    assert_eq!(next_interleave_node(m, Some(node(3))), Some(node(1)));
}

#[test]
fn migration_pairs_as_do_migrate_pages() {
    let pairs = |o: &[usize], n: &[usize]| migration_pairs(mask(o), mask(n)).map(|(s, d)| (s.index(), d.index())).collect::<Vec<_>>();
    assert_eq!(pairs(&[1], &[0]), vec![(1, 0)]);
    assert_eq!(pairs(&[0], &[0]), vec![]);
    assert_eq!(pairs(&[0, 1], &[1, 2]), vec![(1, 2), (0, 1)], "1 leaves before 0 arrives");
    assert_eq!(pairs(&[0, 1], &[1]), vec![(0, 1)], "node 1 is already a destination");
}

proptest! {
    /// The copy size against a model in 128-bit arithmetic (no wrapping): ALIGN(maxnode - 1,
    /// 64) / 8 taken modulo 2^64, as C computes it.
    #[test]
    fn mask_copy_matches_a_wide_model(maxnode in prop_oneof![any::<u64>(), 0u64..40000, (u64::MAX - 200)..=u64::MAX], nr in 1usize..=64) {
        let m1 = (maxnode as u128 + (1u128 << 64) - 1) % (1u128 << 64);
        let aligned = (m1.div_ceil(64) * 64) % (1u128 << 64);
        let copy = aligned / 8;
        let nbytes = 8u128;
        let expected = if copy > nbytes {
            if copy > 4096 { Err(Errno::EINVAL) } else { Ok(MaskCopy { copy: 8, clear_to: copy as usize }) }
        } else {
            Ok(MaskCopy { copy: copy as usize, clear_to: copy as usize })
        };
        prop_assert_eq!(mask_copy(maxnode, nr), expected);
    }

    /// get_nodes against a model over the user's bits: EINVAL when maxnode - 1 > 32768 or a bit
    /// is set in a whole word from bit 1024 up to the word holding bit maxnode - 2; otherwise the
    /// bits below min(maxnode - 1, 64).
    #[test]
    fn get_nodes_matches_a_bit_model(maxnode in 0u64..34000, set in proptest::collection::vec(0u64..34000, 0..6)) {
        let mut words = vec![0u64; 34000 / 64 + 1];
        for &b in &set { words[(b / 64) as usize] |= 1 << (b % 64); }
        let m = maxnode.saturating_sub(1);
        let expected = if maxnode == 0 {
            Err(Errno::EINVAL)
        } else if maxnode == 1 {
            Ok(NodeMask::EMPTY)
        } else if m > 32768 || (m > 1024 && set.iter().any(|&b| b >= 1024 && b / 64 <= (m - 1) / 64)) {
            Err(Errno::EINVAL)
        } else {
            let mut bits = 0u64;
            for &b in &set { if b < m.min(64) { bits |= 1 << b; } }
            Ok(NodeMask::from_bits(bits))
        };
        prop_assert_eq!(get_nodes(false, maxnode, |i| Ok(words[i])), expected);
    }

    /// Interleave picks the (index % count)-th node of the mask, lowest first; weighted
    /// interleave with all weights 1 is the same; with weights, each node gets its weight's share
    /// of every cycle.
    #[test]
    fn interleave_matches_a_list_model(bits in 1u64..=u64::MAX, index in any::<u64>(), weights in proptest::collection::vec(1u8..4, 64)) {
        let m = NodeMask::from_bits(bits);
        let list: Vec<Node> = (0..64).filter(|&i| bits & (1 << i) != 0).map(node).collect();
        let expected = list[(index % list.len() as u64) as usize];
        prop_assert_eq!(interleave_node(m, index), Some(expected));
        prop_assert_eq!(weighted_interleave_node(m, index, default_weight), Some(expected));
        let cycle: Vec<Node> = list.iter().flat_map(|&n| core::iter::repeat_n(n, weights[n.index()] as usize)).collect();
        prop_assert_eq!(weighted_interleave_node(m, index, |n| weights[n.index()]), Some(cycle[(index % cycle.len() as u64) as usize]));
    }

    /// RELATIVE folding against a set model: every user bit n lands on the (n % k)-th allowed
    /// node; the result is always within the allowed nodes.
    #[test]
    fn relative_nodes_fold_onto_the_allowed(user in any::<u64>(), allowed in any::<u64>()) {
        let a: Vec<usize> = (0..64).filter(|&i| allowed & (1 << i) != 0).collect();
        let mut expected = 0u64;
        if !a.is_empty() {
            for n in (0..64).filter(|&i| user & (1u64 << i) != 0) { expected |= 1 << a[n % a.len()]; }
        }
        let got = relative_nodes(NodeMask::from_bits(user), NodeMask::from_bits(allowed));
        prop_assert_eq!(got.bits(), expected);
        prop_assert!(got.is_subset(NodeMask::from_bits(allowed)));
    }

    /// A policy made by mpol_new never names a node outside the allowed ones, and never has an
    /// empty node set unless it is LOCAL.
    #[test]
    fn policies_stay_within_the_allowed_nodes(raw in 0u64..=0xffff, user in any::<u64>(), allowed in 1u64..=0xf) {
        if let Ok((mode, flags)) = sanitize_mode(raw) {
            if let Ok(Some(p)) = mpol_new(mode, flags, NodeMask::from_bits(user), NodeMask::from_bits(allowed)) {
                prop_assert!(p.nodes().is_subset(NodeMask::from_bits(allowed)));
                prop_assert_eq!(p.nodes().is_empty(), p.mode() == Mode::Local);
                let pl = placement(Some(&p), user, Node::ZERO);
                if p.mode() != Mode::Bind && p.mode() != Mode::PreferredMany {
                    prop_assert!(p.mode() == Mode::Local || p.nodes().contains(pl.preferred));
                }
            }
        }
    }
}
