#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the build root (tooling/test.sh --vmx): the boot image for the
# VMX platform, bochs.  bochs has no 9p or virtiofs, so everything the tests
# need goes into an initramfs: busybox, bash, the listed selftests
# (stripped) and kexec with the libraries they link, KVM's modules, the
# kernel itself (for the kexec stage) and the guest runner as /init.  The
# initramfs is left uncompressed: at bochs' speed, unpacking costs more than
# the BIOS takes to read the larger file.  ISOLINUX boots it from a CD.
#
# usage: vmx-image.sh LIST IMAGE_DIR
set -euo pipefail
LIST=$1
IMG=$2
SRC=/build/src
OUT=/build/out
SELFTESTS=/build/selftests
REPO=/build/repo
STAGE=$IMG/root

rm -rf "$STAGE" "$IMG/iso"
mkdir -p "$STAGE"/{bin,sbin,etc,proc,sys,dev,tmp,run,boot,t,lib64,usr/lib} "$IMG/iso/isolinux"
ln -s ../bin "$STAGE/usr/bin"
ln -s ../sbin "$STAGE/usr/sbin"

# Binaries and every library they link, at the paths ld.so looks in.
libs() {
	local f
	for f in "$@"; do
		ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'
	done | sort -u | while read -r lib; do
		mkdir -p "$STAGE$(dirname "$lib")"
		cp -L "$lib" "$STAGE$lib"
	done
}

cp /bin/busybox "$STAGE/bin/busybox"
cp /bin/bash "$STAGE/bin/bash"
cp /usr/sbin/kexec "$STAGE/sbin/kexec"
# busybox's date has no %N, which the runner times tests with.
cp /bin/date "$STAGE/bin/date"
bins=("$STAGE/bin/bash" "$STAGE/sbin/kexec" "$STAGE/bin/date")
# The tests of the list, stripped: their debug info is most of their size.
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$LIST" | awk '{ print $2 }' | sort -u |
	while read -r path; do
		mkdir -p "$STAGE/t/$(dirname "$path")"
		strip -o "$STAGE/t/$path" "$SELFTESTS/$path"
	done
mapfile -t tests < <(find "$STAGE/t" -type f)
libs "${bins[@]}" "${tests[@]}"

# KVM's modules, with modules.dep, for modprobe and request_module().
make -s -C "$SRC" O="$OUT" LLVM=1 INSTALL_MOD_PATH="$STAGE" INSTALL_MOD_STRIP=1 \
	modules_install >/dev/null
rm -f "$STAGE"/lib/modules/*/build "$STAGE"/lib/modules/*/source

cp "$OUT/arch/x86/boot/bzImage" "$STAGE/boot/bzImage"
cp "$LIST" "$STAGE/etc/tests.list"
cp "$REPO/tooling/guest/run-lib.sh" "$STAGE/etc/run-lib.sh"
cp "$REPO/tooling/guest/vmx-init.sh" "$STAGE/init"
chmod 755 "$STAGE/init"

(cd "$STAGE" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0) >"$IMG/iso/initrd"
cp "$OUT/arch/x86/boot/bzImage" "$IMG/iso/bzImage"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$IMG/iso/isolinux/"
du -sh "$IMG/iso/initrd" | awk '{ print "    initramfs " $1 }' >&2
