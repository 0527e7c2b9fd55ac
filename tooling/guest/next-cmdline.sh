#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The command line for the kernel the guest kexecs into: this kernel's,
# without KUnit (it ran here), with the TSC rate this kernel calibrated.
#
# KVM takes the host TSC rate from the early calibration, and under QEMU TCG
# that calibration varies between boots by more than KVM's 250 ppm
# tolerance ("tsc: Detected 2444.362 MHz" here, 2445.412 after the kexec).
# Without TSC scaling, which the emulated SVM lacks, the next KVM then
# refuses a preserved vCPU's TSC frequency.  A real host calibrates well
# within the tolerance; tsc_early_khz= makes the next kernel agree as one
# would.
set -eu
cmdline=$(sed -e 's/kunit\.enable=1//' -e 's/kunit\.filter_glob=[^ ]*//' \
	-e 's/tsc_early_khz=[^ ]*//' /proc/cmdline)
khz=$(dmesg | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9]\{3\}\) MHz processor.*/\1\2/p' | head -n1)
echo "$cmdline${khz:+ tsc_early_khz=$khz}"
