#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Assemble the source tree that is built: the pristine base, plus the overlay
# files, plus the patches of patches/series, in $KLU_CACHE/src.  Incremental:
# only files whose content changes are rewritten, so make rebuilds only what
# changed.  Files an earlier assembly changed and this one does not are put
# back to pristine.

. "$(dirname "$0")/lib.sh"
. "$TOOLING/series.lib.sh"

LIST=$SRC/.klu-assembled

main() {
	need_host_cmd git git
	[ -d "$PRISTINE" ] || die "the base is not unpacked; run: make base"
	local problems
	if ! problems=$(series_lint "$PRISTINE"); then
		echo "$problems" >&2
		die "patches/series does not match the tree"
	fi

	if [ "$(cat "$SRC/.klu-base" 2>/dev/null)" != "$BASE_VERSION" ]; then
		log "copying the pristine base into $SRC"
		rm -rf "$SRC"
		cp -a "$PRISTINE" "$SRC"
		# The base's files keep the tarball's dates, older than any object
		# built from the previous base: start the object trees afresh.
		rm -rf "$OUT" "$SELFTESTS_OUT" "$KLU_CACHE/out-clippy"
		echo "$BASE_VERSION" >"$SRC/.klu-base"
	fi

	STAGE_DIR=$(mktemp -d)
	local stage=$STAGE_DIR
	trap 'rm -rf "$STAGE_DIR"' EXIT

	local -a touched=() overlay=()
	local p f
	mapfile -t overlay < <(overlay_files)
	for p in $(series_patches); do
		mapfile -t -O "${#touched[@]}" touched < <(patch_touched "$TOP/patches/$p")
	done
	for f in "${touched[@]}"; do
		if [ -e "$PRISTINE/$f" ]; then
			mkdir -p "$stage/$(dirname "$f")"
			cp -p "$PRISTINE/$f" "$stage/$f"
		fi
	done
	for f in "${overlay[@]}"; do
		mkdir -p "$stage/$(dirname "$f")"
		cp -p "$TOP/$f" "$stage/$f"
	done
	for p in $(series_patches); do
		if ! (cd "$stage" && git apply --whitespace=nowarn -p1 "$TOP/patches/$p") 2>"$stage.err"; then
			cat "$stage.err" >&2
			rm -f "$stage.err"
			die "patches/$p does not apply to $BASE_PACKAGE $BASE_VERSION plus the patches before it"
		fi
	done
	rm -f "$stage.err"

	local -A want=()
	local changed=0
	for f in "${touched[@]}" "${overlay[@]}"; do
		want[$f]=1
	done
	# Record what this run may change before changing it, so that an
	# interrupted run still knows what to put back next time.
	{ cat "$LIST" 2>/dev/null || true; for f in "${!want[@]}"; do echo "$f"; done; } |
		LC_ALL=C sort -u >"$LIST.new"
	mv "$LIST.new" "$LIST"
	for f in "${!want[@]}"; do
		if [ -e "$stage/$f" ]; then
			if ! cmp -s "$stage/$f" "$SRC/$f" ||
				[ "$(stat -c %a "$stage/$f")" != "$(stat -c %a "$SRC/$f")" ]; then
				mkdir -p "$SRC/$(dirname "$f")"
				cp "$stage/$f" "$SRC/$f"
				chmod --reference="$stage/$f" "$SRC/$f"
				changed=$((changed + 1))
			fi
		elif [ -e "$SRC/$f" ]; then
			rm -f "$SRC/$f"
			changed=$((changed + 1))
		fi
	done
	# Put back what an earlier assembly changed and this one does not.
	if [ -f "$LIST" ]; then
		while read -r f; do
			[ -z "$f" ] || [ -n "${want[$f]:-}" ] && continue
			if [ -e "$PRISTINE/$f" ]; then
				cmp -s "$PRISTINE/$f" "$SRC/$f" || { cp "$PRISTINE/$f" "$SRC/$f"; changed=$((changed + 1)); }
			elif [ -e "$SRC/$f" ]; then
				rm -f "$SRC/$f"
				changed=$((changed + 1))
			fi
		done <"$LIST"
	fi
	for f in "${!want[@]}"; do echo "$f"; done | LC_ALL=C sort >"$LIST.new"
	mv "$LIST.new" "$LIST"
	info "assembled $SRC: ${#overlay[@]} overlay files, $(series_patches | wc -l) patches, $changed files changed"
}

main "$@"
