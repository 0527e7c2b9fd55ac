#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`, inside the kernel under test.  The live update benchmark has
# two stages around a real kexec into the same kernel: virtme-ng's command
# line survives the kexec, so this script runs again, and the mark file on
# the shared results directory says it is stage 2.

set -u
RESULTS=/build/results
BIN=/build/selftests
MARK=$RESULTS/bench-stage
KERNEL=/build/out/arch/x86/boot/bzImage
export PATH=$PATH:/usr/sbin:/sbin
cd /tmp || exit 1

# KVM is built as modules, which vm.sh keeps udev from loading.
modprobe kvm-amd || echo "modprobe kvm-amd failed" >&2

if [ "$(cat "$MARK" 2>/dev/null)" = 2 ]; then
	rm -f "$MARK"
	status=$(cat "$RESULTS/bench-status.1" 2>/dev/null || echo 1)
	echo "== KVM live update across kexec, stage 2 (kvm/x86/vm_preserve_perf_test)"
	echo "kexec -e to this script: $(awk -v s="$(cat "$RESULTS/bench-kexec-start")" \
		-v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')"
	"$BIN/kvm/x86/vm_preserve_perf_test" -s 2 -o "$RESULTS/bench-live-update.txt" || status=$?
	echo
	echo "== A guest in the caretaker's gap runtime through the same kexec, stage 2 (kvm/x86/caretaker_test -s 2)"
	# Its figures ("key value" lines): the runtime's tick, the guest's
	# work and its timer interrupts through the kexec (old kernel's reboot
	# notifier to the new KVM's init) against a quiet second after it; the
	# guest's longest gap from
	# the end of stage 1 to the park, against a quiet second in stage 1;
	# the adoption (the vCPU's retrieve: park, take, set; the VM's
	# retrieve to the vCPU running); the adopted guest's rounds and timer
	# ticks, and its longest gap, which then spans the adoption too.
	"$BIN/kvm/x86/caretaker_test" -s 2 -o "$RESULTS/bench-gap.txt" || status=$?
	echo "$status" >"$RESULTS/bench-status"
	exit 0
fi

status=0
echo "== KVM_RUN_ASYNC against KVM_RUN (kvm/x86/async_run_perf_test)"
"$BIN/kvm/x86/async_run_perf_test" -r 7 -w 500 -o "$RESULTS/bench-async-run.txt" || status=$?

echo
echo "== vCPU caretaker against KVM_RUN_ASYNC on the same isolated CPU (kvm/x86/caretaker_perf_test)"
"$BIN/kvm/x86/caretaker_perf_test" -m caretaker -r 5 -w 500 -o "$RESULTS/bench-caretaker.txt" || status=$?

echo
echo "== VMM swap under a compute-bound guest: handover against stop-save-restore (kvm/x86/vm_handover_perf_test)"
"$BIN/kvm/x86/vm_handover_perf_test" -r 9 -w 1000 -o "$RESULTS/bench-vmm-swap.txt" || status=$?

echo
echo "== KVM live update across kexec, stage 1 (kvm/x86/vm_preserve_perf_test)"
if ! "$BIN/kvm/x86/vm_preserve_perf_test" -s 1; then
	echo 1 >"$RESULTS/bench-status"
	exit 0
fi
echo
echo "== A guest in the caretaker's gap runtime through the same kexec, stage 1 (kvm/x86/caretaker_test -s 1)"
# A child keeps the VM, and this output file, until the kexec.
"$BIN/kvm/x86/caretaker_test" -s 1 >"$RESULTS/bench-gap.1.log" 2>&1 || status=$?
cat "$RESULTS/bench-gap.1.log"
echo "$status" >"$RESULTS/bench-status.1"
echo 2 >"$MARK"
date +%s.%N >"$RESULTS/bench-kexec-start"
sync
kexec -l -s --command-line="$(/build/repo/tooling/guest/next-cmdline.sh)" "$KERNEL" || { rm -f "$MARK"; echo 1 >"$RESULTS/bench-status"; exit 0; }
kexec -e -x
rm -f "$MARK"
echo "kexec -e returned"
echo 1 >"$RESULTS/bench-status"
