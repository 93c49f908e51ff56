//! The map against a page-by-page model: an array saying, for each page of a small window,
//! whether it is mapped and with which protection and key.
use super::*;
use proptest::prelude::*;

const PAGES: u64 = 48;
const BASE: u64 = 0x10_0000;

fn key(n: u32) -> Pkey {
    Pkey::new(n).unwrap()
}

/// [`VmaMap::protect`], the changed pieces collected (the kernel rewrites their page-table
/// entries instead), and the hole.
fn protect(m: &mut VmaMap<u32>, start: u64, end: u64, new: impl FnMut(&Vma<u32>) -> (Prot, Pkey)) -> (Vec<Vma<u32>>, Option<Hole>) {
    let mut changed = Vec::new();
    let hole = m.protect(start, end, new, |v| changed.push(v.clone())).err();
    (changed, hole)
}

fn anon(start: u64, pages: u64, prot: Prot, pkey: u32) -> Vma<u32> {
    Vma { start, end: start + pages * PAGE_SIZE, prot, pkey: key(pkey), backing: Backing::Anonymous, policy: None }
}

#[test]
fn find_is_exact_at_the_edges() {
    let mut m = VmaMap::new();
    assert!(m.insert(anon(BASE, 2, Prot::READ, 0)));
    assert_eq!(m.find(BASE).map(|v| v.start), Some(BASE));
    assert_eq!(m.find(BASE + 2 * PAGE_SIZE - 1).map(|v| v.start), Some(BASE));
    assert_eq!(m.find(BASE + 2 * PAGE_SIZE), None);
    assert_eq!(m.find(BASE - 1), None);
    assert!(!m.insert(anon(BASE + PAGE_SIZE, 2, Prot::READ, 0)), "overlap refused");
}

#[test]
fn covers_sees_every_hole_however_long_the_range() {
    let mut m = VmaMap::new();
    assert!(m.insert(anon(BASE, 2, Prot::READ, 0)));
    assert!(m.insert(anon(BASE + 2 * PAGE_SIZE, 1, Prot::WRITE, 0)));
    assert!(m.insert(anon(BASE + 4 * PAGE_SIZE, 1, Prot::READ, 0)));
    assert!(m.covers(BASE, BASE + 3 * PAGE_SIZE), "two areas, touching");
    assert!(m.covers(BASE + 1, BASE + 2), "inside one");
    assert!(m.covers(BASE, BASE), "empty");
    assert!(!m.covers(BASE, BASE + 5 * PAGE_SIZE), "the hole at page 3");
    assert!(!m.covers(BASE - 1, BASE + PAGE_SIZE), "a hole at the start");
    assert!(!m.covers(BASE, TASK_SIZE), "a hole at the end, 128 TiB away");
}

#[test]
fn a_range_split_in_three_by_key_merges_back_to_one() {
    let mut m = VmaMap::new();
    m.insert(anon(BASE, 3, Prot::READ | Prot::WRITE, 0));
    let mid = BASE + PAGE_SIZE;
    let _ = protect(&mut m, mid, mid + PAGE_SIZE, |v| (v.prot, key(5)));
    assert_eq!(m.len(), 3, "differing only in key is enough to split");
    let _ = protect(&mut m, mid, mid + PAGE_SIZE, |v| (v.prot, key(0)));
    assert_eq!(m.len(), 1);
}

#[test]
fn protecting_with_what_an_area_already_has_changes_nothing() {
    let mut m = VmaMap::new();
    m.insert(anon(BASE, 3, Prot::READ | Prot::WRITE, 2));
    let (changed, _) = protect(&mut m, BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, |v| (v.prot, v.pkey));
    assert!(changed.is_empty(), "nothing to rewrite in the page tables");
    assert_eq!(m.len(), 1, "not split (Linux mprotect_fixup: newflags == oldflags)");
    let (changed, _) = protect(&mut m, BASE, BASE + 3 * PAGE_SIZE, |v| (v.prot, key(3)));
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].start, changed[0].end, changed[0].pkey), (BASE, BASE + 3 * PAGE_SIZE, key(3)), "the area as it is now");
}

#[test]
fn protect_stops_at_a_hole_after_changing_what_came_before() {
    let mut m = VmaMap::new();
    m.insert(anon(BASE, 2, Prot::READ, 0));
    m.insert(anon(BASE + 3 * PAGE_SIZE, 2, Prot::READ, 0));
    let (_, hole) = protect(&mut m, BASE, BASE + 5 * PAGE_SIZE, |_| (Prot::READ | Prot::WRITE, key(0)));
    assert_eq!(hole, Some(Hole { at: BASE + 2 * PAGE_SIZE }));
    assert_eq!(m.find(BASE).unwrap().prot, Prot::READ | Prot::WRITE);
    assert_eq!(m.find(BASE + 3 * PAGE_SIZE).unwrap().prot, Prot::READ, "after the hole: untouched");
    // A hole at the very start changes nothing.
    let (changed, hole) = protect(&mut m, BASE - PAGE_SIZE, BASE + PAGE_SIZE, |_| (Prot::empty(), key(0)));
    assert!(changed.is_empty());
    assert_eq!(hole, Some(Hole { at: BASE - PAGE_SIZE }));
    assert_eq!(m.find(BASE).unwrap().prot, Prot::READ | Prot::WRITE);
}

#[test]
fn file_backing_follows_splits_and_merges_back() {
    let mut m = VmaMap::new();
    m.insert(Vma { start: BASE, end: BASE + 4 * PAGE_SIZE, prot: Prot::READ, pkey: key(0), backing: Backing::File { file: 7u32, offset: 0x2000, file_len: 0x2800 }, policy: None });
    let _ = protect(&mut m, BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, |_| (Prot::READ | Prot::WRITE, key(0)));
    let parts: Vec<_> = m.iter().map(|v| v.backing.clone()).collect();
    assert_eq!(
        parts,
        [
            Backing::File { file: 7, offset: 0x2000, file_len: 0x1000 },
            Backing::File { file: 7, offset: 0x3000, file_len: 0x1000 },
            Backing::File { file: 7, offset: 0x4000, file_len: 0x800 },
        ]
    );
    let _ = protect(&mut m, BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, |_| (Prot::READ, key(0)));
    assert_eq!(m.len(), 1);
    assert_eq!(m.iter().next().unwrap().backing, Backing::File { file: 7, offset: 0x2000, file_len: 0x2800 });
}

#[test]
fn find_free_is_top_down_and_respects_bounds() {
    let mut m: VmaMap<u32> = VmaMap::new();
    let top = BASE + 16 * PAGE_SIZE;
    assert_eq!(m.find_free(PAGE_SIZE, BASE, top), Some(top - PAGE_SIZE));
    m.insert(anon(top - 2 * PAGE_SIZE, 2, Prot::READ, 0));
    assert_eq!(m.find_free(2 * PAGE_SIZE, BASE, top), Some(top - 4 * PAGE_SIZE));
    m.insert(anon(BASE, 14, Prot::READ, 0));
    assert_eq!(m.find_free(PAGE_SIZE, BASE, top), None);
    assert_eq!(m.find_free(0, BASE, top), None);
}

#[derive(Debug, Clone)]
enum Op {
    Map { page: u64, pages: u64, prot: u32, pkey: u32 },
    Unmap { page: u64, pages: u64 },
    Protect { page: u64, pages: u64, prot: u32, pkey: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..PAGES, 1..12u64);
    prop_oneof![
        (range.clone(), 0..8u32, 0..3u32).prop_map(|((page, pages), prot, pkey)| Op::Map { page, pages, prot, pkey }),
        range.clone().prop_map(|(page, pages)| Op::Unmap { page, pages }),
        (range, 0..8u32, 0..3u32).prop_map(|((page, pages), prot, pkey)| Op::Protect { page, pages, prot, pkey }),
    ]
}

type Model = [Option<(u32, u32)>; PAGES as usize];

fn addr(page: u64) -> u64 {
    BASE + page * PAGE_SIZE
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn the_map_agrees_with_a_page_by_page_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut m: VmaMap<u32> = VmaMap::new();
        let mut model: Model = [None; PAGES as usize];
        for op in &ops {
            match *op {
                Op::Map { page, pages, prot, pkey } => {
                    let end = (page + pages).min(PAGES);
                    let free = (page..end).all(|p| model[p as usize].is_none());
                    let ok = m.insert(anon(addr(page), end - page, Prot::from_bits_truncate(prot), pkey));
                    prop_assert_eq!(ok, free);
                    if free {
                        for p in page..end { model[p as usize] = Some((prot, pkey)); }
                    }
                }
                Op::Unmap { page, pages } => {
                    let end = (page + pages).min(PAGES);
                    let removed: u64 = m.remove_range(addr(page), addr(end)).iter().map(|v| v.len() / PAGE_SIZE).sum();
                    let expected = (page..end).filter(|&p| model[p as usize].is_some()).count() as u64;
                    prop_assert_eq!(removed, expected);
                    for p in page..end { model[p as usize] = None; }
                }
                Op::Protect { page, pages, prot, pkey } => {
                    let end = (page + pages).min(PAGES);
                    let (changed, got_hole) = protect(&mut m, addr(page), addr(end), |_| (Prot::from_bits_truncate(prot), key(pkey)));
                    // The model: change pages up to the first hole; report exactly the pages
                    // whose protection or key was different.
                    let hole = (page..end).find(|&p| model[p as usize].is_none());
                    let differing = (page..hole.unwrap_or(end)).filter(|&p| model[p as usize] != Some((prot, pkey))).count() as u64;
                    for p in page..hole.unwrap_or(end) { model[p as usize] = Some((prot, pkey)); }
                    prop_assert_eq!(got_hole.map(|h| h.at), hole.map(addr));
                    prop_assert_eq!(changed.iter().map(|v| v.len() / PAGE_SIZE).sum::<u64>(), differing);
                }
            }
            // Same pages, same attributes.
            for p in 0..PAGES {
                let got = m.find(addr(p)).map(|v| (v.prot.bits(), v.pkey.index() as u32));
                prop_assert_eq!(got, model[p as usize], "page {} after {:?}", p, op);
            }
            // Canonical form: sorted, non-overlapping, no two neighbours that could merge.
            let areas: Vec<_> = m.iter().cloned().collect();
            for w in areas.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
                prop_assert!(!w[0].can_merge(&w[1]), "unmerged neighbours {:?}", w);
            }
        }
    }
}

#[test]
fn huge_page_areas_never_merge_and_a_fork_copy_forgets_their_reservations() {
    let huge = |start: u64, pages: u64, reserved: bool| Vma {
        start,
        end: start + pages * PAGE_SIZE,
        prot: Prot::READ,
        pkey: key(0),
        backing: Backing::<u32>::Hugetlb { reserved },
        policy: None,
    };
    let mut m = VmaMap::new();
    assert!(m.insert(huge(BASE, 2, true)));
    assert!(m.insert(huge(BASE + 2 * PAGE_SIZE, 2, true)));
    assert!(m.insert(anon(BASE + 4 * PAGE_SIZE, 2, Prot::READ, 0)));
    assert_eq!(m.len(), 3, "equal huge-page neighbours stay apart (VM_DONTEXPAND), and apart from anonymous memory");
    // Changed and changed back: still apart; both halves of a split keep the reservation.
    let (changed, _) = protect(&mut m, BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, |_| (Prot::READ | Prot::WRITE, key(0)));
    assert_eq!(changed.len(), 1);
    let (changed, _) = protect(&mut m, BASE, BASE + 2 * PAGE_SIZE, |_| (Prot::READ, key(0)));
    assert_eq!(changed.len(), 1);
    assert_eq!(m.len(), 4);
    assert!(m.iter().take(3).all(|v| v.backing == Backing::Hugetlb { reserved: true }));
    let mut child = m.clone();
    child.forget_hugetlb_reservations();
    assert!(child.iter().take(3).all(|v| v.backing == Backing::Hugetlb { reserved: false }));
    assert_eq!(child.iter().nth(3).map(|v| v.backing.clone()), Some(Backing::Anonymous), "other areas untouched");
    assert!(m.iter().take(3).all(|v| v.backing == Backing::Hugetlb { reserved: true }), "the parent keeps its own");
}

#[test]
fn set_policy_splits_and_merges_like_protect() {
    let all = mempolicy::NodeMask::from_bits(0b11);
    let bind0 = mempolicy::mpol_new(mempolicy::Mode::Bind, mempolicy::ModeFlags::NONE, mempolicy::NodeMask::from_bits(1), all).unwrap();
    let mut m = VmaMap::new();
    assert!(m.insert(anon(BASE, 4, Prot::READ | Prot::WRITE, 0)));
    let done = m.set_policy(BASE + PAGE_SIZE, BASE + 3 * PAGE_SIZE, bind0);
    assert_eq!((done, m.len()), (Ok(()), 3), "the middle two pages split off");
    assert_eq!(m.find(BASE + 2 * PAGE_SIZE).map(|v| (v.start, v.end)), Some((BASE + PAGE_SIZE, BASE + 3 * PAGE_SIZE)));
    assert_eq!(m.find(BASE + PAGE_SIZE).unwrap().policy, bind0);
    assert_eq!(m.find(BASE).unwrap().policy, None);
    let again = m.set_policy(BASE + PAGE_SIZE, BASE + 2 * PAGE_SIZE, bind0);
    assert_eq!(again, Ok(()));
    assert_eq!(m.len(), 3);
    let (left, right) = m.find(BASE + PAGE_SIZE).unwrap().clone().split(BASE + 2 * PAGE_SIZE);
    assert_eq!((left.policy, right.policy), (bind0, bind0), "split keeps the policy");
    let back = m.set_policy(BASE, BASE + 4 * PAGE_SIZE, None);
    assert_eq!((back, m.len()), (Ok(()), 1), "back to the default: one area again");
    let hole = m.set_policy(BASE + 3 * PAGE_SIZE, BASE + 5 * PAGE_SIZE, bind0);
    assert_eq!(hole, Err(Hole { at: BASE + 4 * PAGE_SIZE }));
}

/// A second model, at the level of areas: a sorted `Vec` changed the plain way — cut every
/// area at the range's ends, change what lies inside, then merge every equal pair of
/// neighbours in the whole list. No tree, no cursor, nothing local: it must end where the
/// map's one-walk operations end, with file backings, policies and huge-page areas too.
mod against_a_sorted_vec {
    use super::*;

    #[derive(Default)]
    struct Model(Vec<Vma<u32>>);

    impl Model {
        /// Merges every mergeable pair, left to right, in the whole list.
        fn normalise(&mut self) {
            let mut out: Vec<Vma<u32>> = Vec::new();
            for v in self.0.drain(..) {
                match out.last_mut() {
                    Some(last) if last.can_merge(&v) => last.absorb(v),
                    _ => out.push(v),
                }
            }
            self.0 = out;
        }

        /// Cuts the areas so that boundaries fall on `start` and `end`.
        fn cut(&mut self, start: u64, end: u64) {
            let mut out = Vec::new();
            for mut v in self.0.drain(..) {
                for at in [start, end] {
                    if v.start < at && at < v.end {
                        let (left, right) = v.split(at);
                        out.push(left);
                        v = right;
                    }
                }
                out.push(v);
            }
            self.0 = out;
        }

        fn insert(&mut self, vma: Vma<u32>) -> bool {
            if self.0.iter().any(|v| v.start < vma.end && vma.start < v.end) {
                return false;
            }
            self.0.push(vma);
            self.0.sort_by_key(|v| v.start);
            self.normalise();
            true
        }

        fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma<u32>> {
            self.cut(start, end);
            let (removed, kept) = self.0.drain(..).partition(|v| start <= v.start && v.end <= end);
            self.0 = kept;
            removed
        }

        /// The first unmapped address in `[start, end)`, if any.
        fn hole(&self, start: u64, end: u64) -> Option<u64> {
            let mut at = start;
            for v in self.0.iter().filter(|v| v.end > start) {
                if at >= end || v.start > at {
                    break;
                }
                at = v.end;
            }
            (at < end).then_some(at)
        }

        fn protect(&mut self, start: u64, end: u64, new: impl Fn(&Vma<u32>) -> (Prot, Pkey)) -> (Vec<Vma<u32>>, Option<Hole>) {
            let hole = self.hole(start, end);
            let until = hole.unwrap_or(end);
            // An area that keeps its attributes is not cut.
            let cuts: Vec<u64> = self.0.iter().filter(|v| v.start < until && start < v.end && new(v) != (v.prot, v.pkey)).flat_map(|v| [v.start.max(start), v.end.min(until)]).collect();
            for at in cuts {
                self.cut(at, at);
            }
            let mut changed = Vec::new();
            for v in self.0.iter_mut().filter(|v| start <= v.start && v.end <= until) {
                let (prot, pkey) = new(v);
                if (prot, pkey) != (v.prot, v.pkey) {
                    (v.prot, v.pkey) = (prot, pkey);
                    changed.push(v.clone());
                }
            }
            self.normalise();
            (changed, hole.map(|at| Hole { at }))
        }

        fn set_policy(&mut self, start: u64, end: u64, policy: Option<Policy>) -> Option<Hole> {
            let hole = self.hole(start, end);
            let until = hole.unwrap_or(end);
            let cuts: Vec<u64> = self.0.iter().filter(|v| v.start < until && start < v.end && v.policy != policy).flat_map(|v| [v.start.max(start), v.end.min(until)]).collect();
            for at in cuts {
                self.cut(at, at);
            }
            for v in self.0.iter_mut().filter(|v| start <= v.start && v.end <= until) {
                v.policy = policy;
            }
            self.normalise();
            hole.map(|at| Hole { at })
        }
    }

    const PAGES: u64 = 64;

    #[derive(Debug, Clone)]
    enum Op {
        /// `file`: 0 anonymous, 1–2 that file (its offset follows the address, so neighbours
        /// can continue each other; `short` leaves a zero tail), 3 huge-page memory.
        Map { page: u64, pages: u64, prot: u32, pkey: u32, file: u32, short: bool },
        Unmap { page: u64, pages: u64 },
        /// `pkey` 3: keep each area's own key (as `mprotect`, which passes no key, does).
        Protect { page: u64, pages: u64, prot: u32, pkey: u32 },
        Policy { page: u64, pages: u64, policy: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let range = (0..PAGES, 1..16u64);
        prop_oneof![
            3 => (range.clone(), 0..3u32, 0..3u32, 0..4u32, any::<bool>()).prop_map(|((page, pages), prot, pkey, file, short)| Op::Map { page, pages, prot, pkey, file, short }),
            1 => range.clone().prop_map(|(page, pages)| Op::Unmap { page, pages }),
            3 => (range.clone(), 0..3u32, 0..4u32).prop_map(|((page, pages), prot, pkey)| Op::Protect { page, pages, prot, pkey }),
            1 => (range, 0..3u8).prop_map(|((page, pages), policy)| Op::Policy { page, pages, policy }),
        ]
    }

    fn policy(n: u8) -> Option<Policy> {
        let all = mempolicy::NodeMask::from_bits(0b11);
        let mode = if n == 1 { mempolicy::Mode::Bind } else { mempolicy::Mode::Interleave };
        (n != 0).then(|| mempolicy::mpol_new(mode, mempolicy::ModeFlags::NONE, mempolicy::NodeMask::from_bits(0b11), all).unwrap().unwrap())
    }

    fn area(page: u64, pages: u64, prot: u32, pkey: u32, file: u32, short: bool) -> Vma<u32> {
        let (start, end) = (addr(page), addr((page + pages).min(PAGES)));
        let backing = match file {
            0 => Backing::Anonymous,
            3 => Backing::Hugetlb { reserved: true },
            f => Backing::File { file: f, offset: start - BASE, file_len: if short { end - start - PAGE_SIZE / 2 } else { end - start } },
        };
        Vma { start, end, prot: Prot::from_bits_truncate(prot), pkey: key(pkey), backing, policy: None }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn the_map_ends_where_the_plain_model_ends(ops in proptest::collection::vec(op(), 1..60)) {
            let mut m: VmaMap<u32> = VmaMap::new();
            let mut model = Model::default();
            for op in &ops {
                match *op {
                    Op::Map { page, pages, prot, pkey, file, short } => {
                        let v = area(page, pages, prot, pkey, file, short);
                        prop_assert_eq!(m.insert(v.clone()), model.insert(v));
                    }
                    Op::Unmap { page, pages } => {
                        let (start, end) = (addr(page), addr(page + pages));
                        prop_assert_eq!(m.remove_range(start, end), model.remove_range(start, end));
                    }
                    Op::Protect { page, pages, prot, pkey } => {
                        let (start, end) = (addr(page), addr(page + pages));
                        let new = |v: &Vma<u32>| (Prot::from_bits_truncate(prot), if pkey == 3 { v.pkey } else { key(pkey) });
                        prop_assert_eq!(protect(&mut m, start, end, new), model.protect(start, end, new));
                    }
                    Op::Policy { page, pages, policy: p } => {
                        let (start, end) = (addr(page), addr(page + pages));
                        prop_assert_eq!(m.set_policy(start, end, policy(p)).err(), model.set_policy(start, end, policy(p)));
                    }
                }
                prop_assert_eq!(m.len(), model.0.len());
                prop_assert_eq!(m.iter().cloned().collect::<Vec<_>>(), model.0.clone(), "after {:?}", op);
                // Every query, at every page edge and in the middle of every page.
                for p in 0..=PAGES + 1 {
                    for at in [addr(p), addr(p) + PAGE_SIZE / 2] {
                        let holding = model.0.iter().find(|v| v.contains(at));
                        let from = model.0.iter().find(|v| v.end > at);
                        prop_assert_eq!(m.find(at), holding);
                        prop_assert_eq!(m.find_from(at), from);
                        prop_assert_eq!(m.overlaps(at, at + 3 * PAGE_SIZE), model.0.iter().any(|v| v.start < at + 3 * PAGE_SIZE && at < v.end));
                        prop_assert_eq!(m.covers(at, at + 3 * PAGE_SIZE), model.hole(at, at + 3 * PAGE_SIZE).is_none());
                    }
                }
            }
        }
    }
}
