#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make series`: turn patches/series into a mailing-list series.  A git
# repository of the pristine base (one commit with fixed metadata, so its id
# is the same on every machine) gets one commit per manifest entry: the
# overlay files the entry adds plus its diff, with its changelog.  Then
# `git format-patch -s --cover-letter --base` writes series/, signed off by
# whoever runs this (their git identity), never by the repository.  Finally
# the output is checked to apply with `git am` onto the pristine base.

. "$(dirname "$0")/lib.sh"
. "$TOOLING/series.lib.sh"

PRISTINE=$BASE_DIR/$BASE_PACKAGE
GITDIR=$KLU_CACHE/series-git
OUTDIR=${SERIES_OUT:-$TOP/series}

git_id() {
	local name email
	name=$(git -C "$TOP" config user.name || true)
	email=$(git -C "$TOP" config user.email || true)
	[ -n "$name" ] && [ -n "$email" ] ||
		die "git user.name and user.email are not set: the series is signed off by you, so set them (git config --global user.name ...)"
	echo "$name <$email>"
}

base_repo() {
	if [ "$(cat "$GITDIR/.klu-base" 2>/dev/null)" = "$BASE_VERSION" ]; then
		return 0
	fi
	log "making a git repository of the pristine base (once per base)"
	rm -rf "$GITDIR"
	mkdir -p "$GITDIR"
	cp -a "$PRISTINE/." "$GITDIR/"
	(
		cd "$GITDIR"
		git init -q -b base .
		# Debian's .gitignore ignores everything at the top level.
		git add -f -A .
		export GIT_AUTHOR_NAME="Debian $BASE_PACKAGE" GIT_AUTHOR_EMAIL="base@invalid"
		export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
		export GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z"
		git -c core.autocrlf=false commit -q -m "$BASE_PACKAGE $BASE_VERSION" \
			-m "The unpacked $BASE_TARBALL (sha256 $BASE_TARBALL_SHA256)."
	)
	echo "$BASE_VERSION" >"$GITDIR/.git/klu-base"
	echo "$BASE_VERSION" >"$GITDIR/.klu-base"
	echo ".klu-base" >>"$GITDIR/.git/info/exclude"
}

# The commit message of a patch file: its Subject, then the body up to "---".
message() {
	awk '
		/^Subject: / && !subj { sub(/^Subject: (\[PATCH[^]]*\] )?/, ""); print; print ""; subj = 1; inhdr = 1; next }
		inhdr && /^$/ { inhdr = 0; next }
		inhdr { next }
		/^---$/ { exit }
		subj { print }' "$1"
}

author() {
	sed -n '1,/^$/ s/^From: //p' "$1" | head -n1
}

main() {
	[ -d "$PRISTINE" ] || die "the base is not unpacked; run: make base"
	local problems me
	problems=$(series_lint "$PRISTINE") || { echo "$problems" >&2; die "patches/series does not match the tree"; }
	me=$(git_id)
	base_repo
	cd "$GITDIR"
	git checkout -q -f base
	git clean -q -fdx -e .klu-base
	git branch -q -D series 2>/dev/null || true
	git checkout -q -b series
	local p f a n=0
	for p in $(series_patches); do
		while IFS=$'\t' read -r pp f; do
			[ "$pp" = "$p" ] || continue
			mkdir -p "$(dirname "$f")"
			cp "$TOP/$f" "$f"
			git add -f "$f"
		done < <(series_files)
		if grep -q '^diff --git ' "$TOP/patches/$p"; then
			git apply --index "$TOP/patches/$p" || die "patches/$p does not apply"
		fi
		a=$(author "$TOP/patches/$p")
		git -c user.name="${me% <*}" -c user.email="$(sed 's/.*<\(.*\)>/\1/' <<<"$me")" \
			commit -q --allow-empty ${a:+--author="$a"} -F <(message "$TOP/patches/$p")
		n=$((n + 1))
	done
	rm -rf "$OUTDIR"
	mkdir -p "$OUTDIR"
	if [ $n = 0 ]; then
		info "patches/series lists no patches yet: nothing to format"
		git checkout -q -f base
		return 0
	fi
	git format-patch -q -s --cover-letter --base=base --thread=shallow \
		--subject-prefix="${SUBJECT_PREFIX:-RFC PATCH}" -o "$OUTDIR" base..series
	fill_cover "$OUTDIR"/0000-cover-letter.patch
	log "checking that the series applies with git am onto the pristine base"
	git checkout -q -f base
	git branch -q -D am-check 2>/dev/null || true
	git checkout -q -b am-check
	local -a mails
	mapfile -t mails < <(ls "$OUTDIR"/*.patch | grep -v '/0000-cover-letter.patch$')
	if [ ${#mails[@]} -gt 0 ]; then
		git -c user.name="${me% <*}" -c user.email="$(sed 's/.*<\(.*\)>/\1/' <<<"$me")" \
			am -q "${mails[@]}" || die "the series does not apply with git am onto the base"
	fi
	[ "$(git rev-parse am-check^{tree})" = "$(git rev-parse series^{tree})" ] ||
		die "git am of the series gives a different tree than the manifest"
	git checkout -q -f base
	info "series: $n patches + cover letter in $OUTDIR (base-commit $(git rev-parse base))"
}

fill_cover() {
	local cover=$1 blurb=$TOP/patches/cover-letter
	[ -f "$blurb" ] || return 0
	python3 - "$cover" "$blurb" <<'PY'
import sys
cover, blurb = sys.argv[1], open(sys.argv[2]).read()
subject, _, body = blurb.partition("\n\n")
s = open(cover).read()
s = s.replace("*** SUBJECT HERE ***", subject.strip()).replace("*** BLURB HERE ***", body.strip())
open(cover, "w").write(s)
PY
}

main "$@"
