# SPDX-License-Identifier: GPL-2.0
# Reading patches/series, the one manifest of the series.  Sourced.
#
# Format: one patch a line, in series order, by file name in patches/.  Lines
# indented under a patch name the overlay files (new files, at their kernel
# paths in this repository) that the patch adds.  '#' starts a comment.
#
#   0003-KVM-Add-foo.patch
#           virt/kvm/foo.c
#           include/uapi/linux/foo.h
#
# A patch file holds the commit: "Subject:" line, changelog, then "---" and
# the diff of upstream files it changes (possibly none).

SERIES=$TOP/patches/series

# Top-level kernel directories an overlay file may live in.
OVERLAY_DIRS="arch block certs crypto Documentation drivers fs include init io_uring ipc
kernel lib mm net rust samples scripts security sound tools usr virt"

# The manifest without comments, carriage returns or trailing blanks.
series_lines() {
	[ -f "$SERIES" ] || return 0
	sed -e 's/#.*//' -e 's/\r$//' -e 's/[[:space:]]*$//' "$SERIES"
}

# "patch" lines: the patch file names in order.
series_patches() {
	series_lines | awk '/^[^[:space:]]/ { print $1 }'
}

# "patch<TAB>file" lines: which overlay file each patch adds.
series_files() {
	series_lines | awk '
		/^[^[:space:]]/ { p = $1; next }
		/^[[:space:]]+[^[:space:]]/ { if (p == "") { print "orphan\t" $1 } else { print p "\t" $1 } }'
}

# Every overlay file in the repository: tracked or new, but not ignored, so
# editor and build droppings are not part of the overlay.
overlay_files() {
	local d dirs=()
	for d in $OVERLAY_DIRS; do
		[ -d "$TOP/$d" ] && dirs+=("$d")
	done
	[ ${#dirs[@]} -gt 0 ] || return 0
	git -C "$TOP" ls-files --cached --others --exclude-standard -- "${dirs[@]}" |
		while read -r f; do [ -f "$TOP/$f" ] && echo "$f"; done | LC_ALL=C sort -u
}

# Files a patch changes (upstream paths).
patch_touched() {
	grep -E '^diff --git a/' "$1" | sed -E 's|^diff --git a/([^ ]+) b/([^ ]+)$|\1\n\2|' | LC_ALL=C sort -u
}

# Check the manifest against the tree; print problems, return non-zero on any.
series_lint() {
	local pristine=$1 bad=0 f p
	local extra
	extra=$(series_lines | awk 'NF > 1 { print NR ": " $0 }')
	[ -z "$extra" ] || { echo "patches/series: one name a line, but: $extra"; bad=1; }
	dups=$(series_patches | LC_ALL=C sort | uniq -d)
	[ -z "$dups" ] || { echo "patches/series lists these patches twice: $dups"; bad=1; }
	while read -r p; do
		[ -f "$TOP/patches/$p" ] || { echo "patches/series names $p, which does not exist"; bad=1; continue; }
		grep -q '^Subject: ' "$TOP/patches/$p" || { echo "patches/$p has no Subject: line"; bad=1; }
		# Here-strings, not pipes: grep -q leaving early would kill the
		# writer with SIGPIPE, and pipefail make that a miss.
		if ! grep -q '^diff --git ' "$TOP/patches/$p" && ! grep -q "^$p"$'\t' <<<"$(series_files)"; then
			echo "patches/$p changes nothing: no diff and no overlay files"
			bad=1
		fi
	done < <(series_patches)
	for f in "$TOP"/patches/*.patch; do
		[ -e "$f" ] || continue
		grep -qxF "$(basename "$f")" <<<"$(series_patches)" || { echo "patches/$(basename "$f") is not in patches/series"; bad=1; }
	done
	while IFS=$'\t' read -r p f; do
		[ "$p" = orphan ] && { echo "patches/series: $f is not under a patch"; bad=1; continue; }
		[ -f "$TOP/$f" ] || { echo "patches/series: $p adds $f, which does not exist"; bad=1; }
		[ -e "$pristine/$f" ] && { echo "$f exists upstream: change it with a patch, not an overlay file"; bad=1; }
		case " $(echo $OVERLAY_DIRS) " in *" ${f%%/*} "*) ;; *) echo "patches/series: $f is not under a kernel directory ($OVERLAY_DIRS)"; bad=1 ;; esac
	done < <(series_files)
	local claimed
	claimed=$(series_files | cut -f2 | LC_ALL=C sort)
	for f in $(overlay_files); do
		if ! grep -qxF "$f" <<<"$claimed"; then
			echo "$f is in the overlay but no patch in patches/series adds it"
			bad=1
		fi
	done
	dups=$(cut -f1 <<<"$claimed" | uniq -d)
	[ -z "$dups" ] || { echo "patches/series adds these files twice: $dups"; bad=1; }
	return $bad
}
