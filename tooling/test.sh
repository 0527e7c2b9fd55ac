#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make test`: build what is needed, boot the patched kernel in virtme-ng,
# run tooling/tests.list inside it (with a real kexec for the two-stage
# tests) and KUnit (parsed from the boot's dmesg), print TAP for every test
# and a last line "N passed, N failed, N skipped".  Exits non-zero on any
# failure.  Failures include: a test that never reported (guest crash or
# hang), a skip the list does not allow (this platform must run the test), a
# guest that hit the watchdog, and a WARNING/BUG/Oops in the kernel log.
#
# KLU_FILTER=<substring> runs only the listed tests whose path contains it.
#
# --vmx (`make test-vmx`): the same kernel on the second platform, an Intel
# CPU with VMX emulated by bochs (tooling/bochs.py), running
# tooling/tests-vmx.list.  KUnit runs only on the first platform.

. "$(dirname "$0")/lib.sh"
need_host_cmd python3 python3

PLATFORM=svm
LIST=$TOOLING/tests.list
CONSOLE=$KLU_CACHE/test-console.log
GUEST_CHECKS="guest:/dev/kvm guest:kvm_amd-nested-npt guest:/dev/liveupdate"
if [ "${1:-}" = --vmx ]; then
	PLATFORM=vmx
	LIST=$TOOLING/tests-vmx.list
	RESULTS=$KLU_CACHE/results-vmx
	CONSOLE=$RESULTS/console.log
	TIMINGS=$KLU_CACHE/timings-vmx.txt
	GUEST_CHECKS="guest:/dev/kvm guest:kvm_intel-nested-ept guest:/dev/liveupdate"
fi

main() {
	if [ -n "${KLU_FILTER:-}" ] && [ -z "$(expected)" ]; then
		die "KLU_FILTER='$KLU_FILTER' matches no test in tooling/tests.list"
	fi
	case "${KLU_FILTER:-}" in *[!A-Za-z0-9_./-]*) die "KLU_FILTER may only hold [A-Za-z0-9_./-]" ;; esac
	: >"$TIMINGS.new"
	TIMINGS=$TIMINGS.new
	timed "build: kernel" "$TOOLING/build.sh" kernel
	timed "build: selftests" "$TOOLING/build.sh" selftests

	rm -rf "$RESULTS"
	mkdir -p "$RESULTS"
	if [ $PLATFORM = vmx ]; then
		vmx
		report
		return
	fi
	log "booting the patched kernel; tests run inside it"
	local t0
	t0=$(now)
	VM_RC=0
	"$TOOLING/vm.sh" --timeout "${KLU_TEST_TIMEOUT:-1800}" --append "kunit.enable=1" --kernel-console \
		-- "KLU_FILTER=${KLU_FILTER:-} /build/repo/tooling/guest/run-tests.sh" 2>&1 |
		tee "$KLU_CACHE/test-console.log" |
		python3 "$TOOLING/console.py" --kexec "$TIMINGS" >&2 || VM_RC=${PIPESTATUS[0]}
	printf '%-28s %8s s\n' "boot + tests (total)" "$(elapsed "$t0")" >>"$TIMINGS"
	[ -f "$RESULTS/groups" ] && awk '{ printf "%-28s %8s s\n", "tests: " $2, $3 }' "$RESULTS/groups" >>"$TIMINGS"

	report
}

# The second platform: bochs boots an image of the kernel, the listed tests
# and their libraries (tooling/vmx-image.sh); tooling/bochs.py watches each
# test from the host and boots again after one that hangs the machine.
vmx() {
	timed "build: bochs" "$TOOLING/bochs-build.sh"
	timed "build: bochs image" in_root bash "$C_TOP/tooling/vmx-image.sh" \
		"$C_TOP/tooling/tests-vmx.list" "$C_OUT/vmx"
	log "booting the patched kernel in bochs (Intel VMX); tests run inside it"
	local t0
	t0=$(now)
	VM_RC=0
	python3 "$TOOLING/bochs.py" "$OUT/vmx" "$RESULTS/tap" --list "$LIST" \
		--filter "${KLU_FILTER:-}" --append "${KLU_VMX_APPEND:-}" --console "$CONSOLE" \
		--timings "$TIMINGS" || VM_RC=$?
	printf '%-28s %8s s\n' "bochs: boots + tests" "$(elapsed "$t0")" >>"$TIMINGS"
}

# KUnit: every suite that ran at boot, as parsed by kunit.py from dmesg.
kunit_results() {
	[ -f "$RESULTS/dmesg.boot1" ] || { echo "not ok kunit # no dmesg from the first boot"; return 0; }
	# Only KTAP's lines: a driver's message that lands between two of
	# them (seen: "input: ImExPS/2 ..." after "KTAP version 1") makes
	# kunit.py lose count of a suite's tests.
	grep -a -E '^\[ *[0-9]+\.[0-9]+\] +(KTAP version|TAP version|[0-9]+\.\.[0-9]+|ok |not ok |# )' \
		"$RESULTS/dmesg.boot1" >"$RESULTS/dmesg.ktap" || true
	in_root python3 "$C_SRC/tools/testing/kunit/kunit.py" parse --json=/build/results/kunit.json \
		/build/results/dmesg.ktap >"$RESULTS/kunit.txt" 2>&1 || true
	python3 - "$RESULTS/kunit.json" <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"not ok kunit # no parsable KUnit output ({e})")
    sys.exit(0)

def failed_cases(group, prefix=""):
    """Names of failed cases, walking nested (parameterised) groups."""
    out = [prefix + c["name"] for c in group.get("test_cases", [])
           if c.get("status") not in ("PASS", "SKIP")]
    for g in group.get("sub_groups", []):
        m = g.get("misc", {})
        if m.get("failed") or m.get("crashed") or m.get("errors"):
            out += failed_cases(g, prefix + g["name"] + ".") or [prefix + g["name"]]
    return out

top = data.get("misc", {})
groups = data.get("sub_groups", [])
if not groups:
    print("not ok kunit # no KUnit suite ran")
for g in groups:
    m = g.get("misc", {})
    bad = failed_cases(g)
    if bad or m.get("failed") or m.get("crashed") or m.get("errors"):
        print(f"not ok kunit:{g['name']} # failed: {', '.join(bad[:5]) or m}")
    elif m.get("tests", 0) and m.get("skipped", 0) == m.get("tests", 0):
        print(f"ok kunit:{g['name']} # SKIP all {m['tests']} cases skipped")
    else:
        print(f"ok kunit:{g['name']} # {m.get('passed', 0)} cases passed")
# The project's own suites must run: a suite that stopped being built would
# otherwise leave the run green.
names = {g["name"] for g in groups}
for r in ("kvm_luo_format", "rust_doctests_kernel"):
    if r not in names:
        print(f"not ok kunit:{r} # the project's suite did not run (not built?)")
# Suites that failed to start or never reported show only in the totals.
for c in data.get("test_cases", []):
    if c.get("status") not in ("PASS", "SKIP"):
        print(f"not ok kunit:{c['name']} # suite failed to run")
if top.get("crashed") or top.get("errors"):
    print(f"not ok kunit:totals # crashed {top.get('crashed')}, errors {top.get('errors')} (missing or broken suites)")
PY
}

# What tests.list says the guest must report, as "name skip-ok" lines.
expected() {
	local f=${KLU_FILTER:-}
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$LIST" |
		awk -v f="$f" 'f == "" || index($2, f) {
			ok = ($4 == "skip-ok") ? 1 : 0
			if ($1 == "kexec") { print $2 ":stage1", ok; print $2 ":stage2", ok } else print $2, ok }'
}

# Kernel warnings anywhere in a boot's log fail the run.
KERNEL_BAD='WARNING:|BUG:|Oops|general protection fault|Kernel panic|Call Trace'
kernel_log() {
	local f first
	for f in "$RESULTS"/dmesg.end1 "$RESULTS"/dmesg.end2; do
		[ -f "$f" ] || continue
		first=$(grep -m1 -E "$KERNEL_BAD" "$f" || true)
		if [ -n "$first" ]; then
			echo "not ok kernel-log:$(basename "$f") # $(echo "$first" | cut -c1-150)"
		else
			echo "ok kernel-log:$(basename "$f")"
		fi
	done
	# dmesg.end1 is taken before kexec -e: what the old kernel prints while
	# it freezes, shuts down and jumps, and what either kernel prints after
	# its last dmesg, reaches only the console (vm.sh --kernel-console:
	# warnings and worse).  Its kernel lines carry a timestamp.
	f=$CONSOLE
	if [ -f "$f" ]; then
		first=$(tr -d '\r' <"$f" | grep -a -m1 -E "^\[ *[0-9]+\.[0-9]+\] .*($KERNEL_BAD)" || true)
		if [ -n "$first" ]; then
			echo "not ok kernel-log:console # $(echo "$first" | cut -c1-150)"
		else
			echo "ok kernel-log:console"
		fi
	fi
}

report() {
	local tap=$RESULTS/all.tap
	local -A skipok=()
	local name ok
	while read -r name ok; do skipok[$name]=$ok; done < <(expected)
	{
		[ "$VM_RC" = 0 ] || echo "not ok guest # the VM exited with status $VM_RC$([ "$VM_RC" = 124 ] && echo ': watchdog')"
		[ $PLATFORM = vmx ] || kunit_results
		cat "$RESULTS/tap" 2>/dev/null || true
		if [ -z "${KLU_FILTER:-}" ]; then
			for name in $GUEST_CHECKS; do
				grep -q -E "^(ok|not ok) $name( |$)" "$RESULTS/tap" 2>/dev/null ||
					echo "not ok $name # no result: the guest never ran the suite"
			done
		fi
		kernel_log
		# A listed test with no result line never ran to completion.
		expected | while read -r name ok; do
			grep -q -E "^(ok|not ok) $name( |$)" "$RESULTS/tap" 2>/dev/null ||
				echo "not ok $name # no result: the guest crashed, hung or never ran it (see $CONSOLE)"
		done
	} >"$tap.tmp"
	local n=0 pass=0 fail=0 skip=0 line test
	echo "TAP version 13"
	echo "1..$(wc -l <"$tap.tmp")"
	while IFS= read -r line; do
		n=$((n + 1))
		case "$line" in
		"not ok "*)
			fail=$((fail + 1)); echo "not ok $n ${line#not ok }" ;;
		"ok "*"# SKIP"*)
			test=${line#ok }
			test=${test%% *}
			if [ "${skipok[$test]:-0}" = 1 ] || [ "${test#kunit:}" != "$test" ]; then
				skip=$((skip + 1)); echo "ok $n ${line#ok }"
			else
				# The list says this platform runs it: a skip hides a broken setup.
				fail=$((fail + 1)); echo "not ok $n ${line#ok } (a skip is a failure here; mark it skip-ok in tests.list if it may skip)"
			fi ;;
		"ok "*)
			pass=$((pass + 1)); echo "ok $n ${line#ok }" ;;
		*)
			fail=$((fail + 1)); echo "not ok $n unparsable result line: $line" ;;
		esac
	done <"$tap.tmp"
	mv "$tap.tmp" "$tap"
	echo "# timings (also in $KLU_CACHE/$(basename "${TIMINGS%.new}")):"
	sed 's/^/#   /' "$TIMINGS"
	cp "$TIMINGS" "$KLU_CACHE/$(basename "${TIMINGS%.new}")"
	echo "$pass passed, $fail failed, $skip skipped"
	[ $fail = 0 ] && [ $n -gt 0 ]
}

main "$@"
