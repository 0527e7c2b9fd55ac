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
"$TOOLING/build.sh" base_kernel

BENCH=$KLU_CACHE/bench
rm -rf "$RESULTS" "$BENCH"
mkdir -p "$RESULTS" "$BENCH"

# Exit round trips under KVM_RUN, on the base kernel and on the patched one,
# with the same binary and the same boot options, alternating boots so that
# a drift of the machine falls on both.
for pass in 1 2 3; do
	for k in base patched; do
		log "booting the $k kernel ($pass/3): exit round trips (kvm/x86/caretaker_perf_test -m exits)"
		obj=$OUT
		[ $k = base ] && obj=$KLU_CACHE/out-base
		KLU_OBJ=$obj "$TOOLING/vm.sh" --timeout 300 -- \
			"modprobe kvm-amd && /build/selftests/kvm/x86/caretaker_perf_test -m exits -r 5 -w 400 -o /build/results/exits-$k-$pass.txt" \
			>>"$BENCH/bench-exits.log" 2>&1 ||
			die "the exit benchmark failed on the $k kernel (log: $BENCH/bench-exits.log)"
	done
done
python3 - "$RESULTS" >"$BENCH/bench-exits.txt" <<'PY'
import sys, statistics, glob
r = sys.argv[1]
def read(k):
    d = {}
    for f in sorted(glob.glob(f"{r}/exits-{k}-*.txt")):
        for line in open(f):
            if line.startswith("#") or not line.strip():
                continue
            m, v = line.split()
            d.setdefault(m, []).append(float(v))
    return d
def wedged(k):
    n = 0
    for f in glob.glob(f"{r}/exits-{k}-*.txt"):
        for line in open(f):
            if line.startswith("# wedged_vms "):
                n += int(line.split()[2])
    return n
b, p = read("base"), read("patched")
print("# metric base patched ratio (per second; median of the boots' medians)")
for m in b:
    x, y = statistics.median(b[m]), statistics.median(p[m])
    print(f"{m} {x:.0f} {y:.0f} {y / x:.4f}")
# VMs whose vCPU QEMU's SVM wedged (see caretaker_perf_test.c); their
# rounds were run again in a new VM.
print(f"# wedged_vms {wedged('base')} {wedged('patched')}")
PY
printf '\n%-28s %12s %12s %8s\n' "KVM_RUN, base vs patched" base patched ratio
awk '!/^#/ { printf "%-28s %12s %12s %8s\n", $1, $2, $3, $4 }' "$BENCH/bench-exits.txt"
awk '$2 == "wedged_vms" { printf "%-28s %12s %12s  (replaced; rounds run again)\n", "VMs wedged by QEMU", $3, $4 }' "$BENCH/bench-exits.txt"
echo
log "booting the patched kernel for the benchmarks (QEMU TCG: absolute rates are slow, ratios are what counts)"
"$TOOLING/vm.sh" --timeout 900 -- /build/repo/tooling/guest/bench.sh 2>&1 | tee "$BENCH/bench.log" |
	grep -E -v '^\[ *[0-9]+\.[0-9]+\]'
cp "$RESULTS"/bench-*.txt "$BENCH"/ 2>/dev/null || true
status=$(cat "$RESULTS/bench-status" 2>/dev/null || echo "no status")
[ "$status" = 0 ] || die "a benchmark failed (status: $status; log: $BENCH/bench.log)"
info "numbers: $(ls "$BENCH"/bench-*.txt | tr '\n' ' ')"
