# SPDX-License-Identifier: GPL-2.0
# Common helpers for the project's tooling; sourced, never run.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLING=$TOP/tooling

# Everything large lives outside the clone so that later runs (and CI on the
# same machine) reuse it: the build root, the pristine base, the assembled
# source tree, the object tree and ccache.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
KLU_CACHE=${KLU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-live-update}
ROOT=$KLU_CACHE/root
BASE_DIR=$KLU_CACHE/base
# KLU_SRC_TREE and KLU_OBJ are set only by build.sh base_kernel (the
# pristine base, for the benchmarks) and by bench.sh to boot that build.
SRC=${KLU_SRC_TREE:-$KLU_CACHE/src}
OUT=${KLU_OBJ:-$KLU_CACHE/out}
SELFTESTS_OUT=$KLU_CACHE/selftests
CCACHE_DIR_HOST=$KLU_CACHE/ccache
RESULTS=$KLU_CACHE/results

# Paths as seen from inside the build root.
C_SRC=/build/src
C_OUT=/build/out
C_SELFTESTS=/build/selftests
C_TOP=/build/repo

# shellcheck source=tooling/base.conf
. "$TOOLING/base.conf"
# The unpacked pristine base, one directory per version.
PRISTINE=$BASE_DIR/$BASE_PACKAGE-$BASE_VERSION

JOBS=${KLU_JOBS:-$(nproc)}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root (debootstrap, chroot and bind mounts); run it as root or with sudo"
}

need_host_cmd() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' is not installed on this host; install it with: apt-get install $2"
}

# Like need_host_cmd, but installs the package itself where it can (root on
# a Debian-like host), as a fresh CI machine needs.
host_install() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "installing $2 on this host (needed for $1)"
		{ apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install "$2"; } \
			>"${KLU_CACHE}/host-apt.log" 2>&1 ||
			{ tail -n 20 "$KLU_CACHE/host-apt.log" >&2; die "could not install $2; install it by hand: apt-get install $2"; }
	fi
	need_host_cmd "$1" "$2"
}

# Seconds since the epoch with fractions, for step timings.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Record "step seconds" in the timings file of this run.
TIMINGS=$KLU_CACHE/timings.txt
timed() {
	local name=$1 t0 rc=0
	shift
	t0=$(now)
	"$@" || rc=$?
	mkdir -p "$(dirname "$TIMINGS")"
	printf '%-28s %8s s\n' "$name" "$(elapsed "$t0")" >>"$TIMINGS"
	info "$name: $(elapsed "$t0") s"
	return $rc
}

# Run a command inside the build root, in a private mount namespace so that
# the bind mounts vanish with the command and never outlive it.
in_root() {
	[ -x "$ROOT/usr/bin/make" ] || die "the build root is missing; run: make buildroot"
	mkdir -p "$SRC" "$OUT" "$SELFTESTS_OUT" "$CCACHE_DIR_HOST" "$RESULTS"
	unshare --mount --propagation private -- /bin/bash -c '
		set -e
		r=$1; shift
		for d in proc sys dev dev/pts; do mount --rbind /$d "$r/$d"; done
		mkdir -p "$r/build/src" "$r/build/out" "$r/build/selftests" \
			"$r/build/ccache" "$r/build/repo" "$r/build/results"
		mount --bind "$KLU_SRC" "$r/build/src"
		mount --bind "$KLU_OUT" "$r/build/out"
		mount --bind "$KLU_SELFTESTS" "$r/build/selftests"
		mount --bind "$KLU_CCACHE" "$r/build/ccache"
		mount --bind "$KLU_TOP" "$r/build/repo"
		mount --bind "$KLU_RESULTS" "$r/build/results"
		mount -t tmpfs tmpfs "$r/tmp"
		exec chroot "$r" /usr/bin/env -i \
			HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
			PATH=/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			CCACHE_DIR=/build/ccache CCACHE_MAXSIZE=8G CCACHE_COMPILERCHECK=content \
			CCACHE_BASEDIR=/build "$@"
	' in_root "$ROOT" "$@"
}
export KLU_SRC=$SRC KLU_OUT=$OUT KLU_SELFTESTS=$SELFTESTS_OUT KLU_CCACHE=$CCACHE_DIR_HOST \
	KLU_TOP=$TOP KLU_RESULTS=$RESULTS
