#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make series`: turn patches/series into a mailing-list series.  A git
# repository of the pristine base (one commit with fixed metadata, so its id
# is the same on every machine) gets one commit per manifest entry: the
# overlay files the entry adds plus its diff, with its changelog.  Then
# `git format-patch -s --cover-letter --base` writes series/, signed off by
# whoever runs this (their git identity), never by the repository.  Finally
# the output is checked to apply with `git am` onto the pristine base, giving
# the same tree.

. "$(dirname "$0")/lib.sh"
. "$TOOLING/series.lib.sh"

GITDIR=$KLU_CACHE/series-git
OUTDIR=${SERIES_OUT:-$TOP/series}

# The identity of the person running this, from their git configuration.
git_id() {
	need_host_cmd git git
	local u=()
	# Under sudo, read the invoking user's configuration, not root's.
	[ -n "${SUDO_USER:-}" ] && u=(sudo -u "$SUDO_USER")
	ME_NAME=$("${u[@]}" git -C "$TOP" config user.name || true)
	ME_EMAIL=$("${u[@]}" git -C "$TOP" config user.email || true)
	[ -n "$ME_NAME" ] && [ -n "$ME_EMAIL" ] ||
		die "git user.name and user.email are not set: the series is signed off by you, so set them (git config --global user.name ...)"
}

# Every git command below ignores the user's global and system configuration
# (autocrlf, signing, hooks, format.* headers), so the output depends only on
# the repository.
g() {
	GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_DEFAULT_HASH=sha1 \
		GIT_COMMITTER_NAME="$ME_NAME" GIT_COMMITTER_EMAIL="$ME_EMAIL" \
		git -c core.autocrlf=false -c commit.gpgSign=false -c core.hooksPath=/dev/null "$@"
}

base_repo() {
	if [ "$(cat "$GITDIR/.git/klu-base" 2>/dev/null)" = "$BASE_VERSION $BASE_TARBALL_SHA256" ]; then
		return 0
	fi
	log "making a git repository of the pristine base (once per base)"
	rm -rf "$GITDIR"
	mkdir -p "$GITDIR"
	cp -a "$PRISTINE/." "$GITDIR/"
	(
		cd "$GITDIR"
		g init -q -b base .
		# Debian's .gitignore ignores everything at the top level.
		g add -f -A .
		GIT_AUTHOR_NAME="Debian $BASE_PACKAGE" GIT_AUTHOR_EMAIL="base@invalid" \
		GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
		ME_NAME="Debian $BASE_PACKAGE" ME_EMAIL="base@invalid" \
			g commit -q --no-verify -m "$BASE_PACKAGE $BASE_VERSION" \
			-m "The unpacked $BASE_TARBALL (sha256 $BASE_TARBALL_SHA256)."
	)
	echo "$BASE_VERSION $BASE_TARBALL_SHA256" >"$GITDIR/.git/klu-base"
}

# Commit one manifest entry, its message and author taken as `git am` would
# (git mailinfo: folded Subject lines, MIME-encoded names, [PATCH] prefixes).
commit_entry() {
	local p=$1 info msg body author email subject
	info=$(mktemp) msg=$(mktemp) body=$(mktemp)
	g mailinfo "$msg" "$body" <"$TOP/patches/$p" >"$info"
	subject=$(sed -n 's/^Subject: //p' "$info")
	author=$(sed -n 's/^Author: //p' "$info")
	email=$(sed -n 's/^Email: //p' "$info")
	[ -n "$subject" ] || die "patches/$p has no Subject"
	{ echo "$subject"; echo; cat "$msg"; } >"$msg.full"
	if grep -q '^diff --git ' "$TOP/patches/$p"; then
		g apply --index "$TOP/patches/$p" || die "patches/$p does not apply"
	fi
	if [ -n "$author" ] && [ -n "$email" ]; then
		g commit -q --no-verify --author="$author <$email>" -F "$msg.full"
	else
		GIT_AUTHOR_NAME="$ME_NAME" GIT_AUTHOR_EMAIL="$ME_EMAIL" g commit -q --no-verify -F "$msg.full"
	fi
	rm -f "$info" "$msg" "$msg.full" "$body"
}

main() {
	[ -f "$PRISTINE.done" ] || die "the base is not unpacked; run: make base"
	need_host_cmd python3 python3
	local problems
	problems=$(series_lint "$PRISTINE") || { echo "$problems" >&2; die "patches/series does not match the tree"; }
	git_id
	base_repo
	cd "$GITDIR"
	g am --abort >/dev/null 2>&1 || true
	rm -rf .git/rebase-apply
	g checkout -q -f base
	g clean -q -fdx
	g branch -q -D series am-check 2>/dev/null || true
	g checkout -q -b series
	local p f pp n=0
	for p in $(series_patches); do
		while IFS=$'\t' read -r pp f; do
			[ "$pp" = "$p" ] || continue
			mkdir -p "$(dirname "$f")"
			cp "$TOP/$f" "$f"
			g add -f "$f"
		done < <(series_files)
		commit_entry "$p"
		n=$((n + 1))
	done
	rm -rf "$OUTDIR"
	mkdir -p "$OUTDIR"
	if [ $n = 0 ]; then
		info "patches/series lists no patches yet: nothing to format"
		g checkout -q -f base
		return 0
	fi
	g format-patch -q -s --cover-letter --base=base --thread=shallow --suffix=.patch \
		--subject-prefix="${SUBJECT_PREFIX:-RFC PATCH}" -o "$OUTDIR" base..series
	fill_cover "$OUTDIR"/0000-cover-letter.patch
	log "checking that the series applies with git am onto the pristine base"
	g checkout -q -f base
	g checkout -q -b am-check
	local -a mails
	mapfile -t mails < <(ls "$OUTDIR"/*.patch | grep -v '/0000-cover-letter.patch$')
	if ! g am -q "${mails[@]}"; then
		g am --abort >/dev/null 2>&1 || true
		g checkout -q -f base
		die "the series does not apply with git am onto the base"
	fi
	[ "$(g rev-parse 'am-check^{tree}')" = "$(g rev-parse 'series^{tree}')" ] ||
		die "git am of the series gives a different tree than the manifest"
	g checkout -q -f base
	info "series: $n patches + cover letter in $OUTDIR (base-commit $(g rev-parse base))"
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
