#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the image of tooling/vmx-image.sh in bochs and collect its results.

bochs emulates Intel VMX, which QEMU TCG does not.  The guest (its /init is
tooling/guest/vmx-init.sh) reports on the serial console, which bochs writes
to a file; this reads it as it grows.  A guest whose emulated CPU stops
taking interrupts never ends its own tests (the in-guest `timeout` cannot
fire), so each test also has a watchdog here, on the host clock: past it,
bochs is killed, the test fails, and the machine boots again after it
(klu.from=N on the command line) so that the rest of the list still runs.

usage: bochs.py IMAGE_DIR TAP_FILE --list LIST [--filter F] [--append ARGS]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

TOOLING = os.path.dirname(os.path.abspath(__file__))
IN_ROOT = os.path.join(TOOLING, "in-root")
MARK = re.compile(r"@@KLU@@ (.*)")


def listed(path, flt):
    """Stage-1 tests in the order the guest runs them: every group but
    "kexec" in order of first appearance, then the kexec group's stage 1."""
    rows = []
    for line in open(path):
        line = line.split("#", 1)[0].split()
        if len(line) >= 3 and (not flt or flt in line[1]):
            rows.append((line[0], line[1]))
    groups = []
    for g, _ in rows:
        if g != "kexec" and g not in groups:
            groups.append(g)
    order = [p for g in groups for gg, p in rows if gg == g]
    order += [p + ":stage1" for g, p in rows if g == "kexec"]
    return order


class Tail:
    """The complete lines a file grew by since the last call."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, b""

    def lines(self):
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        self.pos += len(chunk)
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        return [raw.decode(errors="replace").rstrip("\r") for raw in lines]


def bochsrc(img, serial, marks, cpus):
    """The machine: the model and rate of ../shared/platform.md's trial."""
    c = "/build/out/vmx"
    return f"""\
megs: 2048
cpu: model=corei7_skylake_x, count={cpus}, ips={IPS}, ignore_bad_msrs=1
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path={c}/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={c}/{os.path.basename(serial)}
com2: enabled=1, mode=file, dev={c}/{os.path.basename(marks)}
clock: sync=none, time0=local
display_library: {DISPLAY}
mouse: enabled=0
log: {c}/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
"""


IPS = 100_000_000
# The bochs tooling/bochs-build.sh builds; KLU_BOCHS=/usr/bin/bochs runs
# Debian's instead (which has no "nogui" display), e.g. to reproduce the
# VMX bug that build fixes.
BOCHS = os.environ.get("KLU_BOCHS", "/usr/local/bin/bochs")
DISPLAY = 'rfb, options="timeout=0"' if BOCHS == "/usr/bin/bochs" else "nogui"


def in_root(cmd, **kw):
    return subprocess.Popen([IN_ROOT, "bash", "-c", cmd], start_new_session=True,
                            stdin=subprocess.DEVNULL, **kw)


def make_iso(img, cmdline):
    with open(os.path.join(img, "iso/isolinux/isolinux.cfg"), "w") as f:
        f.write(f"default klu\nprompt 0\ntimeout 0\nlabel klu\n  kernel /bzImage\n"
                f"  append initrd=/initrd {cmdline}\n")
    p = in_root("xorriso -as mkisofs -quiet -o /build/out/vmx/boot.iso -b isolinux/isolinux.bin "
                "-c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table "
                "/build/out/vmx/iso")
    if p.wait() != 0:
        sys.exit("bochs.py: xorriso failed")


def kill(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("img")
    ap.add_argument("tap")
    ap.add_argument("--list", required=True)
    ap.add_argument("--filter", default="")
    ap.add_argument("--append", default="")
    ap.add_argument("--cpus", type=int, default=2)
    # Host seconds per guest second allowed before the watchdog fires.
    ap.add_argument("--slow", type=float, default=float(os.environ.get("KLU_VMX_SLOW", "4")))
    ap.add_argument("--console", required=True)
    ap.add_argument("--timings", help="append the boot and kexec times to this file")
    args = ap.parse_args()

    order = listed(args.list, args.filter)
    khz = IPS // 1000
    base = (f"console=ttyS0,115200 rdinit=/init panic=-1 mitigations=off nokaslr "
            f"liveupdate=on log_buf_len=4M tsc_early_khz={khz} kvm_intel.enable_apicv=0 {args.append}"
            + (f" klu.filter={args.filter}" if args.filter else ""))
    tap = open(args.tap, "w")
    console = open(args.console, "w")
    start_from = 0
    boot = 0
    timings = []
    while True:
        boot += 1
        make_iso(args.img, base + f" klu.from={start_from}")
        serial = os.path.join(args.img, f"serial-{boot}.log")
        marks = os.path.join(args.img, f"marks-{boot}.log")
        open(serial, "w").close()
        open(marks, "w").close()
        with open(os.path.join(args.img, "bochsrc"), "w") as f:
            f.write(bochsrc(args.img, serial, marks, args.cpus))
        t0 = time.monotonic()
        p = in_root(f"exec {BOCHS} -q -f /build/out/vmx/bochsrc >/build/out/vmx/bochs.out 2>&1")
        print(f"    bochs: boot {boot} (klu.from={start_from})", file=sys.stderr, flush=True)
        current, deadline, done = None, t0 + 240, False
        why = "the machine did not start its tests within 240 s"
        con = Tail(serial)
        mark = Tail(marks)
        kexec_at = None
        exited = False
        while True:
            for line in con.lines():
                console.write(line + "\n")
            for line in mark.lines():
                m = MARK.match(line)
                if not m:
                    continue
                msg = m.group(1)
                now = time.monotonic()
                print(f"    | [{now - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)
                if re.fullmatch(r"start \S+ \d+", msg):
                    _, name, limit = msg.split()
                    current = name
                    deadline = now + float(limit) * args.slow + 60
                    why = f"no result within {deadline - now:.0f} s of host time (the machine hung)"
                elif msg.startswith(("ok ", "not ok ")):
                    tap.write(msg + "\n")
                    tap.flush()
                    current = None
                    deadline = now + 300
                    why = "nothing happened for 300 s between tests"
                elif msg.startswith("begin"):
                    deadline = now + 300
                    if msg == "begin 1":
                        timings.append((f"bochs: boot {boot} to /init", now - t0))
                    elif kexec_at is not None:
                        timings.append(("kexec -e to stage 2", now - kexec_at))
                elif msg == "kexec":
                    kexec_at = now
                    current = None
                    deadline = now + 300
                    why = "the kexec into stage 2 did not start its tests within 300 s"
                elif msg == "done":
                    done = True
            console.flush()
            if done or exited:
                break
            # One more look at both ports once bochs is gone.
            exited = p.poll() is not None
            if not exited and time.monotonic() > deadline:
                break
            if not exited:
                time.sleep(0.5)
        if done:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        kill(p)
        if done:
            break
        if exited:
            why = f"bochs exited ({p.returncode}) before the runner finished"
        name = current or "guest"
        tap.write(f"not ok {name} # host watchdog: {why}; see {args.console}\n")
        tap.flush()
        print(f"    bochs: {name}: {why}", file=sys.stderr, flush=True)
        # Boot again after the test that hung, if it was one of stage 1's.
        if current in order and order.index(current) + 1 < len(order):
            start_from = order.index(current) + 1
            continue
        break
    tap.close()
    if args.timings:
        with open(args.timings, "a") as f:
            for name, secs in timings:
                f.write(f"{name:<28} {secs:8.1f} s\n")


if __name__ == "__main__":
    main()
