// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_VM_DETACH and KVM_VM_ATTACH: a VMM starts a guest in vCPU tasks,
 * detaches, passes the VM's files to a freshly exec'd VMM and exits; the
 * guest runs on with no VMM at all; the new VMM attaches from its own mm and
 * serves the exits, including one raised while no VMM was attached.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "async_run.h"

#define PORT_TICK	0x90
#define PORT_IN		0x91
#define PORT_ECHO	0x92
#define PORT_FAIL	0x93
#define IN_VALUE	0x5a
#define MMIO_GPA	0xc0000000ull
#define MMIO_VALUE	0x1122334455667788ull
#define PRIV_GPA	0x10000000ull
#define PRIV_SLOT	1
#define PATTERN_SIZE	(4 * 4096)

static u64 count;
static u64 gate;
static bool has_private;
static u8 pattern[PATTERN_SIZE];

static u8 pattern_byte(u64 i)
{
	return (u8)(i * 7 + 3);
}

static void guest_code(void)
{
	u8 *priv = (u8 *)PRIV_GPA;
	u64 i, m;
	u8 v;

	for (i = 0; i < PATTERN_SIZE; i++)
		pattern[i] = pattern_byte(i);
	if (has_private)
		for (i = 0; i < 4096; i++)
			WRITE_ONCE(priv[i], (u8)(i ^ 0xa5));
	asm volatile("outb %%al, %w0" : : "Nd"(PORT_TICK), "a"(0));

	/* Count, with no exit, until the VMM opens the gate. */
	while (READ_ONCE(gate) < 1)
		WRITE_ONCE(count, count + 1);

	asm volatile("inb %w1, %b0" : "=a"(v) : "Nd"(PORT_IN));
	m = READ_ONCE(*(u64 *)MMIO_GPA);
	if (m != MMIO_VALUE)
		asm volatile("outb %%al, %w0" : : "Nd"(PORT_FAIL), "a"(1));
	if (has_private)
		for (i = 0; i < 4096; i++)
			if (READ_ONCE(priv[i]) != (u8)(i ^ 0xa5))
				asm volatile("outb %%al, %w0" : : "Nd"(PORT_FAIL), "a"(2));
	asm volatile("outb %%al, %w0" : : "Nd"(PORT_ECHO), "a"(v));

	for (;;)
		WRITE_ONCE(count, count + 1);
}

/* What the old VMM tells the new one besides the files. */
struct handover_info {
	u64 nr_slots;
	struct {
		u32 slot;
		u32 pad;
		u64 gpa;
		u64 size;
	} slots[2];
	u64 count_gpa;
	u64 gate_gpa;
	u64 pattern_gpa;
};

enum { FD_VM, FD_VCPU, FD_MEM0, FD_MEM1, FD_GMEM, NR_FDS };

static int run_async(int vcpu_fd, u32 flags, struct kvm_run_async *ra)
{
	memset(ra, 0, sizeof(*ra));
	ra->flags = flags;
	return ioctl(vcpu_fd, KVM_RUN_ASYNC, ra);
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

/* A value that the guest keeps increasing, read through @p. */
static void assert_counting(u64 *p, const char *when)
{
	u64 a = READ_ONCE(*p), b;
	int i;

	for (i = 0; i < 200; i++) {
		usleep(10000);
		b = READ_ONCE(*p);
		if (b > a)
			return;
	}
	TEST_FAIL("the guest stopped counting %s (%lu)", when, a);
}

static struct kvm_vm *create_vm(u32 type, struct kvm_vcpu **vcpu)
{
	struct vm_shape shape = VM_SHAPE_DEFAULT;
	struct kvm_vm *vm;

	shape.type = type;
	shape.src_type = VM_MEM_SRC_SHMEM;
	vm = vm_create_shape_with_one_vcpu(shape, vcpu, guest_code);
	virt_map(vm, MMIO_GPA, MMIO_GPA, 1);
	has_private = type == KVM_X86_SW_PROTECTED_VM;
	if (has_private) {
		vm_mem_add(vm, VM_MEM_SRC_SHMEM, PRIV_GPA, PRIV_SLOT, 1,
			   KVM_MEM_GUEST_MEMFD, -1, 0);
		virt_map(vm, PRIV_GPA, PRIV_GPA, 1);
		vm_mem_set_private(vm, PRIV_GPA, 4096);
	}
	sync_global_to_guest(vm, has_private);
	return vm;
}

static void start_and_tick(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	struct kvm_run_async ra;

	TEST_ASSERT(!run_async(vcpu->fd, 0, &ra), "KVM_RUN_ASYNC: errno %d", errno);
	TEST_ASSERT(readable(vcpu->fd, 20000), "no exit within 20 s");
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu->run->io.port, PORT_TICK);
	TEST_ASSERT(!run_async(vcpu->fd, 0, &ra), "resume: errno %d", errno);
	assert_counting(addr_gva2hva(vm, (gva_t)&count), "after the start");
}

static void send_fds(int sock, const int *fds, int n, const void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int) * NR_FDS)] = {};
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = CMSG_SPACE(sizeof(int) * n),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	TEST_ASSERT(sendmsg(sock, &msg, 0) == (ssize_t)len, "sendmsg: errno %d", errno);
}

static int recv_fds(int sock, int *fds, void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int) * NR_FDS)] = {};
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *c;
	int n;

	TEST_ASSERT(recvmsg(sock, &msg, 0) == (ssize_t)len, "recvmsg: errno %d", errno);
	c = CMSG_FIRSTHDR(&msg);
	TEST_ASSERT(c && c->cmsg_type == SCM_RIGHTS, "no files received");
	n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
	return n;
}

/* The first VMM: start, detach, hand the files over, exit. */
static void old_vmm(u32 type, int sock)
{
	struct handover_info info = {};
	struct userspace_mem_region *r;
	int fds[NR_FDS], n = 0, i;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;

	vm = create_vm(type, &vcpu);
	start_and_tick(vm, vcpu);

	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, NULL), "KVM_VM_DETACH: errno %d", errno);

	/* The VMM that detached cannot use the VM any more. */
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_GET_REGS, &regs) == -1 && errno == EIO,
		    "KVM_GET_REGS after detach: errno %d", errno);
	TEST_ASSERT(__vm_ioctl(vm, KVM_VM_DETACH, NULL) == -1 && errno == EIO,
		    "KVM_VM_DETACH twice: errno %d", errno);
	assert_counting(addr_gva2hva(vm, (gva_t)&count), "after detach");

	fds[n++] = vm->fd;
	fds[n++] = vcpu->fd;
	for (i = 0; i < (has_private ? 2 : 1); i++) {
		r = memslot2region(vm, i ? PRIV_SLOT : 0);
		fds[n++] = r->fd;
		info.slots[i].slot = r->region.slot;
		info.slots[i].gpa = r->region.guest_phys_addr;
		info.slots[i].size = r->region.memory_size;
		TEST_ASSERT_EQ(r->offset, 0);
	}
	info.nr_slots = i;
	/* Private memory lives as long as its guest_memfd: hand it over too. */
	if (has_private)
		fds[n++] = memslot2region(vm, PRIV_SLOT)->region.guest_memfd;
	info.count_gpa = addr_gva2gpa(vm, (gva_t)&count);
	info.gate_gpa = addr_gva2gpa(vm, (gva_t)&gate);
	info.pattern_gpa = addr_gva2gpa(vm, (gva_t)pattern);
	send_fds(sock, fds, n, &info, sizeof(info));

	/* Exit without closing anything: the files now live in the new VMM. */
	_exit(0);
}

static void *map_gpa(void **maps, struct handover_info *info, u64 gpa)
{
	u64 i;

	for (i = 0; i < info->nr_slots; i++)
		if (gpa >= info->slots[i].gpa && gpa < info->slots[i].gpa + info->slots[i].size)
			return (u8 *)maps[i] + (gpa - info->slots[i].gpa);
	TEST_FAIL("gpa 0x%lx is in no memslot", gpa);
	return NULL;
}

/* Whether a thread of this process is KVM's NX huge page recovery worker. */
static bool nx_recovery_in_this_process(void)
{
	char path[64], buf[64];
	struct dirent *de;
	bool found = false;
	DIR *d;
	FILE *f;

	d = opendir("/proc/self/task");
	TEST_ASSERT(d, "opendir /proc/self/task");
	while ((de = readdir(d)) && !found) {
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		found = fgets(buf, sizeof(buf), f) && !strncmp(buf, "kvm-nx-lpage", 12);
		fclose(f);
	}
	closedir(d);
	return found;
}

/* The new VMM, exec'd: attach from a new mm and serve the guest. */
static int new_vmm(int sock)
{
	struct kvm_vm_attach_slot aslots[2] = {};
	struct kvm_vm_attach attach = {};
	struct handover_info info;
	struct kvm_run_async ra;
	int fds[NR_FDS], kvm_fd, i;
	u64 *countp;
	struct kvm_regs regs;
	struct kvm_run *run;
	void *maps[2];
	char c;
	u8 *p;

	recv_fds(sock, fds, &info, sizeof(info));
	/* The old VMM has exited when its end of the socket closes. */
	TEST_ASSERT(read(sock, &c, 1) == 0, "the old VMM did not exit");

	kvm_fd = open("/dev/kvm", O_RDWR);
	TEST_ASSERT(kvm_fd >= 0, "open /dev/kvm");
	run = mmap(NULL, ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, fds[FD_VCPU], 0);
	TEST_ASSERT(run != MAP_FAILED, "mmap kvm_run");

	/* The same memory, at new addresses in this mm. */
	for (i = 0; i < info.nr_slots; i++) {
		maps[i] = mmap(NULL, info.slots[i].size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       fds[FD_MEM0 + i], 0);
		TEST_ASSERT(maps[i] != MAP_FAILED, "mmap guest memory");
		aslots[i].slot = info.slots[i].slot;
		aslots[i].userspace_addr = (u64)maps[i];
	}
	countp = map_gpa(maps, &info, info.count_gpa);

	/* No VMM exists at all, and the guest runs. */
	assert_counting(countp, "while no VMM exists");
	p = map_gpa(maps, &info, info.pattern_gpa);
	for (i = 0; i < PATTERN_SIZE; i++)
		TEST_ASSERT(p[i] == pattern_byte(i), "guest memory differs at %d", i);

	/* An exit that needs userspace, raised while no VMM is attached, waits. */
	WRITE_ONCE(*(u64 *)map_gpa(maps, &info, info.gate_gpa), 1);
	TEST_ASSERT(readable(fds[FD_VCPU], 20000), "the exit did not park the vCPU");
	TEST_ASSERT(run_async(fds[FD_VCPU], KVM_RUN_ASYNC_QUERY, &ra) == -1 && errno == EIO,
		    "ioctl before attach: errno %d", errno);

	attach.nr_slots = info.nr_slots;
	attach.slots = (u64)aslots;
	TEST_ASSERT(!nx_recovery_in_this_process(), "an NX recovery worker before attach");
	TEST_ASSERT(!ioctl(fds[FD_VM], KVM_VM_ATTACH, &attach), "KVM_VM_ATTACH: errno %d", errno);
	/* x86's NX huge page recovery worker moved here from the old VMM. */
	TEST_ASSERT(nx_recovery_in_this_process(), "no NX recovery worker after attach");

	/* Delivered exactly once, to the new VMM. */
	TEST_ASSERT(!run_async(fds[FD_VCPU], KVM_RUN_ASYNC_QUERY, &ra), "QUERY: errno %d", errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_PARKED);
	TEST_ASSERT_EQ(ra.result, 0);
	TEST_ASSERT(run->exit_reason == KVM_EXIT_IO, "exit %u (memory fault gpa 0x%llx)",
		    run->exit_reason, run->memory_fault.gpa);
	TEST_ASSERT_EQ(run->io.port, PORT_IN);
	TEST_ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	TEST_ASSERT(!ioctl(fds[FD_VCPU], KVM_GET_REGS, &regs), "KVM_GET_REGS: errno %d", errno);
	TEST_ASSERT(regs.rip >= (u64)guest_code && regs.rip < (u64)guest_code + 4096,
		    "rip 0x%llx is not in the guest code", regs.rip);
	*((u8 *)run + run->io.data_offset) = IN_VALUE;
	TEST_ASSERT(!run_async(fds[FD_VCPU], 0, &ra), "resume: errno %d", errno);

	TEST_ASSERT(readable(fds[FD_VCPU], 20000), "no MMIO exit");
	TEST_ASSERT_EQ(run->exit_reason, KVM_EXIT_MMIO);
	TEST_ASSERT_EQ(run->mmio.phys_addr, MMIO_GPA);
	memcpy(run->mmio.data, &(u64){ MMIO_VALUE }, 8);
	TEST_ASSERT(!run_async(fds[FD_VCPU], 0, &ra), "resume: errno %d", errno);

	TEST_ASSERT(readable(fds[FD_VCPU], 20000), "no echo");
	TEST_ASSERT_EQ(run->exit_reason, KVM_EXIT_IO);
	TEST_ASSERT(run->io.port != PORT_FAIL, "the guest failed check %u",
		    *((u8 *)run + run->io.data_offset));
	TEST_ASSERT_EQ(run->io.port, PORT_ECHO);
	TEST_ASSERT_EQ(*((u8 *)run + run->io.data_offset), IN_VALUE);
	TEST_ASSERT(!run_async(fds[FD_VCPU], 0, &ra), "resume: errno %d", errno);

	assert_counting(countp, "after attach");
	TEST_ASSERT(!readable(fds[FD_VCPU], 200), "an exit was delivered twice");

	TEST_ASSERT(!run_async(fds[FD_VCPU], KVM_RUN_ASYNC_STOP, &ra), "STOP: errno %d", errno);
	return 0;
}

static void test_handover(u32 type)
{
	int sv[2], status;
	pid_t old, new;
	char fd[16];

	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	new = fork();
	TEST_ASSERT(new >= 0, "fork");
	if (!new) {
		close(sv[0]);
		snprintf(fd, sizeof(fd), "%d", sv[1]);
		execl("/proc/self/exe", "vm_handover_test", "--new-vmm", fd, NULL);
		_exit(127);
	}
	close(sv[1]);
	old = fork();
	TEST_ASSERT(old >= 0, "fork");
	if (!old)
		old_vmm(type, sv[0]);
	close(sv[0]);

	TEST_ASSERT(waitpid(old, &status, 0) == old && WIFEXITED(status) && !WEXITSTATUS(status),
		    "the old VMM failed (status 0x%x)", status);
	TEST_ASSERT(waitpid(new, &status, 0) == new && WIFEXITED(status) && !WEXITSTATUS(status),
		    "the new VMM failed (status 0x%x)", status);
	wait_no_vcpu_task("both VMMs exited");
}

static int attach_one(struct kvm_vm *vm, u32 slot, u64 addr, u32 flags)
{
	struct kvm_vm_attach_slot s = { .slot = slot, .userspace_addr = addr };
	struct kvm_vm_attach a = { .flags = flags, .nr_slots = 1, .slots = (u64)&s };

	return ioctl(vm->fd, KVM_VM_ATTACH, &a);
}

static void assert_errno(int r, int e, const char *what)
{
	TEST_ASSERT(r == -1 && errno == e, "%s: expected errno %d, got %d (r %d)",
		    what, e, errno, r);
}

static void test_errors(void)
{
	struct kvm_vm_attach_slot s[2] = {};
	struct userspace_mem_region *r0;
	struct kvm_vm_attach a = {};
	struct kvm_run_async ra;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_vm *vm;
	void *other;
	int status, fd;
	pid_t child;
	u64 size;

	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);
	size = r0->region.memory_size;

	assert_errno(attach_one(vm, 0, r0->region.userspace_addr, 0), EBUSY,
		     "attach without detach");
	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, NULL), "detach: errno %d", errno);

	assert_errno(attach_one(vm, 0, r0->region.userspace_addr, 1), EINVAL, "flags");
	a.nr_slots = 1;
	a.slots = (u64)s;
	a.reserved[1] = 1;
	s[0].userspace_addr = r0->region.userspace_addr;
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EINVAL, "reserved");
	a.reserved[1] = 0;
	s[0].pad = 1;
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EINVAL, "pad");
	s[0].pad = 0;
	a.nr_slots = 2;
	s[1] = s[0];
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EINVAL, "duplicate slot");
	a.nr_slots = 0;
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EINVAL, "no slots");
	assert_errno(attach_one(vm, 5, r0->region.userspace_addr, 0), EINVAL, "unknown slot");
	assert_errno(attach_one(vm, 0, r0->region.userspace_addr + 1, 0), EINVAL, "unaligned");
	a.nr_slots = 1;
	a.slots = 8;
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EFAULT, "bad slots pointer");
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, (void *)8), EFAULT, "bad pointer");

	/* Memory that is not the VM's. */
	other = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_errno(attach_one(vm, 0, (u64)other, 0), EXDEV, "shared anonymous memory");
	munmap(other, size);
	other = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_errno(attach_one(vm, 0, (u64)other, 0), EXDEV, "private anonymous memory");
	munmap(other, size);
	fd = kvm_memfd_alloc(size, false);
	other = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_errno(attach_one(vm, 0, (u64)other, 0), EXDEV, "another memfd");
	munmap(other, size);
	other = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r0->fd, 4096);
	assert_errno(attach_one(vm, 0, (u64)other, 0), EXDEV, "the memfd at another offset");
	munmap(other, size);
	close(fd);
	assert_errno(attach_one(vm, 0, (u64)other, 0), EFAULT, "unmapped memory");

	/* Another user may not attach, even holding the files. */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		_exit(attach_one(vm, 0, r0->region.userspace_addr, 0) == -1 &&
		      errno == EPERM ? 0 : 1);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
		    !WEXITSTATUS(status), "attach as another user: status 0x%x", status);

	/*
	 * A child of this VMM has a new mm with the same mappings: it attaches,
	 * and from then on this (old) mm is refused.
	 */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		if (attach_one(vm, 0, r0->region.userspace_addr, 0))
			_exit(1);
		/* Double attach. */
		if (attach_one(vm, 0, r0->region.userspace_addr, 0) != -1 || errno != EBUSY)
			_exit(2);
		if (run_async(vcpu->fd, KVM_RUN_ASYNC_QUERY, &ra) ||
		    ra.state != KVM_RUN_ASYNC_STATE_RUNNING)
			_exit(3);
		/* Die while attached, with the vCPU running. */
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFSIGNALED(status),
		    "the attaching child failed: status 0x%x", status);
	assert_errno(__vcpu_ioctl(vcpu, KVM_GET_REGS, &regs), EIO, "old mm after the handover");
	assert_errno(__vm_ioctl(vm, KVM_VM_DETACH, NULL), EIO, "old mm detach after the handover");

	/* Its VMM was killed; the guest runs on in the dead VMM's memory. */
	assert_counting(addr_gva2hva(vm, (gva_t)&count), "after the VMM was killed");
	TEST_ASSERT_EQ(vcpu_tasks(NULL), 1);
	kvm_vm_free(vm);
	wait_no_vcpu_task("last close after a killed VMM");

	/* SIGKILL while detached, with nobody else holding the files. */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
		start_and_tick(vm, vcpu);
		if (__vm_ioctl(vm, KVM_VM_DETACH, NULL))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFSIGNALED(status),
		    "the detaching child failed: status 0x%x", status);
	wait_no_vcpu_task("SIGKILL while detached");

	/*
	 * An exit while detached is counted, and the VMM that detached may
	 * attach again (same mm, same addresses) and serve it.
	 */
	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);
	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, NULL), "detach: errno %d", errno);
	WRITE_ONCE(*(u64 *)addr_gva2hva(vm, (gva_t)&gate), 1);
	TEST_ASSERT(readable(vcpu->fd, 20000), "the exit did not park the vCPU");
	TEST_ASSERT_EQ(vcpu_get_stat(vcpu, detached_exits), 1);
	TEST_ASSERT(!attach_one(vm, 0, r0->region.userspace_addr, 0),
		    "attach from the same mm: errno %d", errno);
	TEST_ASSERT(!run_async(vcpu->fd, KVM_RUN_ASYNC_QUERY, &ra), "QUERY: errno %d", errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_PARKED);
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu->run->io.port, PORT_IN);
	TEST_ASSERT_EQ(vcpu_get_stat(vcpu, detached_exits), 1);
	kvm_vm_free(vm);
	wait_no_vcpu_task("close after re-attaching");
}

int main(int argc, char *argv[])
{
	if (argc == 3 && !strcmp(argv[1], "--new-vmm"))
		return new_vmm(atoi(argv[2]));

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VM_HANDOVER));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));

	ksft_print_header();
	ksft_set_plan(3);

	test_errors();
	ksft_test_result_pass("errors, old mm, other user, SIGKILL, exit counted while detached\n");
	test_handover(KVM_X86_DEFAULT_VM);
	ksft_test_result_pass("handover to an exec'd VMM\n");
	if (kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM)) {
		test_handover(KVM_X86_SW_PROTECTED_VM);
		ksft_test_result_pass("handover of a SW_PROTECTED_VM with private memory\n");
	} else {
		ksft_test_result_skip("KVM_X86_SW_PROTECTED_VM is not supported\n");
	}
	ksft_finished();
}
