# pikku — the two commands: `make run` (boot and demonstrate) and `make test` (everything).
# Both install whatever is missing first (scripts/setup.sh: the pinned nightly, QEMU, OVMF, …).
#
#   make run  [BOOT=bios|uefi] [CPU=max|qemu64|…] [SMP=N] [NUMA=N] [KVM=1] [LOG=quiet|info|debug] [QEMU_ARGS="…"]
#             [INIT=path/to/static-elf [ARGS="…"] [FILES="host[:dest] …"]]
#                 SMP=N boots N CPUs (QEMU -smp N; default 1, which keeps one-CPU timings and
#                 the instruction counts `make bench` compares); N > 1 waits for /tmp/pikku-smp.lock
#                 NUMA=N (1, 2 or 4) boots N NUMA nodes of 512/N MiB and one CPU each (-smp N)
#                 ARGS is split as a shell splits words: ARGS='"one arg" two' gives two arguments
#   make test
#   make conformance [ONLY=name-prefix]
#                 the conformance programs on pikku and on Debian's Linux 6.12 (same QEMU);
#                 refreshes tests/golden/ and prints the comparison
#   make selftest Linux's pkey selftests (protection_keys, pkey_sighandler_tests from Debian's
#                 linux-source-6.12, unmodified) on pikku, each run against Linux's figures
#   make fuzz [SEED=n] [CALLS=n] [CPU=…] [VERBOSE=1]
#                 one system-call fuzzer campaign (user/musl/fuzz.c as /init) on the debug kernel;
#                 fails on a panic, a hang (no kernel heartbeat), a failed check or a leak
#   make bench    instruction counts of the pkey hot paths, pikku against Linux, under
#                 QEMU -icount; writes BENCHMARKS.md and docs/bench.svg
#   make trace    where those instructions go: each path single-stepped through QEMU's gdb
#                 server, counted per function, pikku and Linux; writes docs/trace.md
#   make doc      API docs of the kernel and the host crates (target/doc, kernel/target/doc),
#                 warnings denied (a broken intra-doc link fails the build)
#   make lint     clippy on the host crates and on the kernel (its run and test builds),
#                 warnings denied: the house rules the compiler checks (see README)

BOOT ?= bios
CPU ?= max
SMP ?= 1
NUMA ?=
LOG ?= info
KVM ?=
QEMU_ARGS ?=
INIT ?=
ARGS ?=
FILES ?=
ONLY ?=
SEED ?= 1
CALLS ?= 1000000
VERBOSE ?=

CARGO ?= cargo
PIKKU_FLAGS = --boot $(BOOT) --cpu $(CPU) --smp $(SMP) $(if $(strip $(NUMA)),--numa $(NUMA),) --log $(LOG) $(if $(filter 1,$(KVM)),--kvm,) \
              $(if $(strip $(QEMU_ARGS)),--qemu-args "$(QEMU_ARGS)",) \
              $(if $(strip $(INIT)),--init "$(abspath $(INIT))",) \
              $(if $(strip $(FILES)),--files "$(FILES)",) \
              $(if $(strip $(ARGS)),-- $(ARGS),)

.PHONY: all setup run test test-host test-qemu lint conformance selftest fuzz bench trace doc clean

all: run

setup:
	@bash scripts/setup.sh

run: setup
	@$(CARGO) run --quiet -p boot --bin pikku -- run $(PIKKU_FLAGS)

# The compiler's checks first (clippy, docs), then host unit and property tests, then the QEMU
# matrix, whose last line is the total.
test: setup lint doc test-host test-qemu

test-host: setup
	@echo "== host tests (pure logic: pkeys, mempolicy, vma, uapi, firmware, bootproto, boot) =="
	@$(CARGO) test --quiet --workspace --exclude tests
	@echo "== the guided tour's links (docs/tour.md: every file exists, every symbol is defined) =="
	@$(CARGO) test --quiet -p tests --test tour

test-qemu: setup
	@echo "== QEMU tests (boot reports, in-kernel suite on max/bios, qemu64/bios, max/uefi, max/bios -smp 4, harness self-test) =="
	@$(CARGO) test --quiet -p tests --test qemu

conformance: setup
	@$(CARGO) run --quiet -p boot --bin pikku -- conformance $(ONLY)

selftest: setup
	@$(CARGO) run --quiet -p boot --bin pikku -- selftest

fuzz: setup
	@$(CARGO) run --quiet -p boot --bin pikku -- fuzz --seed $(SEED) --calls $(CALLS) --cpu $(CPU) $(if $(filter 1,$(VERBOSE)),--verbose,)

bench: setup
	@$(CARGO) run --quiet -p boot --bin pikku -- bench

trace: setup
	@bash scripts/setup.sh gdb
	@$(CARGO) run --quiet -p boot --bin pikku -- trace

lint: setup
	@echo "== clippy (host crates; kernel run and test builds), warnings denied =="
	@$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings
	@cd kernel && $(CARGO) clippy --quiet -- -D warnings
	@cd kernel && $(CARGO) clippy --quiet --tests -- -D warnings

doc: setup
	@echo "== docs (host crates and kernel), warnings denied =="
	@RUSTDOCFLAGS="-D warnings" $(CARGO) doc --quiet --no-deps --workspace --document-private-items
	@cd kernel && RUSTDOCFLAGS="-D warnings" $(CARGO) doc --quiet --no-deps --document-private-items
	@echo "docs: target/doc/pkeys/index.html, kernel/target/x86_64-unknown-none/doc/kernel/index.html"

clean:
	@$(CARGO) clean
	@cd kernel && $(CARGO) clean
