#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: build, boot the patched kernel and run the project's
# benchmarks inside it.  Each benchmark measures its alternatives side by side
# in one run and reports ratios; the table is printed and the numbers are
# written to $KLU_CACHE/bench/ (one file a benchmark, plus the whole log).

. "$(dirname "$0")/lib.sh"

"$TOOLING/build.sh" kernel
"$TOOLING/build.sh" selftests

BENCH=$KLU_CACHE/bench
rm -rf "$RESULTS" "$BENCH"
mkdir -p "$RESULTS" "$BENCH"
log "booting the patched kernel for the benchmarks (QEMU TCG: absolute rates are slow, ratios are what counts)"
"$TOOLING/vm.sh" --timeout 900 -- /build/repo/tooling/guest/bench.sh 2>&1 | tee "$BENCH/bench.log" |
	grep -E -v '^\[ *[0-9]+\.[0-9]+\]'
cp "$RESULTS"/bench-*.txt "$BENCH"/ 2>/dev/null || true
status=$(cat "$RESULTS/bench-status" 2>/dev/null || echo "no status")
[ "$status" = 0 ] || die "a benchmark failed (status: $status; log: $BENCH/bench.log)"
info "numbers: $(ls "$BENCH"/bench-*.txt | tr '\n' ' ')"
