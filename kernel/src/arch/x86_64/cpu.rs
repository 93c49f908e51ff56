//! What this CPU can do (CPUID), and turning on what pikku uses (CR4).
//!
//! CPUID (Intel SDM Vol. 2A, "CPUID—CPU Identification") answers feature questions; CR4 (Vol. 3A
//! §2.5 "Control Registers", and §4.1.3 "Paging-Mode Modifiers" for WP, SMEP, SMAP and PKE)
//! switches features on. The protection key bits pikku cares about:
//!
//! | bit                       | where                  | meaning                                    |
//! |---------------------------|------------------------|--------------------------------------------|
//! | PKU                       | `CPUID.(7,0):ECX[3]`   | the CPU implements user protection keys    |
//! | OSPKE                     | `CPUID.(7,0):ECX[4]`   | reads 1 once the OS has set CR4.PKE        |
//! | PKS                       | `CPUID.(7,0):ECX[31]`  | supervisor protection keys (`pks`)         |
//! | CR4.PKE                   | CR4 bit 22             | enables PKRU checks and PTE key bits       |
//! | CR4.PKS                   | CR4 bit 24             | supervisor keys: set by `pks`              |
//!
//! [`pkey_support`] is the kernel's one answer to "does this system have protection keys?"
//! (Linux: `cpu_feature_enabled(X86_FEATURE_OSPKE)`, and `arch_max_pkey()` follows from it).

use core::sync::atomic::{AtomicBool, Ordering};
use pkeys::Support;
use spin::Once;
use x86_64::registers::control::{Cr4, Cr4Flags};

/// The features pikku reports or uses, read once at boot.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub vendor: [u8; 12],
    pub brand: [u8; 48],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    /// `CPUID.(7,0):ECX[3]` — user protection keys.
    pub pku: bool,
    /// `CPUID.(7,0):ECX[31]` — supervisor protection keys.
    pub pks: bool,
    /// `CPUID.(7,0):EBX[7]` — supervisor-mode execution prevention.
    pub smep: bool,
    /// `CPUID.(7,0):EBX[20]` — supervisor-mode access prevention.
    pub smap: bool,
    /// `CPUID.1:ECX[26]` — XSAVE and friends.
    pub xsave: bool,
}

static FEATURES: Once<Features> = Once::new();
static PKEY_SUPPORT: Once<Support> = Once::new();
/// Fast copy of "OSPKE is on", read on the RDPKRU/WRPKRU paths.
pub(super) static OSPKE: AtomicBool = AtomicBool::new(false);

/// CPUID with a sub-leaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> core::arch::x86_64::CpuidResult {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU and only reads identification registers.
    unsafe {
        core::arch::x86_64::__cpuid_count(leaf, subleaf)
    }
}

fn bit(reg: u32, n: u32) -> bool {
    reg & (1 << n) != 0
}

fn read_features() -> Features {
    let leaf0 = cpuid(0, 0);
    let mut vendor = [0u8; 12];
    vendor[0..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    vendor[8..12].copy_from_slice(&leaf0.ecx.to_le_bytes());

    let leaf1 = cpuid(1, 0);
    let base_family = (leaf1.eax >> 8) & 0xf;
    let base_model = (leaf1.eax >> 4) & 0xf;
    // SDM Vol. 2A, CPUID leaf 1 EAX: the extended fields count only for families 6 and 15.
    let family = if base_family == 0xf { base_family + ((leaf1.eax >> 20) & 0xff) } else { base_family };
    let model = if base_family == 0x6 || base_family == 0xf {
        base_model | (((leaf1.eax >> 16) & 0xf) << 4)
    } else {
        base_model
    };

    let leaf7 = if leaf0.eax >= 7 { cpuid(7, 0) } else { cpuid(0, 0) };
    let has7 = leaf0.eax >= 7;

    let mut brand = [0u8; 48];
    if cpuid(0x8000_0000, 0).eax >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let r = cpuid(leaf, 0);
            for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
                brand[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
            }
        }
    }

    Features {
        vendor,
        brand,
        family,
        model,
        stepping: leaf1.eax & 0xf,
        pku: has7 && bit(leaf7.ecx, 3),
        pks: has7 && bit(leaf7.ecx, 31),
        smep: has7 && bit(leaf7.ebx, 7),
        smap: has7 && bit(leaf7.ebx, 20),
        xsave: bit(leaf1.ecx, 26),
    }
}

/// The CPU's features (read on first call).
pub fn features() -> &'static Features {
    FEATURES.call_once(read_features)
}

/// Reads `CPUID.(7,0):ECX[4]`, OSPKE: 1 exactly when CR4.PKE is set on a CPU with PKU.
pub fn cpuid_ospke() -> bool {
    cpuid(0, 0).eax >= 7 && bit(cpuid(7, 0).ecx, 4)
}

/// Turns on user protection keys on *this* CPU if the CPU has them; the first call (the boot
/// CPU's) decides, once, what the system answers ([`pkey_support`]), and every later call (each
/// other CPU as it comes up) applies the same: CR4.PKE, then PKRU. Returns the answer.
///
/// Linux: `setup_pku()` (`arch/x86/kernel/cpu/common.c`, run by every CPU in `identify_cpu()`)
/// — set CR4.PKE, trust OSPKE, then `pkru_write_default()`: the hardware leaves PKRU at 0 after
/// reset and after INIT (all keys open), and the CPU starts out with the default a new program
/// gets, 0x55555554. (The kernel's accesses to its own supervisor pages are never checked
/// against PKRU.)
pub fn enable_protection_keys() -> Support {
    if !features().pku {
        return *PKEY_SUPPORT.call_once(|| Support::Absent);
    }
    // SAFETY: the CPU reports PKU, so CR4.PKE (bit 22) is defined. Setting it makes the CPU
    // read PTE bits 59-62 as keys; pikku never stores anything else in those bits.
    unsafe { Cr4::update(|f| f.insert(Cr4Flags::PROTECTION_KEY_USER)) };
    let support = *PKEY_SUPPORT.call_once(|| {
        if cpuid_ospke() {
            OSPKE.store(true, Ordering::Release);
            Support::Enabled
        } else {
            Support::Absent
        }
    });
    if support == Support::Enabled {
        super::pkru::write(pkeys::Pkru::INIT);
    }
    support
}

/// The kernel's one answer to "does this system have protection keys?". `Absent` until
/// [`enable_protection_keys`] has run.
pub fn pkey_support() -> Support {
    PKEY_SUPPORT.get().copied().unwrap_or(Support::Absent)
}

/// Is OSPKE on (so RDPKRU/WRPKRU may execute)?
#[inline]
pub fn ospke() -> bool {
    OSPKE.load(Ordering::Relaxed)
}

/// Is CR4.PKE set right now?
pub fn cr4_pke() -> bool {
    Cr4::read().contains(Cr4Flags::PROTECTION_KEY_USER)
}

/// Sets CR0.WP, so that supervisor writes honour read-only pages and PKRU's WD bits
/// (SDM Vol. 3A §4.6.1 "Determination of Access Rights"; the bit: §2.5 "Control Registers").
/// The bootloader leaves it set; pikku makes sure.
pub fn enable_write_protect() {
    use x86_64::registers::control::{Cr0, Cr0Flags};
    // SAFETY: CR0.WP only makes supervisor writes stricter; the kernel writes its own read-only
    // data nowhere.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// Turns on SMEP and SMAP where the CPU has them (CR4 bits 20 and 21, SDM Vol. 3A §4.1.3
/// "Paging-Mode Modifiers"; their effect: §4.6.1):
/// the kernel then can neither execute user pages (SMEP) nor read or write them outside the
/// STAC/CLAC window of the user-copy functions (SMAP). Returns (smep, smap) as enabled.
pub fn enable_smep_smap() -> (bool, bool) {
    let f = features();
    // SAFETY: the bits are set only when CPUID reports the features; the kernel never executes
    // user pages, and touches user data only in `uaccess`, which brackets it with STAC/CLAC.
    unsafe {
        Cr4::update(|c| {
            if f.smep {
                c.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if f.smap {
                c.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        })
    };
    (f.smep, f.smap)
}

/// Is SMAP on (so user accesses need STAC/CLAC)?
pub fn smap_enabled() -> bool {
    Cr4::read().contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION)
}

/// Lets user code use SSE (every x86-64 program does): CR0.EM = 0, CR0.MP = 1, CR4.OSFXSR = 1,
/// CR4.OSXMMEXCPT = 1 (SDM Vol. 3A §13.1.3 "Initialization of the SSE Extensions"); and CR0.NE = 1,
/// x87 errors as #MF rather than through the legacy FERR# pin (§2.5 "Control Registers"; Linux
/// sets it on every CPU). The kernel itself is built without SSE (`x86_64-unknown-none` is
/// soft-float), so it never disturbs the XMM registers. Every CPU runs this.
pub fn enable_sse() {
    use x86_64::registers::control::{Cr0, Cr0Flags};
    // SAFETY: every x86-64 CPU has SSE; these bits only permit SSE instructions and select
    // native #XM and #MF reporting.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// Writes IA32_FS_BASE (the user's TLS pointer; `arch_prctl(ARCH_SET_FS)`; SDM Vol. 3A §3.4.4
/// "Segment Loading Instructions in IA-32e Mode").
pub fn set_fs_base(base: u64) {
    x86_64::registers::model_specific::FsBase::write(x86_64::VirtAddr::new_truncate(base));
}

/// Reads IA32_FS_BASE.
pub fn fs_base() -> u64 {
    x86_64::registers::model_specific::FsBase::read().as_u64()
}

/// Fills `buf` with random bytes: RDRAND (SDM Vol. 2B "RDRAND—Read Random Number") where the CPU
/// has it (`CPUID.1:ECX[30]`), otherwise a xorshift generator seeded from the TSC — fine for
/// AT_RANDOM and `getrandom` in an emulator, not for cryptography.
pub fn random_bytes(buf: &mut [u8]) {
    use core::sync::atomic::AtomicU64;
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let has_rdrand = bit(cpuid(1, 0).ecx, 30);
    for chunk in buf.chunks_mut(8) {
        let mut value = 0u64;
        let mut ok = 0u8;
        if has_rdrand {
            for _ in 0..10 {
                // SAFETY: the CPU reports RDRAND; it writes a register and CF, nothing else.
                unsafe { core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack)) };
                if ok == 1 {
                    break;
                }
            }
        }
        if ok != 1 {
            let mut x = FALLBACK.load(Ordering::Relaxed) ^ super::time::rdtsc() ^ 0x9e37_79b9_7f4a_7c15;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            FALLBACK.store(x, Ordering::Relaxed);
            value = x;
        }
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
}

/// Text of a zero-padded CPUID string.
pub fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?").trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktest_macros::ktest;

    #[ktest(needs = pku)]
    fn cr4_pke_is_set_and_cpuid_reports_ospke() {
        assert!(features().pku);
        assert!(cr4_pke(), "CR4.PKE (bit 22)");
        assert!(Cr4::read_raw() & (1 << 22) != 0);
        assert!(cpuid_ospke(), "CPUID.(7,0):ECX[4]");
        assert_eq!(pkey_support().max_pkey(), 16, "arch_max_pkey()");
    }

    #[ktest(needs = no_pku)]
    fn without_pku_nothing_is_enabled() {
        assert!(!features().pku);
        assert!(!cr4_pke());
        assert!(!cpuid_ospke());
        assert!(!ospke());
        assert_eq!(pkey_support().max_pkey(), 1, "arch_max_pkey()");
    }

    #[ktest]
    fn cr0_wp_is_set() {
        use x86_64::registers::control::{Cr0, Cr0Flags};
        assert!(Cr0::read().contains(Cr0Flags::WRITE_PROTECT));
    }
}
