#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Make (or repair) the Debian build root that holds the whole toolchain:
# debootstrap --variant=minbase, trixie-backports enabled, every toolchain
# package at the version pinned in tooling/buildroot.packages.  Idempotent: a
# finished root whose package list did not change is left alone, a half-made
# one is detected (no debootstrap or install stamp) and made again or finished.
#
# usage: buildroot.sh [--repin]

. "$(dirname "$0")/lib.sh"

PACKAGES_FILE=$TOOLING/buildroot.packages
STAMP=$ROOT/.klu-buildroot-done
REPIN=0
[ "${1:-}" = --repin ] && REPIN=1

# The Debian mirror is the one this host's apt already uses, unless
# DEBIAN_MIRROR says otherwise.
host_mirror() {
	local m
	m=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{ print $2 }' | grep -E '/debian/?$' | head -n1 || true)
	[ -n "$m" ] || m=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) { print $i; exit } }' |
		grep -E '/debian/?$' | head -n1 || true)
	[ -n "$m" ] || die "no Debian mirror found in this host's apt sources; set DEBIAN_MIRROR=<url of a Debian archive>"
	echo "${m%/}"
}

# The package list without comments, as "name=version" or "name".
wanted() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$PACKAGES_FILE"
}

list_hash() {
	{ wanted; echo "$SUITE $BACKPORTS"; } | sha256sum | cut -d' ' -f1
}

# The toolchain, by name: what `--repin` installs unpinned.
TOOLCHAIN="build-essential flex bison bc libelf-dev libssl-dev dwarves cpio kmod rsync
python3 xz-utils rustc rust-src rustfmt rust-clippy libstd-rust-dev bindgen libclang-dev clang lld llvm
qemu-system-x86 virtme-ng busybox-static ccache kexec-tools udev git procps iproute2 uuid-dev
bochsbios vgabios isolinux syslinux-common xorriso"

# Packages that must be installed at one version: the Rust toolchain is
# built from one source (rustc's core must match rust-src's, or the kernel's
# Rust build fails in `core`), and so is the LLVM set.  They move together.
TOOLCHAIN_SETS=(
	"rustc rust-src rustfmt rust-clippy libstd-rust-dev"
	"clang lld llvm libclang-dev"
)

# The versions the archive serves for package $1, one a line.
served_versions() {
	chroot_sh "apt-cache madison $1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }'
}

version_gt() {
	if command -v dpkg >/dev/null 2>&1; then
		dpkg --compare-versions "$1" gt "$2"
	else
		chroot_sh "dpkg --compare-versions '$1' gt '$2'"
	fi
}

# Newest of the versions on stdin, by dpkg's ordering.
newest_version() {
	local best="" v
	while read -r v; do
		[ -n "$v" ] || continue
		if [ -z "$best" ] || version_gt "$v" "$best"; then
			best=$v
		fi
	done
	echo "$best"
}

# Debian's stable suites and backports keep only the newest version of a
# package: a point release replaces what was pinned.  A pin the archive no
# longer serves is therefore replaced by the version it serves, with a
# warning naming both, instead of failing a fresh machine's first run;
# `make buildroot-repin` moves the pins.  A package of a toolchain set
# never moves alone: if one member's pin is gone, the whole set moves to the
# newest version that every member is served at, or the run stops.
served_pins() {
	local out="" pv p v set m common moved=" "
	declare -A pin=()
	for pv in $1; do
		p=${pv%%=*}
		[ "$p" != "$pv" ] && pin[$p]=${pv#*=}
	done
	for set in "${TOOLCHAIN_SETS[@]}"; do
		local all_served=1
		for m in $set; do
			[ -n "${pin[$m]:-}" ] || continue
			grep -qxF -- "${pin[$m]}" <<<"$(served_versions "$m")" || all_served=0
		done
		[ $all_served = 0 ] || continue
		common=""
		for m in $set; do
			if [ -z "$common" ]; then
				common=$(served_versions "$m" | sort -u)
			else
				common=$(comm -12 <(echo "$common") <(served_versions "$m" | sort -u))
			fi
		done
		v=$(echo "$common" | newest_version)
		[ -n "$v" ] || die "the toolchain set '$set' is no longer served at one common version;
run 'make buildroot-repin' and check the versions it picks (see README.md)"
		for m in $set; do
			warn "pinned $m=${pin[$m]:-none} is no longer served with its set; installing $m=$v (make buildroot-repin moves the pins)"
			echo "$m=${pin[$m]:-none}" >>"$KLU_CACHE/unserved-pins.txt"
			pin[$m]=$v
			moved="$moved$m "
		done
	done
	for pv in $1; do
		p=${pv%%=*}
		if [ "$p" = "$pv" ]; then
			out="$out $p"
		elif [[ "$moved" == *" $p "* ]]; then
			out="$out $p=${pin[$p]}"
		elif ! grep -qxF -- "${pin[$p]}" <<<"$(served_versions "$p")"; then
			warn "pinned $p=${pin[$p]} is no longer served; installing the archive's version (make buildroot-repin moves the pin)"
			echo "$p=${pin[$p]}" >>"$KLU_CACHE/unserved-pins.txt"
			out="$out $p"
		else
			out="$out $pv"
		fi
	done
	echo "$out"
}

# Is every toolchain set installed at one version?  Prints what is not.
toolchain_coherent() {
	local set q rc=0
	for set in "${TOOLCHAIN_SETS[@]}"; do
		# shellcheck disable=SC2086
		q=$(chroot_sh "dpkg-query -W -f='\${Package}=\${Version}\n' $set" 2>/dev/null || true)
		if [ "$(echo "$q" | grep -c .)" != "$(echo $set | wc -w)" ] ||
			[ "$(echo "$q" | cut -d= -f2 | sort -u | wc -l)" != 1 ]; then
			echo "$set:" $q
			rc=1
		fi
	done
	return $rc
}

chroot_sh() {
	unshare --mount --propagation private -- /bin/bash -c '
		r=$1; shift
		for d in proc sys dev dev/pts; do mount --rbind /$d "$r/$d"; done
		exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c "$1"
	' chroot_sh "$ROOT" "$1"
}

main() {
	if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(list_hash)" ] && [ $REPIN = 0 ]; then
		local bad
		if bad=$(toolchain_coherent); then
			info "build root up to date: $ROOT"
			return 0
		fi
		# A root made by an older version of this script could mix
		# versions inside a set: install the sets again.
		warn "the build root's toolchain sets are mixed ($bad); installing them again"
	fi
	need_root "make buildroot"
	mkdir -p "$KLU_CACHE"
	host_install debootstrap debootstrap
	need_host_cmd unshare util-linux

	local mirror
	mirror=${DEBIAN_MIRROR:-$(host_mirror)}

	# A root whose debootstrap did not finish is made again.
	if [ -d "$ROOT" ] && [ ! -f "$ROOT/.klu-debootstrap-done" ]; then
		log "removing half-made build root $ROOT"
		# Nothing may be mounted below it: our mounts live in private
		# namespaces, but be careful anyway.
		if grep -q " $ROOT/" /proc/self/mounts; then
			die "something is mounted below $ROOT; unmount it first"
		fi
		rm -rf "$ROOT"
	fi

	if [ ! -f "$ROOT/.klu-debootstrap-done" ]; then
		log "debootstrap $SUITE (minbase) into $ROOT"
		mkdir -p "$ROOT"
		debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$KLU_CACHE/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$KLU_CACHE/debootstrap.log" >&2; rm -rf "$ROOT"; die "debootstrap failed (log: $KLU_CACHE/debootstrap.log)"; }
		touch "$ROOT/.klu-debootstrap-done"
	fi

	cat >"$ROOT/etc/apt/sources.list" <<-SRC
	deb $mirror $SUITE main
	deb $mirror $BACKPORTS main
	SRC
	echo 'APT::Install-Recommends "false";' >"$ROOT/etc/apt/apt.conf.d/90klu-norecommends"
	# virtme-ng's init needs a hostname and a machine id to be quiet.
	echo klu >"$ROOT/etc/hostname"

	local pkgs
	if [ $REPIN = 1 ]; then
		pkgs=$(echo $TOOLCHAIN)
	else
		pkgs=$(wanted | tr '\n' ' ')
		[ -n "$pkgs" ] || die "$PACKAGES_FILE lists no packages; run: make buildroot-repin"
	fi

	log "installing the toolchain from $BACKPORTS (takes about two minutes)"
	rm -f "$KLU_CACHE/unserved-pins.txt"
	chroot_sh "apt-get -q update" >"$KLU_CACHE/apt.log" 2>&1 ||
		{ tail -n 20 "$KLU_CACHE/apt.log" >&2; die "apt-get update in the build root failed (log: $KLU_CACHE/apt.log)"; }
	[ $REPIN = 1 ] || pkgs=$(served_pins "$pkgs")
	if ! chroot_sh "apt-get -q -y install --allow-downgrades -t $BACKPORTS $pkgs" \
		>>"$KLU_CACHE/apt.log" 2>&1; then
		tail -n 20 "$KLU_CACHE/apt.log" >&2
		if grep -q -E "Version '.*' for '.*' was not found|has no installation candidate" "$KLU_CACHE/apt.log"; then
			die "a pinned package version is no longer served by the Debian archive.
Run 'make buildroot-repin' to take the versions the archive serves now, check that
'make test' still passes, and commit tooling/buildroot.packages (see README.md)."
		fi
		die "apt-get install failed (log: $KLU_CACHE/apt.log)"
	fi

	if [ $REPIN = 1 ]; then
		log "pinning the installed versions in $PACKAGES_FILE"
		local tmp p v
		tmp=$(mktemp)
		sed -n '/^#/p' "$PACKAGES_FILE" >"$tmp"
		for p in $TOOLCHAIN; do
			v=$(chroot_sh "dpkg-query -W -f='\${Version}' $p")
			echo "$p=$v" >>"$tmp"
		done
		mv "$tmp" "$PACKAGES_FILE"
	fi

	local bad
	bad=$(toolchain_coherent) || die "the build root's toolchain sets are mixed after the install: $bad
(log: $KLU_CACHE/apt.log); run 'make buildroot-repin'"

	# A minimal root has no poweroff; virtme-init panics at shutdown without it.
	[ -e "$ROOT/sbin/poweroff" ] || ln -sf /bin/busybox "$ROOT/sbin/poweroff"
	list_hash >"$STAMP"
	info "build root ready: $ROOT"
}

main "$@"
