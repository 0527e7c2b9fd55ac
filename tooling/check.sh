#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`: the series hygiene a maintainer would run.
#  1. checkpatch.pl --strict over every patch of the generated series;
#  2. rustfmtcheck over the assembled tree;
#  3. a CLIPPY=1 build in its own object tree ($KLU_CACHE/out-clippy, so the
#     main tree is not rebuilt), failing on any warning in a file the series
#     adds or changes.
# Also shellcheck-free bash syntax of the tooling (bash -n).

. "$(dirname "$0")/lib.sh"
. "$TOOLING/series.lib.sh"

OUT_CLIPPY=$KLU_CACHE/out-clippy
fail=0

step_checkpatch() {
	local dir=$KLU_CACHE/check-series
	# checkpatch and get_maintainer.pl run in the assembled tree: make it
	# the full series (a per-patch build may have left a partial one).
	"$TOOLING/assemble.sh" || return 1
	rm -rf "$dir"
	SERIES_OUT=$dir "$TOOLING/series.sh" || return 1
	local -a mails
	mapfile -t mails < <(cd "$dir" && ls *.patch 2>/dev/null | grep -v '^0000-cover-letter.patch$' || true)
	if [ ${#mails[@]} = 0 ]; then
		info "checkpatch: the series has no patches yet"
		return 0
	fi
	mkdir -p "$RESULTS/check-series"
	cp "$dir"/*.patch "$RESULTS/check-series/"
	local p out bad=0
	for p in "${mails[@]}"; do
		# FILE_PATH_CHANGES asks whether MAINTAINERS needs an update for
		# every new file; the series only adds files under directories
		# the KVM entry already covers (virt/kvm/, Documentation/virt/kvm/,
		# tools/testing/selftests/kvm/), which maintainers_covered checks.
		out=$(in_root perl "$C_SRC/scripts/checkpatch.pl" --strict --no-signoff --root="$C_SRC" \
			--ignore FILE_PATH_CHANGES \
			--show-types -q "/build/results/check-series/$p" 2>&1) || true
		if [ -n "$out" ]; then
			echo "checkpatch: $p"
			echo "$out" | sed 's/^/    /'
			bad=1
		fi
	done
	maintainers_covered || bad=1
	[ $bad = 0 ] && info "checkpatch --strict: ${#mails[@]} patches clean"
	return $bad
}

# Every file the series adds falls under the KVM entry of MAINTAINERS.
maintainers_covered() {
	local f bad=0
	for f in $(overlay_files); do
		grep -q -E 'KERNEL VIRTUAL MACHINE|LIVE UPDATE|KEXEC HANDOVER|RUST' <<<"$(in_root sh -c \
			"cd $C_SRC && perl scripts/get_maintainer.pl --no-git --no-git-fallback --nokeywords -f $f" \
			2>/dev/null)" || { echo "MAINTAINERS: no entry covers $f"; bad=1; }
	done
	return $bad
}

step_rustfmt() {
	"$TOOLING/assemble.sh" || return 1
	in_root make -s -C "$C_SRC" O="$C_OUT" LLVM=1 rustfmtcheck ||
		{ echo "rustfmtcheck: format the repository's files, e.g. tooling/in-root rustfmt --config-path /build/src/.rustfmt.toml --edition 2021 /build/repo/<file>.rs"; return 1; }
	info "rustfmtcheck clean"
}

# Files the series adds or changes: where a clippy warning is ours.
project_files() {
	overlay_files
	local p
	for p in $(series_patches); do patch_touched "$TOP/patches/$p"; done
}

step_clippy() {
	"$TOOLING/build.sh" config || return 1
	mkdir -p "$OUT_CLIPPY"
	cmp -s "$OUT/.config" "$OUT_CLIPPY/.config" || cp "$OUT/.config" "$OUT_CLIPPY/.config"
	log "CLIPPY=1 build in $OUT_CLIPPY"
	local log=$KLU_CACHE/clippy.log
	KLU_OUT=$OUT_CLIPPY in_root make -C "$C_SRC" O="$C_OUT" LLVM=1 CLIPPY=1 -j"$JOBS" olddefconfig bzImage \
		>"$log" 2>&1 || { tail -n 30 "$log"; echo "CLIPPY=1 build failed (log: $log)"; return 1; }
	local files warn
	files=$(project_files | grep -E '\.rs$' || true)
	# rustc names sources by their absolute path in the assembled tree.
	warn=$(grep -E -A6 '^(warning|error)' "$log" | grep -F -f <(echo "${files:-/nonexistent}" | sed 's|^|--> /build/src/|') || true)
	if [ -n "$warn" ]; then
		echo "clippy warnings in project files:"
		echo "$warn"
		return 1
	fi
	info "CLIPPY=1: no warnings in the project's Rust ($(echo "$files" | grep -c . || true) files)"
}

step_shell() {
	local f bad=0
	for f in "$TOOLING"/*.sh "$TOOLING"/guest/*.sh "$TOOLING"/in-root "$TOP"/.ci/run; do
		bash -n "$f" || bad=1
	done
	return $bad
}

step_shell || fail=1
step_checkpatch || fail=1
step_rustfmt || fail=1
step_clippy || fail=1
[ $fail = 0 ] && log "make check: clean" || die "make check found problems (above)"
