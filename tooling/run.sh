#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: build, boot the patched kernel and show the live-update demo,
# timestamping every line on the host and printing how long each step took.

. "$(dirname "$0")/lib.sh"

"$TOOLING/build.sh" kernel
"$TOOLING/build.sh" selftests
"$TOOLING/build.sh" demo

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "booting the patched kernel for the demo (about a minute under TCG)"
"$TOOLING/vm.sh" --timeout 600 -- /build/repo/tooling/guest/demo.sh 2>&1 |
	awk -v t0="$(now)" '
	function ts() { cmd = "date +%s.%N"; cmd | getline t; close(cmd); return t - t0 }
	/^STEP / {
		t = ts()
		if (name != "") steps[++n] = sprintf("%-48s %7.1f s", name, t - start)
		name = substr($0, 6); start = t
		printf "\n[%6.1fs] == %s ==\n", t, name; fflush(); next
	}
	{ printf "[%6.1fs]   %s\n", ts(), $0; fflush() }
	END {
		if (name != "") steps[++n] = sprintf("%-48s %7.1f s", name, ts() - start)
		print "\nWhat happened, and how long each step took (host wall clock, TCG):"
		for (i = 1; i <= n; i++) print "  " steps[i]
	}'
