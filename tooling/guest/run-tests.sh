#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the kernel under test (virtme-ng guest).  Stage 1: every test
# of tooling/tests.list, then the first stage of the "kexec" group, then a
# real kexec into the same kernel.  virtme-ng's command line survives the
# kexec, so this script runs again: the marker file on the shared results
# directory says it is stage 2, which runs the second stage of the "kexec"
# group and powers off.
#
# Results go to $RESULTS/tap as "ok|not ok <name> # <secs>s [SKIP reason]".

set -u
RESULTS=/build/results
SELFTESTS=/build/selftests
LIST=/build/repo/tooling/tests.list
KERNEL=/build/out/arch/x86/boot/bzImage
MARK=$RESULTS/stage
TAP=$RESULTS/tap
FILTER=${KLU_FILTER:-}

cd /tmp || exit 1
export PATH=$PATH:/usr/sbin:/sbin

LOGS=$RESULTS/logs
result() { echo "$1" | tee -a "$TAP"; }
# shellcheck source=tooling/guest/run-lib.sh
. /build/repo/tooling/guest/run-lib.sh

group_time() { echo "group $1 $(dt "$2")" >>"$RESULTS/groups"; }

# KVM is built as modules (as distributions build it), which vm.sh keeps
# udev from loading: stage 1 loads kvm-amd; stage 2 leaves it to the first VM
# retrieved from a live update session (vm_preserve_test checks that it does),
# and loads it only for a KVM test that would come before that.
kvm_modules() {
	modprobe kvm-amd || echo "not ok guest:modprobe-kvm-amd # the module did not load" | tee -a "$TAP"
}

stage1() {
	mkdir -p "$RESULTS/logs"
	: >"$TAP"
	: >"$RESULTS/groups"
	dmesg >"$RESULTS/dmesg.boot1"
	kvm_modules
	check guest:/dev/kvm test -c /dev/kvm
	check guest:kvm_amd-nested-npt sh -c 'P=/sys/module/kvm_amd/parameters;
		grep -q -x -E "1|Y" $P/nested && grep -q -x Y $P/npt'
	check guest:/dev/liveupdate test -c /dev/liveupdate

	local t0 g
	for g in $(groups); do
		t0=$(t)
		while read -r path limit; do
			run "$path" "$limit" "$SELFTESTS/$path"
		done < <(tests $g)
		group_time $g "$t0"
	done

	if [ "$(tests kexec | wc -l)" = 0 ]; then
		dmesg >"$RESULTS/dmesg.end1"
		return 0
	fi

	# Load the next kernel before stage 1: the tests check that a kexec
	# with a preserved vCPU still running fails and loses nothing.  The
	# mark makes any kexec from here on come back as stage 2.
	local cmdline
	cmdline=$(/build/repo/tooling/guest/next-cmdline.sh)
	echo "# kexec: loading $KERNEL" >&2
	if ! kexec -l -s --command-line="$cmdline" "$KERNEL"; then
		echo "not ok kexec-load # kexec -l failed" | tee -a "$TAP"
		return 1
	fi
	echo 2 >"$MARK"
	sync

	t0=$(t)
	local n=0
	while read -r path limit; do
		# Stage 1 leaves a daemon holding the preserved sessions.
		run "$path:stage1" "$limit" "$SELFTESTS/$path" -s 1 && n=$((n + 1))
	done < <(tests kexec)
	group_time kexec-stage1 "$t0"
	dmesg >"$RESULTS/dmesg.end1"

	date +%s.%N >"$RESULTS/kexec-start"
	sync
	echo "# kexec: jumping to the new kernel" >&2
	kexec -e -x
	echo "not ok kexec-exec # kexec -e returned" | tee -a "$TAP"
	rm -f "$MARK"
	return 1
}

stage2() {
	rm -f "$MARK"
	dmesg >"$RESULTS/dmesg.boot2"
	echo "# kexec: stage 2 running" >&2
	local t0
	t0=$(t)
	while read -r path limit; do
		# KVM stays unloaded until vm_preserve_test's first retrieve
		# loads it; a KVM test that may come first loads it itself.
		[[ $path == kvm/* && $path != */vm_preserve_test ]] && kvm_modules
		run "$path:stage2" "$limit" "$SELFTESTS/$path" -s 2
	done < <(tests kexec)
	group_time kexec-stage2 "$t0"
	dmesg >"$RESULTS/dmesg.end2"
}

if [ -f "$MARK" ] && [ "$(cat "$MARK")" = 2 ]; then
	stage2
else
	stage1
fi
sync
# Results are judged by the host from $TAP; the exit status only says that
# the runner itself completed.
exit 0
