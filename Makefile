# SPDX-License-Identifier: GPL-2.0-only
#
# Balloon drivers with hibernation support: out-of-tree build and tests.
#
#   make                 build the modules for KDIR
#   make install         install them into /lib/modules/<ver>/updates/
#   make check           every test (installs its Debian packages)
#   make check-fresh     make check in a new Debian 12 root (debootstrap)
#   make deb             balloon-s4-dkms_<version>_all.deb, lintian-checked
#   make demo            build, boot a guest, balloon, hibernate, resume
#                        (GUEST=debian: a Debian 12 guest with systemd)
#   make torture         the driver on a KASAN/lockdep/kmemleak guest kernel:
#                        hibernate cycles, OOM, fault injection, a target
#                        storm, reload (SEED=, CYCLES=, PHASES=, LANES=,
#                        QUICK=1: one reload, the faulted thaw at 100%)
#   make bench           this virtio_balloon against the in-tree one
#                        (CELLS=1024:90,4096:80: only those cells;
#                        SERIES=6.12,sid: those guest kernels;
#                        APPEND=init_on_alloc=0: guest kernel parameters)
#   make kunit           the KUnit suites in the patched 6.1, 6.12, sid trees
#   make mutants         put each bug of tools/testing/balloon-s4/mutants/ in
#                        alone and check that its test catches it (MUTANTS=
#                        names to run only those)
#   make series          the patch series for 6.1, 6.12 and sid's newest
#                        kernel (under BS4_CACHE)
#   make sid-kernel      fetch the newest kernel in Debian sid and prepare a
#                        build tree for it; then make KDIR=<the kdir shown>
#   make W=1             extra compiler warnings
#
# KDIR defaults to the running kernel's build tree and otherwise to the
# newest installed Debian kernel headers.

KDIR ?= $(firstword $(wildcard /lib/modules/$(shell uname -r)/build) \
	$(lastword $(sort $(wildcard /usr/src/linux-headers-*-amd64))))

# The release the modules are for. Not `make kernelrelease`: Debian's 6.1
# header trees answer with the upstream version there.
KVER = $(shell sed -n 's/.*UTS_RELEASE "\(.*\)"/\1/p' \
	$(KDIR)/include/generated/utsrelease.h)

# Where the harness keeps guest images, per-kernel builds and results.
BUILD_DIR ?= $(CURDIR)/build
TESTDIR := tools/testing/balloon-s4

.PHONY: all modules install clean check demo bench torture kunit series deps \
	kdir-check check-fresh deb sid-kernel mutants

all: modules

kdir-check:
	@test -n "$(KDIR)" -a -d "$(KDIR)" || { \
		echo "No kernel build tree: install linux-headers-amd64 or set KDIR=" >&2; \
		exit 1; }

modules: kdir-check
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

# updates/ takes precedence over the in-tree module in depmod's search order.
# Distribution header trees ask for signing but ship no key: skip it then.
NOSIGN = $(if $(wildcard $(KDIR)/certs/signing_key.pem),,CONFIG_MODULE_SIG_ALL=)

install: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=updates $(NOSIGN) \
		modules_install
	depmod -a $(KVER)

clean:
	-$(MAKE) -C $(KDIR) M=$(CURDIR) clean 2>/dev/null
	rm -rf $(BUILD_DIR)

deps:
	$(TESTDIR)/deps.sh

check: deps
	python3 $(TESTDIR)/run.py check --build-dir $(BUILD_DIR)

# GUEST=debian: a Debian 12 guest with systemd and the .deb (distro.py).
GUEST ?= busybox
demo: deps
	python3 $(TESTDIR)/run.py demo --guest $(GUEST) --build-dir $(BUILD_DIR)

bench: deps
	python3 $(TESTDIR)/run.py bench --build-dir $(BUILD_DIR) \
		$(if $(CELLS),--cells $(CELLS)) \
		$(if $(SERIES),--series $(SERIES)) \
		$(if $(APPEND),--append "$(APPEND)")

# Not part of check (make check runs a short one): the debug kernel, 50
# hibernate cycles, OOM, fault injection, a target storm, module reload.
# SEED= repeats a run, CYCLES= and PHASES=faults,oom,storm,reload,cycles
# make it shorter.
torture: deps
	python3 $(TESTDIR)/run.py torture --build-dir $(BUILD_DIR) \
		$(if $(SEED),--seed $(SEED)) \
		$(if $(CYCLES),--cycles $(CYCLES)) \
		$(if $(PHASES),--phases $(PHASES)) \
		$(if $(LANES),--lanes $(LANES)) \
		$(if $(filter 1,$(QUICK)),--quick)

kunit: deps
	python3 $(TESTDIR)/run.py check --only kunit --build-dir $(BUILD_DIR)

# Not part of check (make check runs one mutant): 40-50 minutes in all.
mutants: deps
	python3 $(TESTDIR)/mutants.py --build-dir $(BUILD_DIR) \
		$(if $(MUTANTS),--only $(MUTANTS))

series: deps
	for t in 6.1 6.12 sid; do python3 tools/series/series.py generate $$t || exit 1; done

sid-kernel:
	python3 $(TESTDIR)/fetch_sid.py

# Not part of check: a cold make check on a new machine takes 35+ minutes.
check-fresh: deps
	$(TESTDIR)/fresh.sh

deb: deps
	python3 $(TESTDIR)/deb.py $(BUILD_DIR)/deb
