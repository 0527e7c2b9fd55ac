// SPDX-License-Identifier: GPL-2.0
/*
 * `make run`: a VMM upgrade under a running guest.  VMM v1 starts a guest
 * that counts in memory, runs its vCPU in a kernel task (KVM_RUN_ASYNC),
 * detaches (KVM_VM_DETACH), passes the VM's files to VMM v2, a freshly
 * exec'd process, over a UNIX socket, and exits.  v2 attaches from its own
 * mm (KVM_VM_ATTACH) and serves the guest on.  The guest's count is printed
 * throughout, and the guest's work rate across the swap is compared with
 * its rate before it.
 *
 * usage: vmm-upgrade
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE	0x10000
#define CODE		0x1000
#define COUNTER		0x8000
#define WINDOW		1.0

struct msg {
	double t_detach;	/* when v1 detached */
	uint32_t count_detach;	/* the guest's count then */
	double quiet_rate;	/* the guest's rate before, measured by v1 */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *who, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", who, what, strerror(errno));
	exit(1);
}

static uint32_t count(void *mem)
{
	return __atomic_load_n((uint32_t *)((char *)mem + COUNTER), __ATOMIC_RELAXED);
}

/* Print the count every 0.25 s for @seconds; return the rate. */
static double show(const char *who, void *mem, double seconds)
{
	double t0 = now(), t = t0;
	uint32_t c0 = count(mem), c = c0;

	while (t - t0 < seconds) {
		usleep(250000);
		c = count(mem);
		t = now();
		printf("  [%s pid %d] guest count %10u\n", who, getpid(), c);
		fflush(stdout);
	}
	return (c - c0) / (t - t0);
}

static int v1(const char *self)
{
	/* inc dword [COUNTER]; jmp back: the guest counts with no exit. */
	static const uint8_t code[] = { 0x66, 0xff, 0x06, COUNTER & 0xff, COUNTER >> 8, 0xeb, 0xf9 };
	struct kvm_userspace_memory_region region = { .memory_size = MEM_SIZE };
	struct kvm_run_async ra = {};
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE, .rflags = 2 };
	int kvm, vm, vcpu, mem_fd, sv[2];
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = {}, fdstr[16];
	struct msg m;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	void *mem;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("v1", "open /dev/kvm");
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_HANDOVER) <= 0) {
		fprintf(stderr, "v1: this kernel has no KVM_CAP_VM_HANDOVER\n");
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	mem_fd = memfd_create("guest-ram", 0);
	if (vm < 0 || mem_fd < 0 || ftruncate(mem_fd, MEM_SIZE))
		die("v1", "create the VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
	if (mem == MAP_FAILED)
		die("v1", "mmap");
	memcpy((char *)mem + CODE, code, sizeof(code));
	region.userspace_addr = (uint64_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("v1", "KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0 || ioctl(vcpu, KVM_GET_SREGS, &sregs))
		die("v1", "KVM_CREATE_VCPU");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) || ioctl(vcpu, KVM_SET_REGS, &regs))
		die("v1", "set registers");

	if (ioctl(vcpu, KVM_RUN_ASYNC, &ra))
		die("v1", "KVM_RUN_ASYNC");
	printf("  [v1 pid %d] guest started; its vCPU runs in a kernel task\n", getpid());
	m.quiet_rate = show("v1", mem, WINDOW);

	m.t_detach = now();
	m.count_detach = count(mem);
	if (ioctl(vm, KVM_VM_DETACH, &(struct kvm_vm_detach){ 0 }))
		die("v1", "KVM_VM_DETACH");
	printf("  [v1 pid %d] detached; handing the VM, vCPU and memory fds to v2, exiting\n",
	       getpid());

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		die("v1", "socketpair");
	if (!fork()) {
		/* v2: a fresh exec, so a new mm and a new program image. */
		close(sv[0]);
		fcntl(sv[1], F_SETFD, 0);
		snprintf(fdstr, sizeof(fdstr), "%d", sv[1]);
		execl(self, self, "--v2", fdstr, NULL);
		die("v2", "exec");
	}
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), (int[]){ vm, vcpu, mem_fd }, 3 * sizeof(int));
	if (sendmsg(sv[0], &mh, 0) != sizeof(m))
		die("v1", "sendmsg");
	return 0;
}

static int v2(int sock)
{
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = {};
	struct kvm_vm_attach_slot slot = { .slot = 0 };
	struct kvm_vm_attach attach = { .nr_slots = 1, .slots = (uint64_t)&slot };
	struct kvm_run_async ra = { .flags = KVM_RUN_ASYNC_QUERY };
	struct msg m;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	double t_attach, t_end, swap_rate;
	int fds[3];
	uint32_t c_end;
	void *mem;

	if (recvmsg(sock, &mh, 0) != sizeof(m) || !CMSG_FIRSTHDR(&mh))
		die("v2", "recvmsg");
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(fds));
	/* The same guest memory, at an address of this mm. */
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0);
	if (mem == MAP_FAILED)
		die("v2", "mmap");
	printf("  [v2 pid %d] exec'd; no VMM is attached, and the guest counts: %u\n",
	       getpid(), count(mem));

	slot.userspace_addr = (uint64_t)mem;
	if (ioctl(fds[0], KVM_VM_ATTACH, &attach))
		die("v2", "KVM_VM_ATTACH");
	t_attach = now();
	if (ioctl(fds[1], KVM_RUN_ASYNC, &ra))
		die("v2", "KVM_RUN_ASYNC");
	printf("  [v2 pid %d] attached %.1f ms after v1 detached; vCPU state %s\n", getpid(),
	       (t_attach - m.t_detach) * 1e3, ra.state == KVM_RUN_ASYNC_STATE_RUNNING ?
	       "running" : "parked");

	/* The swap window: as long as v1's quiet one, from the detach on. */
	usleep((m.t_detach + WINDOW - now()) > 0 ? (m.t_detach + WINDOW - now()) * 1e6 : 0);
	c_end = count(mem);
	t_end = now();
	swap_rate = (c_end - m.count_detach) / (t_end - m.t_detach);
	show("v2", mem, WINDOW);

	printf("  guest work rate across the swap / before it: %.3f (%.0f/s vs %.0f/s)\n",
	       swap_rate / m.quiet_rate, swap_rate, m.quiet_rate);
	ra.flags = KVM_RUN_ASYNC_STOP;
	if (ioctl(fds[1], KVM_RUN_ASYNC, &ra))
		die("v2", "KVM_RUN_ASYNC_STOP");
	printf("  [v2 pid %d] stopped the guest at count %u\n", getpid(), count(mem));
	return 0;
}

int main(int argc, char **argv)
{
	char self[4096];
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "--v2"))
		return v2(atoi(argv[2]));

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("v1", "readlink");
	self[n] = 0;
	return v1(self);
}
