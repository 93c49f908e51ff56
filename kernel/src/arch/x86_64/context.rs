//! Kernel stacks and the kernel-mode context switch.
//!
//! Every thread has its own kernel stack: syscalls and interrupts from its user mode run there
//! (TSS.RSP0 and `PerCpu::kernel_stack_top` point at its top while it runs). Switching threads
//! is switching kernel stacks: [`switch`] pushes the callee-saved registers (the System V ABI
//! says the caller already saved the rest), stores RSP into the old thread, loads the new
//! thread's RSP, pops its callee-saved registers and returns — into wherever the new thread last
//! called `switch`. A thread that never ran is given a stack that "returns" into
//! `pikku_first_entry`, which leaves to user mode through the ordinary trap-return path.
//!
//! **Guard pages.** Kernel stacks are not heap blocks: each is 16 KiB of frames of its own,
//! mapped at the top of a 32 KiB slot of a kernel region (PML4 slot 449) whose lower 16 KiB
//! stay unmapped. A thread that runs off the bottom of its stack touches the guard; the page
//! fault cannot be delivered on that same stack, so the CPU raises a double fault, which runs
//! on its own IST stack (`gdt`) and reports which thread overflowed ([`guard_owner`]) — instead
//! of silently overwriting whatever lay below, as a heap-allocated stack would.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use super::sync::Mutex;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use super::paging;
use super::trap::TrapFrame;

/// Size of a kernel stack: 16 KiB, Linux's `THREAD_SIZE` on x86-64.
pub const KERNEL_STACK_SIZE: usize = 16 * 1024;
const STACK_PAGES: usize = KERNEL_STACK_SIZE / 4096;
/// Each stack occupies the top of a slot this big; the unmapped rest of the slot, below the
/// stack, is its guard: a push past the bottom faults instead of overwriting a neighbour.
const SLOT_SIZE: u64 = 32 * 1024;
/// Where the kernel stacks live: PML4 slot 449, created at boot ([`init_kernel_stacks`]).
pub const KERNEL_STACKS_START: u64 = 0xffff_e080_0000_0000;
/// How many kernel stacks the region holds — a ceiling above `threads-max` (the task limit in
/// `task::limits`), so the task limit is what a program meets first.
pub const MAX_KERNEL_STACKS: usize = 16 * 1024;

/// Which stack slots are taken (bit set = in use), how many, and how many frames the page
/// tables under the region hold (they stay once made).
struct Slots {
    used: [u64; MAX_KERNEL_STACKS / 64],
    count: usize,
    table_frames: usize,
}

static SLOTS: Mutex<Slots> = Mutex::new(Slots { used: [0; MAX_KERNEL_STACKS / 64], count: 0, table_frames: 0 });
/// The thread each slot belongs to, for the overflow report (read without locks in the
/// double-fault handler).
static OWNERS: [AtomicU32; MAX_KERNEL_STACKS] = [const { AtomicU32::new(0) }; MAX_KERNEL_STACKS];
/// The deepest any freed stack was used, in bytes.
static DEEPEST: AtomicUsize = AtomicUsize::new(0);

/// Where kernel stacks get their frames and give them back (the frame allocator: `arch` knows
/// no allocator of its own, so the kernel hands these in at boot).
#[derive(Clone, Copy)]
pub struct FrameSource {
    pub alloc: fn() -> Option<PhysFrame>,
    pub free: fn(PhysFrame),
}

static FRAMES: spin::Once<FrameSource> = spin::Once::new();

/// Creates the kernel-stack region's PML4 slot with `pdpt` as its PDPT, and records where
/// stacks get their frames. Once, at boot, before any address space is made (see
/// `paging::create_kernel_region_slot`).
pub fn init_kernel_stacks(pdpt: PhysFrame, frames: FrameSource) {
    paging::create_kernel_region_slot(VirtAddr::new(KERNEL_STACKS_START), pdpt);
    FRAMES.call_once(|| frames);
}

fn frame_source() -> FrameSource {
    *FRAMES.get().expect("context::init_kernel_stacks not called")
}

/// One thread's kernel stack: [`KERNEL_STACK_SIZE`] bytes of its own frames, mapped at the top
/// of a slot of the kernel-stack region with an unmapped guard below.
pub struct KernelStack {
    slot: usize,
    /// Pages mapped so far (all of them, once `new` has succeeded).
    mapped: usize,
    /// A CPU's own stack ([`KernelStack::for_cpu`]), not a thread's.
    cpu_owned: bool,
}

impl core::fmt::Debug for KernelStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KernelStack({:#x})", self.top())
    }
}

impl KernelStack {
    /// A zeroed stack for thread `owner`, or `None` when the region is full or frames ran out
    /// (what was taken is given back).
    pub fn new(owner: u32) -> Option<KernelStack> {
        let slot = {
            let mut slots = SLOTS.lock();
            // The lowest free slot: stacks stay packed at the start of the region, so the page
            // tables under it cover only as many stacks as were ever alive at once.
            let word = slots.used.iter().position(|&w| w != u64::MAX)?;
            let slot = word * 64 + slots.used[word].trailing_ones() as usize;
            slots.used[word] |= 1 << (slot % 64);
            slots.count += 1;
            slot
        };
        OWNERS[slot].store(owner, Ordering::Relaxed);
        // From here on, dropping `stack` gives back whatever has been mapped.
        let mut stack = KernelStack { slot, mapped: 0, cpu_owned: false };
        let mut root = paging::kernel_root().lock();
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let frame = frame_source();
        let table_frame = || {
            let f = (frame.alloc)();
            SLOTS.lock().table_frames += usize::from(f.is_some());
            f
        };
        for i in 0..STACK_PAGES {
            let page = Page::containing_address(VirtAddr::new(stack.bottom() + i as u64 * 4096));
            let page_frame = (frame.alloc)()?;
            paging::zero_frame(page_frame);
            if root.map(page, page_frame, flags, table_frame).is_err() {
                (frame.free)(page_frame);
                return None;
            }
            stack.mapped += 1;
        }
        drop(root);
        Some(stack)
    }

    /// A stack that belongs to a CPU rather than a thread — an AP's start-up (and idle) stack
    /// and its IST stacks: guarded like every other, never freed, and not counted among the
    /// threads' stacks in use.
    pub fn for_cpu() -> Option<KernelStack> {
        let mut stack = Self::new(0)?;
        stack.cpu_owned = true;
        CPU_STACKS.fetch_add(1, Ordering::Relaxed);
        Some(stack)
    }

    fn base(&self) -> u64 {
        KERNEL_STACKS_START + self.slot as u64 * SLOT_SIZE
    }

    /// The lowest address of the stack (the guard ends here).
    fn bottom(&self) -> u64 {
        self.top() - KERNEL_STACK_SIZE as u64
    }

    /// The (16-byte aligned) address just above the stack.
    pub fn top(&self) -> u64 {
        self.base() + SLOT_SIZE
    }

    /// Writes `words` (8 bytes each) at `addr` and up, inside this stack.
    fn put(&mut self, addr: u64, words: &[u64]) {
        assert!(addr >= self.bottom() && addr + 8 * words.len() as u64 <= self.top(), "write outside the stack");
        // SAFETY: the range was checked to lie inside this stack, which is mapped writable and
        // owned by `self` (`&mut`); the thread has not run yet, so nothing else uses it.
        unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), addr as *mut u64, words.len()) };
    }

    /// Prepares the stack of a thread that has never run: `user` on top (its first user-mode
    /// registers), below it the return address `pikku_first_entry` and six zero callee-saved
    /// registers — exactly what [`switch`] pops. Returns the RSP to save for the thread.
    pub fn prepare_first_entry(&mut self, user: &TrapFrame) -> u64 {
        let frame_size = core::mem::size_of::<TrapFrame>() as u64;
        let frame_addr = self.top() - frame_size;
        let rsp = frame_addr - 8 * 7;
        // SAFETY: TrapFrame is repr(C), made of u64 fields only (its size is a multiple of 8).
        let frame_words = unsafe { core::slice::from_raw_parts(user as *const TrapFrame as *const u64, frame_size as usize / 8) };
        self.put(frame_addr, frame_words);
        self.put(rsp, &[0, 0, 0, 0, 0, 0, pikku_first_entry as *const () as u64]);
        rsp
    }

    /// How many bytes of the stack have ever been written (it starts zeroed; the lowest
    /// non-zero word marks the deepest use).
    fn used_bytes(&self) -> usize {
        let words = KERNEL_STACK_SIZE / 8;
        let bottom = self.bottom() as *const u64;
        // SAFETY: every word read lies inside this mapped stack; the thread is gone (this runs
        // from `drop`), so nothing writes it concurrently.
        let untouched = (0..words).take_while(|&i| unsafe { bottom.add(i).read_volatile() } == 0).count();
        KERNEL_STACK_SIZE - untouched * 8
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        if self.mapped == STACK_PAGES {
            DEEPEST.fetch_max(self.used_bytes(), Ordering::Relaxed);
        }
        // Unmap every page, make every CPU forget them, and only then free the frames: a CPU
        // that ran this thread may still cache the stack's translations, and a frame freed
        // earlier could be reused while it writes through them.
        let mut root = paging::kernel_root().lock();
        let first = Page::containing_address(VirtAddr::new(self.bottom()));
        let mut frames = [None; STACK_PAGES];
        for (i, slot) in frames.iter_mut().enumerate().take(self.mapped) {
            *slot = root.unmap_leaf(first + i as u64);
        }
        drop(root);
        paging::shoot_kernel_range(self.bottom(), self.bottom() + self.mapped as u64 * 4096);
        for frame in frames.into_iter().flatten() {
            (frame_source().free)(frame);
        }
        // The slot's guard belongs to nobody now (the double-fault report must not name a
        // thread that is gone).
        OWNERS[self.slot].store(0, Ordering::Relaxed);
        let mut slots = SLOTS.lock();
        slots.used[self.slot / 64] &= !(1 << (self.slot % 64));
        slots.count -= 1;
        if self.cpu_owned {
            // (Only on a failed start-up: a CPU that came up keeps its stacks.)
            CPU_STACKS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Kernel stacks of threads in use now (the stacks of the CPUs themselves, [`KernelStack::for_cpu`],
/// are not counted: they live as long as the machine).
pub fn kernel_stacks_in_use() -> usize {
    SLOTS.lock().count.saturating_sub(CPU_STACKS.load(Ordering::Relaxed))
}

/// How many stacks belong to CPUs ([`KernelStack::for_cpu`]).
static CPU_STACKS: AtomicUsize = AtomicUsize::new(0);

/// Frames the kernel-stack region holds while no stack is in use: its page tables.
pub fn kernel_stack_table_frames() -> usize {
    SLOTS.lock().table_frames
}

/// The deepest use of any kernel stack freed so far, in bytes.
pub fn deepest_kernel_stack_use() -> usize {
    DEEPEST.load(Ordering::Relaxed)
}

/// If `addr` lies in the guard below a kernel stack in use, the thread that stack belongs to
/// (the double-fault report names it). Lock-free: it runs in the double-fault handler.
pub fn guard_owner(addr: u64) -> Option<u32> {
    let offset = addr.checked_sub(KERNEL_STACKS_START)?;
    let slot = usize::try_from(offset / SLOT_SIZE).ok().filter(|&s| s < MAX_KERNEL_STACKS)?;
    let in_guard = offset % SLOT_SIZE < SLOT_SIZE - KERNEL_STACK_SIZE as u64;
    // Owner 0: the slot is free (`Drop` clears it), so this is no stack's overflow.
    in_guard.then(|| OWNERS[slot].load(Ordering::Relaxed)).filter(|&owner| owner != 0)
}

core::arch::global_asm!(
    r#"
.global pikku_context_switch
pikku_context_switch:
    // rdi = where to store the old RSP, rsi = the new RSP
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

.global pikku_first_entry
pikku_first_entry:
    // rsp = &TrapFrame of the new thread's first user-mode entry (16-byte aligned, so the
    // call below meets the ABI); the kernel's exit work runs on it (signals, stops, "has the
    // process ended?"), as on every other way back to user mode.
    mov rdi, rsp
    call {first_entry}
    jmp pikku_trap_return
"#,
    first_entry = sym first_entry,
);

static FIRST_ENTRY_HOOK: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

/// Registers what runs just before a new thread first enters user mode, with the register
/// frame it will enter with (the scheduler's kernel exit: signals, stops, "has this process
/// ended?").
pub fn set_first_entry_hook(hook: fn(&mut TrapFrame)) {
    FIRST_ENTRY_HOOK.call_once(|| hook);
}

/// Called by `pikku_first_entry` with RDI = its RSP, which points at the frame
/// [`KernelStack::prepare_first_entry`] wrote: a whole `TrapFrame`, on this thread's own
/// stack, that nothing else references (the trap return pops it right after).
extern "C" fn first_entry(frame: &mut TrapFrame) {
    if let Some(hook) = FIRST_ENTRY_HOOK.get() {
        hook(frame);
    }
}

unsafe extern "C" {
    fn pikku_context_switch(save_rsp: *mut u64, load_rsp: u64);
    fn pikku_first_entry();
}

/// Saves the current kernel context into `*save_rsp` and resumes the one saved as `load_rsp`.
///
/// # Safety
/// `load_rsp` must be an RSP saved by an earlier `switch` (or made by
/// [`KernelStack::prepare_first_entry`]) whose stack is still alive, and nothing may hold a
/// lock that the resumed thread will take. Interrupts must be off. No page-table write window
/// may be open (asserted: a window belongs to the code that opened it, never to the next
/// thread; see `pks`).
pub unsafe fn switch(save_rsp: *mut u64, load_rsp: u64) {
    super::pks::assert_no_window();
    // SAFETY: forwarded to the caller (see above).
    unsafe { pikku_context_switch(save_rsp, load_rsp) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    impl KernelStack {
        /// Prepares the stack so that [`switch`] to the returned RSP calls `f` at its top.
        fn prepare_call(&mut self, f: extern "C" fn() -> !) -> u64 {
            // Six callee-saved registers, `f` as the return address, and a zero where `f`'s own
            // return address would be: `f` starts with RSP ≡ 8 (mod 16), as the ABI wants.
            let rsp = self.top() - 8 * 8;
            self.put(rsp, &[0, 0, 0, 0, 0, 0, f as *const () as u64, 0]);
            rsp
        }
    }

    /// Recurses until the stack runs out (the result is used, so it is no tail call).
    #[allow(unconditional_recursion)]
    fn deeper(depth: u64) -> u64 {
        let frame = core::hint::black_box([depth; 32]);
        deeper(depth + 1).wrapping_add(frame[(depth % 32) as usize])
    }

    extern "C" fn overflow() -> ! {
        let _ = core::hint::black_box(deeper(0));
        unreachable!("the recursion never returns");
    }

    /// A thread that runs off its kernel stack hits the guard below it: a double fault on the
    /// IST stack reports the overflow and names the thread, instead of silent corruption.
    #[ktest(panics = "kernel stack overflow: thread 4242 ran off the bottom of its kernel stack (#DF double fault handler")]
    fn a_kernel_stack_overflow_is_reported_naming_the_thread() {
        let mut stack = KernelStack::new(4242).expect("a kernel stack");
        let rsp = stack.prepare_call(overflow);
        let mut scratch = 0u64;
        // SAFETY: `rsp` was prepared on `stack`, which stays alive (the switch never comes back:
        // `overflow` ends the boot); interrupts are off in the kernel; no lock is held.
        unsafe { switch(&mut scratch, rsp) };
        unreachable!("the overflowing stack never switches back");
    }

    /// Stacks are packed from the lowest free slot, and each one's guard is reported as its.
    #[ktest]
    fn kernel_stacks_are_guarded_and_their_frames_come_back() {
        use crate::mm::frame;
        let free = frame::free_count() + kernel_stack_table_frames();
        let a = KernelStack::new(7).expect("a stack");
        let b = KernelStack::new(8).expect("a stack");
        assert_eq!(b.top() - a.top(), SLOT_SIZE, "adjacent slots");
        assert_eq!(guard_owner(b.bottom() - 8), Some(8), "just below b: b's guard");
        assert_eq!(guard_owner(b.bottom()), None, "b's own lowest word");
        assert_eq!(guard_owner(a.top()), Some(8), "just above a: b's guard starts there");
        drop((a, b));
        assert_eq!(frame::free_count() + kernel_stack_table_frames(), free, "every frame back");
    }
}
