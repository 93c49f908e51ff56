//! The kernel's locks: `spin` locks whose waiting loop serves TLB-shootdown requests.
//!
//! Every kernel lock is a spin lock taken with interrupts off (see `docs/ARCHITECTURE.md`,
//! "Locks"). A CPU that spins with interrupts off cannot take an IPI, so if the holder of the
//! lock were waiting for that CPU to invalidate its TLB ([`super::shootdown`]), both would wait
//! forever. The `spin` crate lets the waiting loop be chosen (its `RelaxStrategy`); pikku's
//! [`ServeShootdowns`] answers any pending shootdown request on each turn of the loop, then
//! pauses (SDM Vol. 2B "PAUSE—Spin Loop Hint"). Use these types, never `spin::Mutex` or
//! `spin::RwLock` directly.

/// The spin-loop step of every kernel lock: serve this CPU's shootdown mailbox, then PAUSE.
pub struct ServeShootdowns;

impl spin::RelaxStrategy for ServeShootdowns {
    #[inline]
    fn relax() {
        super::shootdown::serve();
        core::hint::spin_loop();
    }
}

/// A spin mutex that serves shootdowns while it waits.
// The one place the `spin` lock types may be named (kernel/clippy.toml forbids them elsewhere).
#[expect(clippy::disallowed_types)]
pub type Mutex<T> = spin::mutex::Mutex<T, ServeShootdowns>;
/// A guard of [`Mutex`].
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T>;
/// A readers-writer spin lock that serves shootdowns while it waits.
#[expect(clippy::disallowed_types)]
pub type RwLock<T> = spin::rwlock::RwLock<T, ServeShootdowns>;
/// A read guard of [`RwLock`].
pub type RwLockReadGuard<'a, T> = spin::rwlock::RwLockReadGuard<'a, T>;
/// A write guard of [`RwLock`].
pub type RwLockWriteGuard<'a, T> = spin::rwlock::RwLockWriteGuard<'a, T, ServeShootdowns>;
