#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the built kernel in virtme-ng under QEMU TCG with SVM emulated
# (-cpu max: svm, npt, vgif; see README.md) and run a command in it.  The
# guest's root file system is the build root, so /build/{out,selftests,repo}
# are visible in the guest and /build/results is writable.  A watchdog kills
# the whole QEMU process group after --timeout seconds: a hung guest is a
# failure, never a hang.
#
# A boot that never reaches userspace within KLU_BOOT_LIMIT seconds (300;
# the guest's command first creates a file in the results directory, which
# says it does) is killed and started once more: about one boot in fifteen here hangs
# early in QEMU TCG (right after "tsc: Unable to calibrate against PIT",
# QEMU spinning), before anything of the command ran.
#
# usage: vm.sh [--timeout S] [--append ARGS] [--cpus N] [--memory M]
#              [--kernel-console] -- CMD
#
# --kernel-console: the kernel's own console (ttyS0) joins the output, at
# loglevel 5 (warnings and worse), so that what a kernel prints where no
# dmesg can be taken any more (freeze, shutdown, kexec) is seen too.
# KLU_CPUS, KLU_MEMORY and KLU_QEMU_CPU change the guest's defaults.

. "$(dirname "$0")/lib.sh"

LIMIT=1800
APPEND=""
VERBOSE=""
# Five CPUs, three of them isolated from the scheduler (isolcpus=domain) for
# the vCPU caretaker's tests (two caretakers, and a spare for the kexec
# stages' third gap runtime); fastpath_insn_len lets KVM serve fastpath
# exits on QEMU's SVM, which has no Next RIP Save (see caretaker.rst).
CPUS=${KLU_CPUS:-5}
CARETAKER_APPEND="isolcpus=domain,2-4 kvm_amd.fastpath_insn_len=1"
# KVM is built as modules (virtme-ng installs them for the guest): udev
# would load kvm-amd at boot, and the guest scripts load it themselves, or
# let a VM retrieved from a live update session load it (modprobe by name
# ignores the blacklist).
MODULES_APPEND="modprobe.blacklist=kvm_amd,kvm_intel"
MEMORY=${KLU_MEMORY:-3G}
# -cpu max is the model under which every listed test passes (see README.md).
QEMU_CPU=${KLU_QEMU_CPU:-max}
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) LIMIT=$2; shift 2 ;;
	--append) APPEND="$APPEND $2"; shift 2 ;;
	--cpus) CPUS=$2; shift 2 ;;
	--memory) MEMORY=$2; shift 2 ;;
	--kernel-console) VERBOSE=--verbose; APPEND="$APPEND loglevel=5"; shift ;;
	--) shift; break ;;
	*) die "vm.sh: unknown option $1" ;;
	esac
done
[ $# -gt 0 ] || die "usage: vm.sh [options] -- CMD"
[ -f "$OUT/arch/x86/boot/bzImage" ] || die "no kernel built yet; run: make kernel"

# Under QEMU TCG the guest's TSC is the host's.  The kernel under test
# calibrates it early against the HPET, and a busy host (right after a
# kernel build) can make that estimate several hundred ppm off; the
# refined calibration corrects it seconds later, but KVM, built in, took
# the early value for its guests' TSC rate in between.  Its guests then run
# with a TSC rate it cannot give without TSC scaling ("user requested TSC
# rate below hardware speed"), and their TSC-deadline timers never fire in
# that boot (seen: "TSC deadline: 0 ticks").  Give the kernel the host's
# TSC rate, as the host's own kernel measured it (KLU_TSC_KHZ overrides).
TSC_KHZ=${KLU_TSC_KHZ:-$(dmesg 2>/dev/null | sed -n \
	-e 's/.*tsc: Refined TSC clocksource calibration: \([0-9]*\)\.\([0-9]\{3\}\) MHz.*/\1\2/p' \
	-e 's/.*tsc: Detected \([0-9]*\)\.\([0-9]\{3\}\) MHz.*/\1\2/p' | tail -n 1)}
[ -n "$TSC_KHZ" ] && APPEND="$APPEND tsc_early_khz=$TSC_KHZ"

# panic=-1 and -no-reboot turn a guest panic into a QEMU exit.  root= names
# virtme-ng's 9p root tag: without CONFIG_BLOCK the kernel has no fallback
# that finds it, and virtme-ng 1.35 passes no root= for 9p.  log_buf_len
# keeps the whole boot (KUnit's KTAP included) in the kernel log.  nokaslr:
# KHO reserves its scratch areas from memblock early in boot, and with a
# randomized kernel base that failed about once in twenty boots ("KHO: Failed
# to reserve nid 0 scratch buffer"), which disables LUO; a fixed layout makes
# every boot, and every CI run, the same.
# The guest's command first creates a file in the shared results directory,
# which says its userspace runs (its output may reach the host only later).
UP_NAME=.vm-up-$$
UP_MARK=$RESULTS/$UP_NAME
BOOT_LIMIT=${KLU_BOOT_LIMIT:-300}
mkdir -p "$RESULTS"

boot() {
	rm -f "$UP_MARK"
	setsid "$TOOLING/in-root" vng --run "$C_OUT/arch/x86/boot/bzImage" \
		--disable-kvm --cpus "$CPUS" --memory "$MEMORY" \
		--qemu-opts="-cpu $QEMU_CPU -no-reboot" \
		--rwdir /build/results ${VERBOSE:+"$VERBOSE"} \
		--append "root=/dev/root liveupdate=on nokaslr panic=-1 log_buf_len=4M $CARETAKER_APPEND $MODULES_APPEND $APPEND" \
		--exec ": >/build/results/$UP_NAME; $*" </dev/null &
	pid=$!
	deadline=$((SECONDS + LIMIT))
	boot_deadline=$((SECONDS + BOOT_LIMIT))
}

# Whatever ends this script (success, watchdog, Ctrl-C, CI cancelling it),
# nothing of the guest's process group survives it.
reap() { kill -KILL -- -"$pid" 2>/dev/null || true; rm -f "$UP_MARK"; }
trap reap EXIT
trap 'exit 130' INT TERM HUP

rc=
boots=1
boot "$@"
while kill -0 "$pid" 2>/dev/null; do
	if [ ! -e "$UP_MARK" ] && [ $SECONDS -ge $boot_deadline ] && [ $boots = 1 ]; then
		echo "vm.sh: the guest's userspace did not start within ${BOOT_LIMIT}s (a hung boot); booting again" >&2
		kill -KILL -- -"$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		boots=2
		boot "$@"
		continue
	fi
	if [ $SECONDS -ge $deadline ]; then
		echo "vm.sh: the guest did not finish within ${LIMIT}s; killing it" >&2
		kill -TERM -- -"$pid" 2>/dev/null || true
		sleep 5
		rc=124
		break
	fi
	sleep 1
done
if [ -z "$rc" ]; then
	rc=0
	wait "$pid" || rc=$?
fi
exit "$rc"
