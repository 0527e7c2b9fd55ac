#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`, inside the kernel under test.  Lines "STEP <name>" mark the
# steps whose durations the host measures (tooling/run.sh timestamps every
# line as it arrives, so the measurement spans the kexec).

set -u
RESULTS=/build/results
BIN=/build/selftests
MARK=$RESULTS/demo-stage
KERNEL=/build/out/arch/x86/boot/bzImage
export PATH=$PATH:/usr/sbin:/sbin
cd /tmp || exit 1

step() { echo "STEP $*"; }

# KVM is built as modules, which vm.sh keeps udev from loading.
modprobe kvm-amd || echo "modprobe kvm-amd failed" >&2

if [ "$(cat "$MARK" 2>/dev/null)" != 2 ]; then
	step "kernel 1: what runs"
	echo "kernel: $(uname -r), cmdline: $(cat /proc/cmdline | tr ' ' '\n' | grep -E '^(liveupdate|kho)' | tr '\n' ' ')"
	echo "kvm_amd: nested=$(cat /sys/module/kvm_amd/parameters/nested) npt=$(cat /sys/module/kvm_amd/parameters/npt)"
	step "a KVM guest runs in kernel 1"
	"$BIN/demo/kvm-counter" 2 || exit 1
	step "VMM upgrade: the guest counts on while its VMM is replaced by a new process"
	# v2 outlives v1 (its parent): the pipe ends when v2 closes its stdout.
	"$BIN/demo/vmm-upgrade" | tee /tmp/vmm-upgrade.log
	grep -q "stopped the guest" /tmp/vmm-upgrade.log || exit 1
	step "vCPU caretaker: the guest ticks on isolated CPUs, then on the same CPUs taken offline (no Linux, no VMM), then is brought back"
	"$BIN/kvm/x86/caretaker_test" -d || exit 1
	step "live update, kernel 1: a guest counts, stops, and goes into a LUO session (VM, vCPUs, memory)"
	"$BIN/kvm/x86/vm_preserve_perf_test" -s 1 -d || exit 1
	step "gap runtime, kernel 1: a second guest, in a LUO session too, spins on an offlined CPU in the caretaker's gap runtime, which runs it through the kexec"
	# A child keeps that VM, and this output file, until the kexec.
	"$BIN/kvm/x86/caretaker_test" -s 1 >"$RESULTS/demo-gap.1.log" 2>&1 || exit 1
	grep '^#' "$RESULTS/demo-gap.1.log"
	echo 2 >"$MARK"
	step "kexec into kernel 2 (until its userspace runs this script)"
	kexec -l -s --command-line="$(/build/repo/tooling/guest/next-cmdline.sh)" "$KERNEL" || exit 1
	sync
	kexec -e -x
	echo "kexec -e returned"
	exit 1
fi

rm -f "$MARK"
step "kernel 2: what it was handed"
echo "kernel: $(uname -r); what the previous kernel handed over:"
dmesg | grep -v 'ommand line' | grep -i -E 'KHO|liveupdate|luo' | head -n 5 | sed 's/^/  dmesg: /'
step "live update, kernel 2: the same guest, retrieved by a new VMM process, counts on"
"$BIN/kvm/x86/vm_preserve_perf_test" -s 2 -d || exit 1
step "gap runtime, kernel 2: that guest counted on through the kexec; a new VMM retrieves it, which adopts its vCPU from the runtime, and it counts on"
"$BIN/kvm/x86/caretaker_test" -s 2 | grep '^#' || exit 1
step "done"
