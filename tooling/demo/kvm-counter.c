// SPDX-License-Identifier: GPL-2.0
/*
 * The foundation demo's guest: a real-mode KVM guest that counts in EAX and
 * writes every value to port 0x10.  The host side prints progress and the
 * rate, so "a KVM guest runs inside the patched kernel" is visible.
 *
 * usage: kvm-counter SECONDS
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000
#define PORT 0x10

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "kvm-counter: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	/*
	 * xor eax, eax; 1: inc eax; mov dx, PORT; out dx, eax; jmp 1b
	 */
	static const uint8_t code[] = {
		0x66, 0x31, 0xc0,	/* xor eax, eax */
		0x66, 0x40,		/* inc eax */
		0xba, PORT, 0x00,	/* mov dx, PORT */
		0x66, 0xef,		/* out dx, eax */
		0xeb, 0xf7,		/* jmp inc */
	};
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	int kvm, vm, vcpu, size;
	double t0, next;
	uint64_t exits = 0;
	uint32_t last = 0;
	void *mem;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("open /dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	memcpy(mem, code, sizeof(code));
	region = (struct kvm_userspace_memory_region) {
		.slot = 0, .guest_phys_addr = 0x1000, .memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0x1000;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS");

	printf("kvm-counter: guest started (real mode, counting in EAX, one OUT per step)\n");
	t0 = now();
	next = t0 + 0.5;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			die("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != PORT ||
		    run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4) {
			fprintf(stderr, "kvm-counter: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		memcpy(&last, (uint8_t *)run + run->io.data_offset, 4);
		exits++;
		if (last != exits) {
			fprintf(stderr, "kvm-counter: guest count %u, expected %llu\n",
				last, (unsigned long long)exits);
			return 1;
		}
		if (now() >= next) {
			printf("kvm-counter: guest count %u\n", last);
			fflush(stdout);
			next += 0.5;
			if (next - t0 > seconds)
				break;
		}
	}
	printf("kvm-counter: guest counted to %u in %.1f s: %.0f exits/s (nested SVM under TCG)\n",
	       last, now() - t0, last / (now() - t0));
	return 0;
}
