#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch the pinned base (Debian's linux-source package), verify the kernel
# tarball against the sha256 in tooling/base.conf and unpack it once into
# $KLU_CACHE/base.  The unpacked pristine tree is read-only input for
# tooling/assemble.sh and tooling/series.sh.

. "$(dirname "$0")/lib.sh"

STAMP=$PRISTINE.done

main() {
	if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BASE_TARBALL_SHA256" ]; then
		info "base $BASE_PACKAGE $BASE_VERSION unpacked: $PRISTINE"
		return 0
	fi
	need_root "make base"
	need_host_cmd dpkg-deb dpkg
	host_install xz xz-utils
	mkdir -p "$BASE_DIR"
	local debdir=$KLU_CACHE/deb
	mkdir -p "$debdir"
	# apt-get download names the file after the version, epoch ':' as %3a.
	local deb=$debdir/${BASE_PACKAGE}_${BASE_VERSION//:/%3a}_all.deb
	if [ ! -f "$deb" ]; then
		log "downloading $BASE_PACKAGE $BASE_VERSION"
		mkdir -p "$ROOT/var/cache/klu-deb"
		rm -f "$ROOT"/var/cache/klu-deb/*.deb
		if ! in_root /bin/sh -c "cd /var/cache/klu-deb && apt-get -q update && apt-get -q download '$BASE_PACKAGE=$BASE_VERSION'" \
			>"$KLU_CACHE/base-download.log" 2>&1; then
			cat "$KLU_CACHE/base-download.log" >&2
			die "the Debian archive no longer serves $BASE_PACKAGE $BASE_VERSION.
Move the pin: see 'Moving the base' in README.md (apt-cache policy $BASE_PACKAGE in the
build root lists what is served; set BASE_VERSION and BASE_TARBALL_SHA256 in tooling/base.conf)."
		fi
		mv "$ROOT"/var/cache/klu-deb/"${BASE_PACKAGE}_"*.deb "$debdir/"
		[ -f "$deb" ] || die "apt-get download did not produce $(basename "$deb")"
	fi

	log "verifying $BASE_TARBALL from $(basename "$deb")"
	local tarball=$debdir/$BASE_TARBALL
	dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$BASE_TARBALL" >"$tarball"
	local sum
	sum=$(sha256sum "$tarball" | cut -d' ' -f1)
	if [ "$sum" != "$BASE_TARBALL_SHA256" ]; then
		die "$BASE_TARBALL has sha256 $sum, but tooling/base.conf pins $BASE_TARBALL_SHA256.
If you are moving the base on purpose, put the new sum in BASE_TARBALL_SHA256."
	fi

	log "unpacking the base into $PRISTINE"
	rm -rf "$PRISTINE" "$PRISTINE.tmp" "$STAMP"
	mkdir -p "$PRISTINE.tmp"
	tar -xJf "$tarball" -C "$PRISTINE.tmp" --strip-components=1
	mv "$PRISTINE.tmp" "$PRISTINE"
	rm -f "$tarball"
	echo "$BASE_TARBALL_SHA256" >"$STAMP"
}

main "$@"
