//! NUMA memory policy calls: `set_mempolicy` (238), `get_mempolicy` (239), `mbind` (237),
//! `set_mempolicy_home_node` (450), `migrate_pages` (256), `move_pages` (279).
//!
//! Each handler reads its arguments from user memory, runs the checks of the `mempolicy`
//! crate in Linux's order (`mm/mempolicy.c`, `mm/migrate.c`), and then changes the thread's
//! policy, the areas (`vma::VmaMap::set_policy`) or the pages (`mm::policy`). User copies
//! happen with no lock held.
//!
//! Deliberate differences from Linux, each for want of a structure pikku does not have:
//! * node masks keep 64 nodes: bits 64..1023 of a user mask are read and checked as Linux
//!   checks them, then dropped — so a STATIC or RELATIVE policy does not report them back;
//! * no reverse map: a page another process also maps (copy-on-write after `fork`) is not
//!   moved. `MPOL_MF_MOVE` skips it as Linux does; `MPOL_MF_MOVE_ALL`, `migrate_pages` and
//!   `move_pages(MPOL_MF_MOVE_ALL)` count it as a page that could not be moved (Linux would move
//!   it) — the return value Linux gives for pages that could not move;
//! * interleave of the thread's own kernel allocations does not exist (pikku's kernel memory is
//!   not placed by policy), so `get_mempolicy(MPOL_F_NODE)` always reports the first node of an
//!   interleave policy — what Linux reports right after `set_mempolicy`.

use alloc::vec::Vec;
use mempolicy::{GetQuery, Mode, Node, NodeMask, Policy, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL, MPOL_MF_STRICT};
use pkeys::Errno;

use crate::arch::x86_64::pkru;
use crate::mm::{numa, user};
use crate::task;

/// Reads a user node mask (`nmask`, `maxnode`) — Linux `get_nodes()`.
fn read_nodes(nmask: u64, maxnode: u64) -> Result<NodeMask, Errno> {
    mempolicy::get_nodes(nmask == 0, maxnode, |i| {
        let at = (i as u64).checked_mul(8).and_then(|o| nmask.checked_add(o)).ok_or(Errno::EFAULT)?;
        user::read_u64(at)
    })
}

/// The nodes the caller may allocate on (Linux: `cpuset_current_mems_allowed` & `N_MEMORY`;
/// pikku has no cpusets: every node with memory).
fn allowed() -> NodeMask {
    numa::online_nodes()
}

/// May the caller move pages other processes map (`CAP_SYS_NICE`)? Root may.
fn may_move_all() -> bool {
    task::current().process.is_root()
}

/// `set_mempolicy(mode, nmask, maxnode)`: the calling thread's policy. Linux:
/// `kernel_set_mempolicy()` — the mode and flags, then the mask, then `mpol_new()`.
pub fn sys_set_mempolicy(mode: u64, nmask: u64, maxnode: u64) -> Result<u64, Errno> {
    let (mode, flags) = mempolicy::sanitize_mode(mode)?;
    let nodes = read_nodes(nmask, maxnode)?;
    let policy = mempolicy::mpol_new(mode, flags, nodes, allowed())?;
    *task::current().mempolicy.lock() = policy;
    Ok(0)
}

/// `get_mempolicy(policy, nmask, maxnode, addr, flags)` — Linux `kernel_get_mempolicy()` and
/// `do_get_mempolicy()`: the checks of [`mempolicy::get_mempolicy_query`], then the area lookup
/// (`EFAULT`), then `*policy` (`EFAULT`), then the mask ([`write_nodes`]).
pub fn sys_get_mempolicy(policy: u64, nmask: u64, maxnode: u64, addr: u64, flags: u64) -> Result<u64, Errno> {
    let query = mempolicy::get_mempolicy_query(nmask == 0, maxnode, addr, flags, numa::nr_node_ids())?;
    let thread = task::current();
    let (value, nodes) = match query {
        GetQuery::MemsAllowed => (0, allowed()),
        GetQuery::Area { node } => {
            // MPOL_F_NODE may fault the page in: the write lock, as a fault takes it.
            let mut mm = thread.mm.write();
            let area_policy = mm.vmas.find(addr).ok_or(Errno::EFAULT)?.policy;
            let (mode, nodes) = mempolicy::reported(area_policy.as_ref());
            if node {
                (mm.node_of_page_for_read(addr, pkru::read())?.index() as i32, nodes)
            } else {
                (mode, nodes)
            }
        }
        GetQuery::Thread { node } => {
            let own = *thread.mempolicy.lock();
            let (mode, nodes) = mempolicy::reported(own.as_ref());
            if node {
                (next_interleave(own.as_ref())?.index() as i32, nodes)
            } else {
                (mode, nodes)
            }
        }
    };
    if policy != 0 {
        user::copy_to_user(policy, &value.to_le_bytes())?;
    }
    if nmask != 0 {
        write_nodes(nmask, maxnode, nodes)?;
    }
    Ok(0)
}

/// `MPOL_F_NODE` without `MPOL_F_ADDR`: the next node of the thread's interleave (see the
/// module's note); `EINVAL` for any other policy.
fn next_interleave(policy: Option<&Policy>) -> Result<Node, Errno> {
    match policy {
        Some(p) if matches!(p.mode(), Mode::Interleave | Mode::WeightedInterleave) => mempolicy::next_interleave_node(p.nodes(), None).ok_or(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

/// Zeros for the tail of a long user mask (at most a page, [`mempolicy::mask_copy`]).
static ZEROS: [u8; 4096] = [0; 4096];

/// Writes `nodes` to a user mask of `maxnode` bits — Linux `copy_nodes_to_user()`: the tail
/// past the kernel's mask is cleared first, then the mask is copied; each copy stops at the
/// first byte it cannot write (the bytes before it stay written, as `clear_user` and
/// `copy_to_user` leave them) and is then `EFAULT`.
fn write_nodes(nmask: u64, maxnode: u64, nodes: NodeMask) -> Result<(), Errno> {
    let copy = mempolicy::mask_copy(maxnode, numa::nr_node_ids())?;
    let tail = &ZEROS[..copy.clear_to - copy.copy];
    if !tail.is_empty() {
        let at = nmask.checked_add(copy.copy as u64).ok_or(Errno::EFAULT)?;
        if user::copy_to_user_partial(at, tail) < tail.len() {
            return Err(Errno::EFAULT);
        }
    }
    let bytes = nodes.bits().to_le_bytes();
    let head = &bytes[..copy.copy];
    if !head.is_empty() && user::copy_to_user_partial(nmask, head) < head.len() {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// `mbind(start, len, mode, nmask, maxnode, flags)` — Linux `kernel_mbind()` → `do_mbind()`:
/// mode and flags, mask, the range checks ([`mempolicy::mbind_range`]), `mpol_new()`; then,
/// under the address space's write lock: a hole in the range is `EFAULT` before anything
/// changes (the default policy may span holes, but not only holes); with `MPOL_MF_STRICT` alone
/// a page on a node outside the mask is `EIO`, again before anything changes; the areas get the
/// policy (split and merged); with `MPOL_MF_MOVE`/`MOVE_ALL` the misplaced pages move to where
/// the new policy places them; pages that could not move make `MPOL_MF_STRICT` `EIO`.
pub fn sys_mbind(start: u64, len: u64, mode: u64, nmask: u64, maxnode: u64, flags: u64) -> Result<u64, Errno> {
    let (mode, mode_flags) = mempolicy::sanitize_mode(mode)?;
    let nodes = read_nodes(nmask, maxnode)?;
    let Some(range) = mempolicy::mbind_range(start, len, mode, flags, may_move_all())? else { return Ok(0) };
    let policy = mempolicy::mpol_new(mode, mode_flags, nodes, allowed())?;
    let (start, end, flags) = (range.start, range.end, range.flags);
    let thread = task::current();
    let mut mm = thread.mm.write();
    let pieces = mapped_pieces(&mm, start, end);
    if pieces.is_empty() || (policy.is_some() && !mm.vmas.covers(start, end)) {
        return Err(Errno::EFAULT);
    }
    let moving = flags & (MPOL_MF_MOVE | MPOL_MF_MOVE_ALL) != 0;
    let mut queued = Vec::new();
    let mut failed = 0usize;
    if flags & (MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL) != 0 {
        for &(s, e) in &pieces {
            if !mm.migratable(s) {
                continue;
            }
            for page in mm.misplaced(s, e, |n| !mempolicy::misplaced(n, nodes)) {
                if !moving {
                    // Linux: `strictly_unmovable()` stops the walk — nothing is changed.
                    return Err(Errno::EIO);
                }
                match (page.shared, flags & MPOL_MF_MOVE_ALL != 0) {
                    (false, _) => queued.push(page.addr),
                    (true, true) => failed += 1,
                    (true, false) => {} // not this process's page alone: left, and no failure
                }
            }
        }
    }
    // A huge-page area is cut only at 2-MiB boundaries (Linux: `hugetlb_vm_op_split()`).
    crate::mm::hugetlb::check_cuts(&mm, start, end)?;
    crate::syscall::mm::check_split(&mm, start, end)?;
    for &(s, e) in &pieces {
        let _ = mm.vmas.set_policy(s, e, policy);
    }
    for addr in queued {
        let placing = mm.policy_at(addr);
        if mm.move_page(addr, placing.as_ref(), None).is_err() {
            failed += 1;
        }
    }
    if failed > 0 && flags & MPOL_MF_STRICT != 0 {
        return Err(Errno::EIO);
    }
    Ok(0)
}

/// The mapped parts of `[start, end)`, one per area, in address order.
fn mapped_pieces(mm: &crate::mm::address_space::Mm, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cursor = start;
    while let Some(area) = mm.vmas.find_from(cursor).filter(|a| a.start < end) {
        out.push((area.start.max(start), area.end.min(end)));
        cursor = area.end;
    }
    out
}

/// `set_mempolicy_home_node(start, len, home_node, flags)` — Linux's syscall of that name: the
/// checks of [`mempolicy::home_node_range`], then area by area: an area with no policy →
/// `ENOENT`, one whose mode is not BIND or PREFERRED_MANY → `EOPNOTSUPP` (the areas before it
/// keep their new home node); holes are skipped.
pub fn sys_set_mempolicy_home_node(start: u64, len: u64, home_node: u64, flags: u64) -> Result<u64, Errno> {
    let Some((start, end, home)) = mempolicy::home_node_range(start, len, home_node, flags, numa::online_nodes())? else { return Ok(0) };
    let thread = task::current();
    let mut mm = thread.mm.write();
    for (s, e) in mapped_pieces(&mm, start, end) {
        let old = mm.vmas.find(s).and_then(|a| a.policy).ok_or(Errno::ENOENT)?;
        let new = mempolicy::with_home_node(&old, home)?;
        crate::mm::hugetlb::check_cuts(&mm, s, e)?;
        crate::syscall::mm::check_split(&mm, s, e)?;
        let _ = mm.vmas.set_policy(s, e, Some(new));
    }
    Ok(0)
}

/// The address space `pid` names for `migrate_pages`/`move_pages`: 0 is the caller's
/// (Linux: `find_mm_struct()`); an unknown pid is `ESRCH`.
fn target_mm(pid: u64) -> Result<crate::mm::address_space::MmRef, Errno> {
    let pid = pid as u32 as i32;
    if pid == 0 {
        return Ok(task::current().mm.clone());
    }
    if pid < 0 {
        return Err(Errno::ESRCH);
    }
    task::find_thread(pid as u32).map(|t| t.mm.clone()).ok_or(Errno::ESRCH)
}

/// `migrate_pages(pid, maxnode, old_nodes, new_nodes)` — Linux `kernel_migrate_pages()`: both
/// masks, the pid, the new nodes restricted to the allowed ones (none left → `EINVAL`), then
/// [`mempolicy::migration_pairs`] node by node. Returns how many pages could not move.
pub fn sys_migrate_pages(pid: u64, maxnode: u64, old_nodes: u64, new_nodes: u64) -> Result<u64, Errno> {
    let old = read_nodes(old_nodes, maxnode)?;
    let new = read_nodes(new_nodes, maxnode)?;
    let mm = target_mm(pid)?;
    let new = new.intersection(allowed());
    if new.is_empty() {
        return Err(Errno::EINVAL);
    }
    let mut mm = mm.write();
    let mut not_moved = 0u64;
    for (from, to) in mempolicy::migration_pairs(old, new) {
        for (s, e) in mapped_pieces(&mm, 0, vma::TASK_SIZE) {
            if !mm.migratable(s) {
                continue;
            }
            for page in mm.misplaced(s, e, |n| n != from) {
                if page.shared || mm.move_page(page.addr, None, Some(to)).is_err() {
                    not_moved += 1;
                }
            }
        }
    }
    Ok(not_moved)
}

/// `move_pages(pid, count, pages, nodes, status, flags)` — Linux `kernel_move_pages()`: flags
/// (`EINVAL`; `MPOL_MF_MOVE_ALL` needs `CAP_SYS_NICE`, `EPERM`), the pid (`ESRCH`); then without
/// `nodes` each page's node is reported in `status` (`-EFAULT` without an area, `-ENOENT` for a
/// page not in memory — `do_pages_stat()`), and with `nodes` each page is moved there (a node
/// that is not online fails the whole call with `ENODEV`; per page: `-EFAULT`, `-ENOENT`,
/// `-EACCES` for a page another process maps, else the node it is on now — `do_pages_move()`).
pub fn sys_move_pages(pid: u64, count: u64, pages: u64, nodes: u64, status: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !(MPOL_MF_MOVE | MPOL_MF_MOVE_ALL) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MPOL_MF_MOVE_ALL != 0 && !may_move_all() {
        return Err(Errno::EPERM);
    }
    let mm = target_mm(pid)?;
    for i in 0..count {
        let at = |base: u64, size: u64| i.checked_mul(size).and_then(|o| base.checked_add(o)).ok_or(Errno::EFAULT);
        let addr = user::read_u64(at(pages, 8)?)?;
        let target = if nodes == 0 {
            None
        } else {
            let mut b = [0u8; 4];
            user::copy_from_user(&mut b, at(nodes, 4)?)?;
            let n = i32::from_le_bytes(b);
            let node = (0..mempolicy::MAX_NUMNODES as i32).contains(&n).then(|| Node::new(n as usize)).flatten();
            Some(node.filter(|&n| numa::online_nodes().contains(n)).ok_or(Errno::ENODEV)?)
        };
        let result: i32 = {
            let mut mm = mm.write();
            page_status(&mut mm, addr, target, flags & MPOL_MF_MOVE_ALL != 0)
        };
        user::copy_to_user(at(status, 4)?, &result.to_le_bytes())?;
    }
    Ok(0)
}

/// One page of `move_pages`: its node after the move (or now), or `-errno`.
fn page_status(mm: &mut crate::mm::address_space::Mm, addr: u64, target: Option<Node>, move_all: bool) -> i32 {
    let addr = addr & !(vma::PAGE_SIZE - 1);
    if mm.vmas.find(addr).is_none() {
        return -(Errno::EFAULT as i32);
    }
    let Some(frame) = mm.present_frame(addr) else { return -(Errno::ENOENT as i32) };
    if crate::mm::frame::is_zero_frame(frame) {
        // A page only read maps the shared zero frame, which Linux's lookup here refuses
        // (`follow_page()` with `FOLL_DUMP`): -EFAULT, whether asked where or told to move.
        return -(Errno::EFAULT as i32);
    }
    let node = numa::frame_node(frame);
    match target {
        None => node.index() as i32,
        Some(to) if to == node => node.index() as i32,
        Some(_) if crate::mm::frame::references(frame) > 1 && !move_all => -(Errno::EACCES as i32),
        Some(_) if crate::mm::frame::references(frame) > 1 || !mm.migratable(addr) => -(Errno::EBUSY as i32),
        Some(to) => match mm.move_page(addr, None, Some(to)) {
            Ok(now) => now.index() as i32,
            Err(e) => -(e as i32),
        },
    }
}
