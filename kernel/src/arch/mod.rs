//! The architecture layer: the only place in pikku that touches hardware.
//!
//! Everything above it (mm, task, syscall, ktest) calls safe functions from here; every
//! `unsafe` block of the kernel lives in this directory (plus the allocator hook) and carries a
//! `// SAFETY:` comment. pikku has one architecture, x86-64.
pub mod x86_64;
