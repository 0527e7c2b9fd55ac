# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the guest runners (run-tests.sh under virtme-ng, vmx-init.sh
# under bochs): run one test and judge its result the same way on both
# platforms.  The runner defines LOGS (a directory) and result(), which
# records one "ok|not ok <name> # ..." line.

t() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$(t)" 'BEGIN { printf "%.1f", b - a }'; }

# run NAME LIMIT CMD...: run one test with a time limit, record its result.
# A kselftest-harness test that skipped cases exits 0; its "# Totals:" line
# says so, and such a test is reported as a skip (which the host judges).
# With LIVE=1 the output goes to the console as the test runs (bochs: a test
# that hangs the machine shows how far it got), else its tail afterwards.
run() {
	local name=$1 limit=$2 t0 rc log totals skip pass
	shift 2
	log=$LOGS/${name//\//_}.log
	echo "# --- $name" >&2
	t0=$(t)
	if [ "${LIVE:-0}" = 1 ]; then
		timeout -k 5 "$limit" "$@" 2>&1 | tee "$log" | while IFS= read -r l; do echo "# $l"; done >&2
		rc=${PIPESTATUS[0]}
	else
		timeout -k 5 "$limit" "$@" >"$log" 2>&1
		rc=$?
		sed 's/^/# /' "$log" | tail -n 40 >&2
	fi
	totals=$(grep -m1 '^# Totals:' "$log" || true)
	skip=$(sed -n 's/.* skip:\([0-9]*\).*/\1/p' <<<"$totals")
	pass=$(sed -n 's/.*Totals: pass:\([0-9]*\).*/\1/p' <<<"$totals")
	if [ $rc = 0 ] && [ -n "$totals" ] && { [ "${skip:-0}" != 0 ] || [ "${pass:-0}" = 0 ]; }; then
		result "ok $name # SKIP $skip of its cases skipped: $(grep -m1 -E 'SKIP' "$log" | tr -d '#\n' | cut -c1-100)"
	elif [ $rc = 0 ]; then
		result "ok $name # $(dt "$t0")s"
	elif [ $rc = 4 ]; then
		result "ok $name # SKIP $(grep -m1 -i -E 'skip|requirement' "$log" | tr -d '#\n' | cut -c1-120)"
	elif [ $rc = 124 ] || [ $rc = 137 ]; then
		result "not ok $name # timed out after ${limit}s"
	else
		result "not ok $name # exit $rc after $(dt "$t0")s"
	fi
}

# check NAME COMMAND...: a platform fact the suite depends on.
check() {
	local name=$1
	shift
	if "$@" >/dev/null 2>&1; then
		result "ok $name"
	else
		result "not ok $name # the guest platform lacks it: every test below would skip"
	fi
}

# The tests of group $1 in list $LIST that match $FILTER, as "path limit".
tests() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$LIST" | awk -v g="$1" '$1 == g { print $2, $3 }' |
		while read -r path limit; do
			[ -z "$FILTER" ] || [[ "$path" == *$FILTER* ]] && echo "$path $limit"
		done
}

# The groups of the list in order of first appearance, but "kexec", which
# runs around the kexec.
groups() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$LIST" | awk '$1 != "kexec" && !seen[$1]++ { print $1 }'
}
