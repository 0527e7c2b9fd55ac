# SPDX-License-Identifier: GPL-2.0
#
# KVM live update: the project's entry points.  Everything large (build
# root, base, object tree, ccache) lives in $(KLU_CACHE), outside the clone.
# See README.md.

SHELL := /bin/bash
T := tooling

.PHONY: help run test test-vmx bench check check-patches series export buildroot buildroot-repin base kernel selftests clean distclean

help:
	@echo "make run        build, boot and show the live-update demo"
	@echo "make test       build, boot and run the whole test suite (TAP)"
	@echo "make test-vmx   the same kernel on an Intel CPU with VMX, emulated by bochs (TAP)"
	@echo "make bench      build, boot and run the benchmarks (ratios, side by side)"
	@echo "make check      checkpatch --strict, rustfmtcheck, CLIPPY=1 build"
	@echo "make check-patches  build each patch, with Rust and without (KLU_PATCHES=first-last)"
	@echo "make export     turn the series branch of make series back into patches/ and the overlay"
	@echo "make series     the series as git format-patch files in series/"
	@echo "make kernel     build only the kernel"
	@echo "make selftests  build only the selftests"
	@echo "make clean      remove the object trees (ccache, base and build root stay)"
	@echo "make distclean  remove everything under \$$KLU_CACHE"

.PHONY: prereqs
prereqs: buildroot base

buildroot:
	@$(T)/buildroot.sh

buildroot-repin:
	@$(T)/buildroot.sh --repin

base: buildroot
	@$(T)/base.sh

kernel: prereqs
	@$(T)/build.sh kernel

selftests: prereqs
	@$(T)/build.sh selftests

test: prereqs
	@$(T)/test.sh

test-vmx: prereqs
	@$(T)/test.sh --vmx

run: prereqs
	@$(T)/run.sh

bench: prereqs
	@$(T)/bench.sh

check: prereqs
	@$(T)/check.sh

check-patches: prereqs
	@$(T)/check-patches.sh

series: base
	@$(T)/series.sh

export:
	@$(T)/export.sh

clean:
	@. $(T)/lib.sh && rm -rf "$$OUT" "$$SELFTESTS_OUT" "$$RESULTS" "$$KLU_CACHE/out-clippy" \
		"$$KLU_CACHE/out-patch-rust" "$$KLU_CACHE/out-patch-norust" "$$KLU_CACHE/src-patch"

distclean:
	@. $(T)/lib.sh && rm -rf "$$KLU_CACHE"
