#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check-patches`: build each patch of the series in turn, as a
# maintainer bisecting it would, twice: with Rust (the test config) and
# without (tooling/config/no-rust.config).  Each must build.  The trees are
# the series' commits (make series), copied file by file into
# $KLU_CACHE/src-patch, which starts as hard links to the pristine base, so
# each step rebuilds only what the patch changed, in the object trees
# $KLU_CACHE/out-patch-rust and out-patch-norust (ccache is shared).
#
# KLU_PATCHES=first-last (numbers as in patches/) limits the range; the
# default is the whole series.  Not in CI: the first build of each object
# tree is a cold one.

. "$(dirname "$0")/lib.sh"

GITDIR=$KLU_CACHE/series-git
PSRC=$KLU_CACHE/src-patch

# The source tree at commit @1, from the one it holds: only the files that
# differ are written (removed first: the others are links to the base).
sync_to() {
	local cur st f mode
	cur=$(cat "$PSRC/.klu-commit")
	git -C "$GITDIR" diff --name-status --no-renames "$cur" "$1" |
		while IFS=$'\t' read -r st f; do
			rm -f "$PSRC/$f"
			[ "$st" = D ] && continue
			mkdir -p "$PSRC/$(dirname "$f")"
			git -C "$GITDIR" show "$1:$f" >"$PSRC/$f"
			mode=$(git -C "$GITDIR" ls-tree "$1" -- "$f" | cut -c1-6)
			if [ "$mode" = 100755 ]; then
				chmod +x "$PSRC/$f"
			fi
		done
	echo "$1" >"$PSRC/.klu-commit"
}

main() {
	local -a commits
	local n first last i v t0 fail=0 subject extra

	need_host_cmd git git
	[ -d "$PRISTINE" ] || die "the base is not unpacked; run: make base"
	SERIES_OUT=$KLU_CACHE/check-series "$TOOLING/series.sh" >/dev/null ||
		die "make series failed"
	mapfile -t commits < <(git -C "$GITDIR" rev-list --reverse base..series)
	n=${#commits[@]}
	first=${KLU_PATCHES:-1-$n}
	last=${first#*-}
	first=${first%-*}
	[[ "$first" =~ ^[0-9]+$ && "$last" =~ ^[0-9]+$ && $first -ge 1 && $first -le $last &&
		$last -le $n ]] || die "KLU_PATCHES=$KLU_PATCHES: want first-last within 1-$n"
	if [ "$(cat "$PSRC/.klu-base" 2>/dev/null)" != "$BASE_VERSION" ] ||
		! git -C "$GITDIR" cat-file -e "$(cat "$PSRC/.klu-commit" 2>/dev/null)^{commit}" 2>/dev/null; then
		log "linking the pristine base into $PSRC"
		rm -rf "$PSRC" "$KLU_CACHE/out-patch-rust" "$KLU_CACHE/out-patch-norust"
		cp -al "$PRISTINE" "$PSRC"
		git -C "$GITDIR" rev-parse base >"$PSRC/.klu-commit"
		echo "$BASE_VERSION" >"$PSRC/.klu-base"
	fi
	log "building patches $first-$last of $n, with Rust and without"
	for ((i = first; i <= last; i++)); do
		sync_to "${commits[i - 1]}"
		subject=$(git -C "$GITDIR" log -1 --format=%s "${commits[i - 1]}")
		for v in rust norust; do
			t0=$(date +%s)
			extra=
			[ $v = rust ] || extra=no-rust.config
			if env KLU_PATCH_BUILD=1 KLU_SRC_TREE="$PSRC" KLU_OBJ="$KLU_CACHE/out-patch-$v" \
				KLU_CONFIG_EXTRA="$extra" "$TOOLING/build.sh" patch_kernel; then
				printf '    %04d %-6s ok   %4ss  %s\n' "$i" "$v" $(($(date +%s) - t0)) "$subject"
			else
				printf '    %04d %-6s FAIL %4ss  %s (log: %s)\n' "$i" "$v" \
					$(($(date +%s) - t0)) "$subject" "$KLU_CACHE/out-patch-$v/build.log"
				fail=1
			fi
		done
	done
	[ $fail = 0 ] || die "some patches do not build (above)"
	info "patches $first-$last build, with Rust and without"
}

main "$@"
