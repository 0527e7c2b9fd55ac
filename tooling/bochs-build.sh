#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bochs for `make test-vmx`, built once into the build root (/usr/local).
#
# Debian's bochs 3.0 has a bug that hangs any VMX guest that spins with
# EFLAGS.IF = 0 (every KVM selftest guest): VM entry evaluates the interrupt
# masks before it marks the CPU as in guest mode, so "external-interrupt
# exiting" is ignored and the host's timer never gets the CPU back (see
# tooling/bochs/vmx-entry-intr-mask.patch and README.md's platform notes),
# and one that fails every VM entry with APICv: it wants the posted-interrupt
# descriptor page-aligned, where the SDM asks for 64 bytes
# (tooling/bochs/vmx-pi-desc-align.patch; bochs' master has that fixed).
# This builds Debian's bochs source with those fixes, with the features the
# emulated CPU model needs and no GUI, debugger or plugins, so it also runs
# faster than Debian's build.  The BIOS images come from Debian's bochsbios
# and vgabios packages (tooling/buildroot.packages).

. "$(dirname "$0")/lib.sh"

BOCHS_VERSION=3.0+dfsg-1
BOCHS_ORIG=bochs_3.0+dfsg.orig.tar.xz
BOCHS_ORIG_SHA256=78f6c73d4a6472d5130a87ab9dc306d02c7c71ed8e25b3a8ef642e2a7acd282b

STAMP=$ROOT/usr/local/bin/.klu-bochs

wanted_stamp() {
	{ echo "$BOCHS_VERSION"; cat "$TOOLING"/bochs/*.patch; declare -f configure_args; } | sha256sum | cut -d' ' -f1
}

configure_args() {
	echo --prefix=/usr/local --with-nogui --disable-plugins --enable-all-optimizations \
		--enable-cpu-level=6 --enable-x86-64 --enable-vmx=2 --enable-svm --enable-smp \
		--enable-avx --enable-evex --enable-amx --enable-cet --enable-protection-keys \
		--enable-uintr --enable-fpu --enable-a20-pin --enable-pci --enable-cdrom \
		--enable-repeat-speedups --enable-memtype
}

main() {
	if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ]; then
		info "bochs up to date: $ROOT/usr/local/bin/bochs"
		return 0
	fi
	host_install curl curl
	local dl=$KLU_CACHE/bochs-src mirror
	mkdir -p "$dl"
	if [ ! -f "$dl/$BOCHS_ORIG" ]; then
		mirror=$(awk '$1 == "deb" { print $2; exit }' "$ROOT/etc/apt/sources.list")
		log "downloading Debian's bochs source $BOCHS_VERSION"
		curl -fsS -o "$dl/$BOCHS_ORIG.tmp" "$mirror/pool/main/b/bochs/$BOCHS_ORIG" ||
			die "could not download $mirror/pool/main/b/bochs/$BOCHS_ORIG"
		mv "$dl/$BOCHS_ORIG.tmp" "$dl/$BOCHS_ORIG"
	fi
	local sum
	sum=$(sha256sum "$dl/$BOCHS_ORIG" | cut -d' ' -f1)
	[ "$sum" = "$BOCHS_ORIG_SHA256" ] ||
		die "$BOCHS_ORIG has sha256 $sum, not the pinned $BOCHS_ORIG_SHA256 (tooling/bochs-build.sh)"

	log "building bochs $BOCHS_VERSION with the project's VMX fix (takes a few minutes, once)"
	local src=$ROOT/usr/src/klu-bochs
	rm -rf "$src"
	mkdir -p "$src"
	tar -xJf "$dl/$BOCHS_ORIG" -C "$src" --strip-components=1
	# shellcheck disable=SC2046
	in_root /bin/sh -c "cd /usr/src/klu-bochs &&
		for p in $C_TOP/tooling/bochs/*.patch; do patch -s -p1 <\$p || exit 1; done &&
		./configure $(configure_args) && make -j$JOBS && make install" >"$KLU_CACHE/bochs-build.log" 2>&1 ||
		{ tail -n 20 "$KLU_CACHE/bochs-build.log" >&2; die "the bochs build failed (log: $KLU_CACHE/bochs-build.log)"; }
	rm -rf "$src"
	wanted_stamp >"$STAMP"
}

main "$@"
