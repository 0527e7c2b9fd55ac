#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`, inside the kernel under test.

set -u
RESULTS=/build/results
BIN=/build/selftests
cd /tmp || exit 1
status=0

echo "== KVM_RUN_ASYNC against KVM_RUN (kvm/x86/async_run_perf_test)"
"$BIN/kvm/x86/async_run_perf_test" -r 7 -w 500 -o "$RESULTS/bench-async-run.txt" || status=$?

echo
echo "== VMM swap under a compute-bound guest: handover against stop-save-restore (kvm/x86/vm_handover_perf_test)"
"$BIN/kvm/x86/vm_handover_perf_test" -r 9 -w 1000 -o "$RESULTS/bench-vmm-swap.txt" || status=$?

echo "$status" >"$RESULTS/bench-status"
