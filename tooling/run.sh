#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: build, boot the patched kernel and show the live-update demo,
# timestamping every line on the host and printing how long each step took.

. "$(dirname "$0")/lib.sh"
need_host_cmd python3 python3

"$TOOLING/build.sh" kernel
"$TOOLING/build.sh" selftests
"$TOOLING/build.sh" demo

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "booting the patched kernel for the demo (about a minute under TCG)"
"$TOOLING/vm.sh" --timeout 600 -- /build/repo/tooling/guest/demo.sh 2>&1 |
	python3 "$TOOLING/console.py" --steps
