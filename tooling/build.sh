#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the patched kernel: assemble the tree, make the config (tinyconfig
# plus tooling/config/kvm-live-update.config, regenerated only when either
# changes), then an incremental LLVM=1 build through ccache in a persistent
# object tree outside the clone.
#
# usage: build.sh [kernel|selftests|base_kernel|all] [extra make args...]
# (and patch_kernel, for tooling/check-patches.sh)

. "$(dirname "$0")/lib.sh"

FRAGMENT=$TOOLING/config/kvm-live-update.config

# Show warnings, errors and a running count of compiled objects instead of
# the full make output.
progress() {
	awk '
		/^  [A-Z0-9_]+ +/ { n++; if (n % 250 == 0) { printf "    ... %d build steps\n", n; fflush() } next }
		/^make\[|^make: (Entering|Leaving)/ { next }
		{ print; fflush() }
		END { printf "    %d build steps\n", n }' >&2
}

kmake() {
	in_root make -C "$C_SRC" O="$C_OUT" LLVM=1 -j"$JOBS" "$@"
}

config() {
	local hash base=${1:-} extra=
	# KLU_CONFIG_EXTRA: a second fragment of tooling/config/, merged after.
	[ -n "${KLU_CONFIG_EXTRA:-}" ] && extra=$C_TOP/tooling/config/$KLU_CONFIG_EXTRA
	hash=$({ cat "$FRAGMENT"; [ -z "$extra" ] || cat "$TOOLING/config/$KLU_CONFIG_EXTRA"
		echo "$BASE_VERSION"; } | sha256sum | cut -d' ' -f1)
	if [ -f "$OUT/.config" ] && [ "$(cat "$OUT/.klu-config" 2>/dev/null)" = "$hash" ]; then
		return 0
	fi
	log "configuring: tinyconfig + $(basename "$FRAGMENT")${extra:+ + $KLU_CONFIG_EXTRA}"
	kmake -s tinyconfig >/dev/null
	in_root /bin/sh -c "cd $C_OUT && KCONFIG_CONFIG=.config $C_SRC/scripts/kconfig/merge_config.sh -m -O $C_OUT .config $C_TOP/tooling/config/$(basename "$FRAGMENT") $extra" >/dev/null
	kmake -s olddefconfig >/dev/null
	local bad=0 line sym val got
	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		sym=${line%%=*}
		val=${line#*=}
		got=$(grep -E "^$sym=|^# $sym is not set" "$OUT/.config" || true)
		if [ "$val" = n ]; then
			[ -z "$got" ] || [ "$got" = "# $sym is not set" ] && continue
		else
			[ "$got" = "$sym=$val" ] && continue
		fi
		echo "config: $line requested, but the result has '${got:-nothing}'" >&2
		bad=1
	done <"$FRAGMENT"
	# The base lacks the series' own options: those may not apply there.
	[ $bad = 0 ] || [ "$base" = base ] || die "the config fragment did not apply (unmet dependencies?)"
	echo "$hash" >"$OUT/.klu-config"
}

# The build root must hold one coherent Rust toolchain: rustc's own `core`
# must be the rust-src the kernel compiles (else the Rust build fails deep in
# `core`, after minutes).  Checked in seconds before every build, so a warm
# root that drifted is caught too; `make rustavailable` runs again whenever
# an installed version changed.
toolchain_check() {
	local q v_rustc v_src stamp=$OUT/.klu-toolchain
	q=$(in_root dpkg-query -W -f='${Package}=${Version}\n' \
		rustc rust-src rustfmt rust-clippy libstd-rust-dev bindgen clang lld llvm libclang-dev 2>&1) ||
		die "the build root lacks toolchain packages ($q); run: make buildroot"
	v_rustc=$(echo "$q" | sed -n 's/^rustc=//p')
	v_src=$(echo "$q" | sed -n 's/^rust-src=//p')
	[ "$v_rustc" = "$v_src" ] && [ "$(echo "$q" | grep -E '^(rustc|rust-src|rustfmt|rust-clippy|libstd-rust-dev)=' | cut -d= -f2 | sort -u | wc -l)" = 1 ] ||
		die "the build root's Rust toolchain is mixed: $(echo $q | tr ' ' '\n' | grep -E '^(rust|libstd)' | tr '\n' ' ')
The kernel's Rust build needs rustc, rust-src, rustfmt, rust-clippy and libstd-rust-dev at one version. Run: make buildroot"
	if [ "$(cat "$stamp" 2>/dev/null)" != "$q" ]; then
		kmake -s rustavailable >"$KLU_CACHE/rustavailable.log" 2>&1 ||
			{ cat "$KLU_CACHE/rustavailable.log" >&2; die "make rustavailable failed in the build root (rustc $v_rustc); run: make buildroot"; }
		echo "$q" >"$stamp"
	fi
}

kernel() {
	"$TOOLING/assemble.sh"
	toolchain_check
	config
	log "building the kernel (LLVM=1, ccache, -j$JOBS)"
	# KVM is built as modules (virtme-ng hands the object tree's to the guest).
	kmake bzImage modules "$@" 2>&1 | tee "$KLU_CACHE/build.log" | progress ||
		die "kernel build failed (full log: $KLU_CACHE/build.log)"
	[ -f "$OUT/arch/x86/boot/bzImage" ] || die "kernel build failed: no bzImage"
}

# The pristine base kernel with the same config, in its own object tree
# (out-base), for the benchmarks that compare the patched kernel with the
# one it applies to.  ccache shares every object the series leaves alone.
base_kernel() {
	if [ -z "${KLU_BASE_BUILD:-}" ]; then
		[ -d "$PRISTINE" ] || die "the base is not unpacked; run: make base"
		exec env KLU_BASE_BUILD=1 KLU_OBJ="$KLU_CACHE/out-base" KLU_SRC_TREE="$PRISTINE" \
			"$0" base_kernel "$@"
	fi
	toolchain_check
	config base
	log "building the base kernel $BASE_VERSION, unpatched (LLVM=1, ccache, -j$JOBS)"
	kmake bzImage modules "$@" 2>&1 | tee "$KLU_CACHE/build-base.log" | progress ||
		die "base kernel build failed (full log: $KLU_CACHE/build-base.log)"
	[ -f "$OUT/arch/x86/boot/bzImage" ] || die "base kernel build failed: no bzImage"
}

# One patch of the series, in the tree tooling/check-patches.sh keeps
# ($KLU_SRC_TREE) and the object tree of its variant ($KLU_OBJ, with Rust
# or without: KLU_CONFIG_EXTRA=no-rust.config).  Options a later patch
# adds may not exist yet: the fragment applies as it can, as for the base.
# The output goes to build.log in the object tree; its tail on a failure.
patch_kernel() {
	[ -n "${KLU_PATCH_BUILD:-}" ] || die "patch_kernel is for tooling/check-patches.sh"
	toolchain_check
	config base >/dev/null
	kmake bzImage modules "$@" >"$OUT/build.log" 2>&1 ||
		{ grep -E 'error|Error' "$OUT/build.log" | tail -n 20 >&2; return 1; }
	[ -f "$OUT/arch/x86/boot/bzImage" ] || { echo "no bzImage" >&2; return 1; }
}

# The selftest groups tests.list uses, built against the patched UAPI headers.
selftests() {
	"$TOOLING/assemble.sh"
	toolchain_check
	config
	log "building UAPI headers and selftests ($(selftest_dirs | tr '\n' ' '))"
	kmake -s headers >/dev/null
	# A listed binary whose build rule went away must not pass with a stale
	# copy: relink every listed test.
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TOOLING/tests.list" | awk '{ print $2 }' |
		while read -r p; do rm -f "$SELFTESTS_OUT/$p"; done
	local d
	for d in $(selftest_dirs); do
		in_root make -s -C "$C_SRC/tools/testing/selftests/$d" -j"$JOBS" \
			OUTPUT="$C_SELFTESTS/$d" KHDR_INCLUDES="-isystem $C_OUT/usr/include" \
			>"$KLU_CACHE/selftests-$d.log" 2>&1 ||
			{ tail -n 30 "$KLU_CACHE/selftests-$d.log" >&2; die "building selftests/$d failed (log: $KLU_CACHE/selftests-$d.log)"; }
	done
}

selftest_dirs() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TOOLING/tests.list" | awk '{ split($2, p, "/"); print p[1] }' | sort -u
}

# The demo's KVM guest program (tooling/demo/).
demo() {
	mkdir -p "$SELFTESTS_OUT/demo"
	local p
	for p in kvm-counter vmm-upgrade; do
		in_root gcc -O2 -Wall -Werror -isystem "$C_OUT/usr/include" \
			-o "$C_SELFTESTS/demo/$p" "$C_TOP/tooling/demo/$p.c"
	done
}

all() {
	kernel
	selftests
}

"${@:-kernel}"
