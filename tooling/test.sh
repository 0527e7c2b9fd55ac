#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make test`: build what is needed, boot the patched kernel in virtme-ng,
# run tooling/tests.list inside it (with a real kexec for the two-stage
# tests) and KUnit (parsed from the boot's dmesg), print TAP for every test
# and a last line "N passed, N failed, N skipped".  Exits non-zero on any
# failure, including a test that never reported (guest crash or hang).
#
# KLU_FILTER=<substring> runs only the listed tests whose path contains it.

. "$(dirname "$0")/lib.sh"
need_host_cmd python3 python3

main() {
	: >"$TIMINGS.new"
	TIMINGS=$TIMINGS.new
	timed "build: kernel" "$TOOLING/build.sh" kernel
	timed "build: selftests" "$TOOLING/build.sh" selftests

	rm -rf "$RESULTS"
	mkdir -p "$RESULTS"
	log "booting the patched kernel; tests run inside it"
	local t0 rc=0
	t0=$(now)
	"$TOOLING/vm.sh" --timeout "${KLU_TEST_TIMEOUT:-1800}" \
		--append "kunit.enable=1 ${KLU_FILTER:+KLU_FILTER=$KLU_FILTER}" \
		-- "KLU_FILTER='${KLU_FILTER:-}' /build/repo/tooling/guest/run-tests.sh" 2>&1 |
		tee "$KLU_CACHE/test-console.log" | python3 "$TOOLING/console.py" --kexec "$TIMINGS" >&2 || rc=$?
	printf '%-28s %8s s\n' "boot + tests (total)" "$(elapsed "$t0")" >>"$TIMINGS"
	[ -f "$RESULTS/groups" ] && awk '{ printf "%-28s %8s s\n", "tests: " $2, $3 }' "$RESULTS/groups" >>"$TIMINGS"

	report
}

# KUnit: every suite that ran at boot, as parsed by kunit.py from dmesg.
kunit_results() {
	[ -f "$RESULTS/dmesg.boot1" ] || { echo "not ok kunit # no dmesg from the first boot"; return; }
	in_root python3 "$C_SRC/tools/testing/kunit/kunit.py" parse --json=/build/results/kunit.json \
		/build/results/dmesg.boot1 >"$RESULTS/kunit.txt" 2>&1 || true
	python3 - "$RESULTS/kunit.json" <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"not ok kunit # no parsable KUnit output ({e})")
    sys.exit(0)
groups = data.get("sub_groups", [])
if not groups:
    print("not ok kunit # no KUnit suite ran")
for g in groups:
    cases = g.get("test_cases", [])
    st = {c.get("status") for c in cases}
    if g.get("misc", {}).get("crashed") or g.get("misc", {}).get("errors"):
        print(f"not ok kunit:{g['name']} # crashed or unparsable: {g['misc']}")
        continue
    failed = [c["name"] for c in cases if c.get("status") not in ("PASS", "SKIP")]
    npass = sum(c.get("status") == "PASS" for c in cases)
    if failed:
        print(f"not ok kunit:{g['name']} # {len(failed)} of {len(cases)} failed: {', '.join(failed[:5])}")
    elif cases and st == {"SKIP"}:
        print(f"ok kunit:{g['name']} # SKIP all {len(cases)} cases skipped")
    else:
        print(f"ok kunit:{g['name']} # {npass} cases passed")
PY
}

expected() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TOOLING/tests.list" |
		awk -v f="${KLU_FILTER:-}" 'f == "" || index($2, f) {
			if ($1 == "kexec") { print $2 ":stage1"; print $2 ":stage2" } else print $2 }'
}

report() {
	local tap=$RESULTS/all.tap
	{
		kunit_results
		cat "$RESULTS/tap" 2>/dev/null
		# A listed test with no result line never ran to completion.
		expected | while read -r name; do
			grep -q -E "^(ok|not ok) $name( |$)" "$RESULTS/tap" 2>/dev/null ||
				echo "not ok $name # no result: the guest crashed, hung or never ran it (see $KLU_CACHE/test-console.log)"
		done
	} >"$tap.tmp"
	local n=0 pass=0 fail=0 skip=0 line
	echo "TAP version 13"
	echo "1..$(wc -l <"$tap.tmp")"
	while IFS= read -r line; do
		n=$((n + 1))
		case "$line" in
		"not ok "*) fail=$((fail + 1)); echo "not ok $n ${line#not ok }" ;;
		*"# SKIP"*) skip=$((skip + 1)); echo "ok $n ${line#ok }" ;;
		*) pass=$((pass + 1)); echo "ok $n ${line#ok }" ;;
		esac
	done <"$tap.tmp"
	mv "$tap.tmp" "$tap"
	echo "# timings (also in $KLU_CACHE/timings.txt):"
	sed 's/^/#   /' "$TIMINGS"
	cp "$TIMINGS" "$KLU_CACHE/timings.txt"
	echo "$pass passed, $fail failed, $skip skipped"
	[ $fail = 0 ] && [ $n -gt 0 ]
}

main "$@"
