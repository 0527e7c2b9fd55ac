#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# /init of the bochs image (tooling/vmx-image.sh, `make test-vmx`).  bochs
# shares no directory with the host: every line for the host goes to the
# second serial port (the kernel's console, on the first, could splice a
# line into the middle of one of ours), with the prefix "@@KLU@@", which
# tooling/bochs.py reads, and to the console for whoever reads that:
#   begin STAGE             the runner started
#   start NAME LIMIT        a test started (the host's watchdog arms)
#   ok|not ok NAME # ...    a result, judged as under virtme-ng (run-lib.sh)
#   done                    nothing more will run; the machine powers off
# Stage 1 runs every group of the list but "kexec", then the first stage of
# the "kexec" group and a real kexec into the same kernel, with this
# initramfs packed again from the running root; stage 2 (klu.stage=2 on the
# command line) runs their second stage.  klu.from=N skips the first N tests
# of stage 1: the host restarts the machine that way after a hang.
set -u
export PATH=/bin:/sbin
LIST=/etc/tests.list
LOGS=/run/logs
TAP=/run/tap
SELFTESTS=/t
LIVE=1

/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/shm /dev/pts "$LOGS"
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
ln -sf /proc/self/fd /dev/fd
cd /tmp || exit 1

arg() { tr " " "\n" </proc/cmdline | sed -n "s/^$1=//p"; }
STAGE=$(arg klu.stage)
FROM=$(arg klu.from)
FILTER=$(arg klu.filter)
STAGE=${STAGE:-1}
FROM=${FROM:-0}

# Open once, raw and fast: a port closed after each line may drop what it
# still had to send.
stty -F /dev/ttyS1 115200 raw -echo
exec 9>/dev/ttyS1
say() {
	echo "@@KLU@@ $*" >&9
	echo "@@KLU@@ $*"
}
result() {
	echo "$1" >>"$TAP"
	say "$1"
}
# shellcheck source=tooling/guest/run-lib.sh
. /etc/run-lib.sh

finish() {
	sync
	say done
	# What the port still holds goes out before the power does.
	sleep 1
	poweroff -f
}

# One test, announced so that the host's watchdog covers it.
one() {
	local name=$1 limit=$2
	shift 2
	say start "$name" "$limit"
	run "$name" "$limit" "$@"
}

stage1() {
	local i=0 g path limit cmdline
	say begin 1
	modprobe kvm-intel || result "not ok guest:modprobe-kvm-intel # the module did not load"
	if [ "$FROM" = 0 ]; then
		check guest:/dev/kvm test -c /dev/kvm
		check guest:kvm_intel-nested-ept sh -c 'P=/sys/module/kvm_intel/parameters;
			grep -q -x -E "1|Y" $P/nested && grep -q -x Y $P/ept'
		check guest:/dev/liveupdate test -c /dev/liveupdate
	fi
	for g in $(groups); do
		while read -r path limit; do
			i=$((i + 1))
			[ $i -gt "$FROM" ] || continue
			one "$path" "$limit" "$SELFTESTS/$path"
		done < <(tests "$g")
	done
	[ "$(tests kexec | wc -l)" != 0 ] || finish

	# The next kernel boots from this root, packed again (the host shares
	# nothing that survives the kexec); its mounts are left out.
	cmdline="$(sed -e 's/klu\.[a-z]*=[^ ]*//g' /proc/cmdline) klu.stage=2${FILTER:+ klu.filter=$FILTER}"
	(cd / && find . -xdev | cpio -o -H newc 2>/dev/null) >/tmp/stage2.cpio
	if ! kexec -l -s --initrd=/tmp/stage2.cpio --command-line="$cmdline" /boot/bzImage; then
		result "not ok kexec-load # kexec -l failed"
		finish
	fi
	while read -r path limit; do
		i=$((i + 1))
		[ $i -gt "$FROM" ] || continue
		one "$path:stage1" "$limit" "$SELFTESTS/$path" -s 1
	done < <(tests kexec)
	sync
	say kexec
	kexec -e -x
	result "not ok kexec-exec # kexec -e returned"
	finish
}

stage2() {
	local path limit
	say begin 2
	while read -r path limit; do
		[[ $path == kvm/* && $path != */vm_preserve_test ]] && modprobe kvm-intel
		one "$path:stage2" "$limit" "$SELFTESTS/$path" -s 2
	done < <(tests kexec)
	finish
}

if [ "$STAGE" = 2 ]; then
	stage2
else
	stage1
fi
