#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Relay a guest's console line by line, timed on the host clock.

--steps: "STEP <name>" lines start a named step; at the end print how long
         each step took (for `make run`).
--kexec FILE: append the time from the "# kexec: jumping" line to the
         "# kexec: stage 2 running" line to the timings FILE (for `make test`).
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", action="store_true")
    ap.add_argument("--kexec", metavar="FILE")
    ap.add_argument("--prefix", default="    | ")
    args = ap.parse_args()

    t0 = time.monotonic()
    steps = [["boot kernel 1 (QEMU start to the demo script)", t0, None]] if args.steps else []
    kexec_at = None
    for raw in iter(sys.stdin.buffer.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        now = time.monotonic()
        if args.steps and line.startswith("STEP "):
            steps.append([line[5:], now, None])
            if len(steps) > 1:
                steps[-2][2] = now
            print(f"\n[{now - t0:6.1f}s] == {line[5:]} ==", flush=True)
            continue
        if args.kexec:
            if "# kexec: jumping" in line:
                kexec_at = now
            elif "# kexec: stage 2 running" in line and kexec_at is not None:
                with open(args.kexec, "a") as f:
                    f.write(f"{'kexec -e to stage 2':<28} {now - kexec_at:8.1f} s\n")
        if args.steps:
            print(f"[{now - t0:6.1f}s]   {line}", flush=True)
        else:
            print(args.prefix + line, flush=True)
    if args.steps and steps:
        steps[-1][2] = time.monotonic()
        print("\nWhat happened, and how long each step took (host wall clock; the kernel runs under QEMU TCG):")
        for name, start, end in steps[:-1] if steps[-1][0] == "done" else steps:
            print(f"  {name:<50} {end - start:7.1f} s")


if __name__ == "__main__":
    main()
