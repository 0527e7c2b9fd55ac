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
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>
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

static const struct kvm_vm_detach no_flags;

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
		u64 hva;
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

	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), "KVM_VM_DETACH: errno %d", errno);

	/* The VMM that detached cannot use the VM any more. */
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_GET_REGS, &regs) == -1 && errno == EIO,
		    "KVM_GET_REGS after detach: errno %d", errno);
	TEST_ASSERT(__vm_ioctl(vm, KVM_VM_DETACH, &no_flags) == -1 && errno == EIO,
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
		info.slots[i].hva = r->region.userspace_addr;
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

/*
 * What a new address must agree with the old one modulo: the largest huge
 * page size (2 MiB, 1 GiB) modulo which the old one agrees with the slot's
 * guest physical address, or a page where it agrees modulo none.
 */
static u64 hva_align(u64 gpa, u64 hva)
{
	if (!((gpa ^ hva) & ((1ull << 30) - 1)))
		return 1ull << 30;
	if (!((gpa ^ hva) & ((1ull << 21) - 1)))
		return 1ull << 21;
	return getpagesize();
}

/*
 * Map @size bytes of @fd at an address that agrees with @old modulo @align,
 * plus @shift, in address space reserved around it (returned in @res, of
 * size *res_size).
 */
static void *map_placed(int fd, u64 size, u64 old, u64 align, u64 shift,
			void **res, u64 *res_size)
{
	u64 base;
	void *p;

	*res_size = size + 3 * align;
	*res = mmap(NULL, *res_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	TEST_ASSERT(*res != MAP_FAILED, "reserve address space");
	base = align_up((u64)*res, align) + (old & (align - 1)) + shift;
	if (base == old)
		base += align;
	p = mmap((void *)base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	TEST_ASSERT(p == (void *)base, "mmap at 0x%lx", base);
	return p;
}

/* The new VMM, exec'd: attach from a new mm and serve the guest. */
static int new_vmm(int sock)
{
	struct kvm_vm_attach_slot aslots[2] = {};
	struct kvm_vm_attach attach = {};
	struct handover_info info;
	void *res;
	u64 res_size;
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

	/*
	 * The same memory, at new addresses in this mm that keep the huge
	 * page alignment of the old ones.
	 */
	for (i = 0; i < info.nr_slots; i++) {
		maps[i] = map_placed(fds[FD_MEM0 + i], info.slots[i].size, info.slots[i].hva,
				     hva_align(info.slots[i].gpa, info.slots[i].hva), 0,
				     &res, &res_size);
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

/* Run as SCHED_FIFO on @cpu only; false if this process may not. */
static bool fifo_on(int cpu)
{
	struct sched_param sp = { .sched_priority = 1 };
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return !sched_setaffinity(0, sizeof(set), &set) &&
	       !sched_setscheduler(0, SCHED_FIFO, &sp);
}

/*
 * Make the VMM that attaches die before its vCPU task has run again: this
 * process and a spinner on every other CPU run as SCHED_FIFO, so no normal
 * task runs until this one has exited (the spinners die with it).  Best
 * effort: without it the test only races.
 */
static void outrun_vcpu_task(void)
{
	int cpu, me = sched_getcpu(), n = sysconf(_SC_NPROCESSORS_CONF);
	int pipefd[2], spinners = 0;
	bool fifo;
	char c;

	TEST_ASSERT(!pipe(pipefd), "pipe");
	for (cpu = 0; cpu < n; cpu++) {
		if (cpu == me || fork())
			continue;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		c = fifo_on(cpu);
		if (write(pipefd[1], &c, 1) != 1 || !c)
			_exit(0);
		for (;;)
			;
	}
	for (cpu = 0; cpu < n - 1 && read(pipefd[0], &c, 1) == 1; cpu++)
		spinners += c;
	fifo = fifo_on(me);
	if (!fifo || spinners < n - 1)
		ksft_print_msg("cannot outrun the vCPU task: %d of %d CPUs\n", spinners + fifo, n);
}

static void test_errors(void)
{
	struct kvm_vm_detach detach = {};
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
	detach.flags = KVM_VM_DETACH_SUCCESSOR << 1;
	assert_errno(__vm_ioctl(vm, KVM_VM_DETACH, &detach), EINVAL, "detach unknown flag");
	detach.flags = 0;
	detach.reserved[5] = 1;
	assert_errno(__vm_ioctl(vm, KVM_VM_DETACH, &detach), EINVAL, "detach reserved");
	assert_errno(ioctl(vm->fd, KVM_VM_DETACH, (void *)8), EFAULT, "detach bad pointer");
	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), "detach: errno %d", errno);

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
	/* A range that wraps, and one outside the user address space. */
	assert_errno(attach_one(vm, 0, -4096ull, 0), EINVAL, "range that wraps");
	assert_errno(attach_one(vm, 0, 1ull << 63, 0), EINVAL, "kernel address");

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
	 * and from then on this (old) mm is refused.  It dies before the vCPU
	 * task has moved to its mm, which the attach must pin for the task.
	 */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		outrun_vcpu_task();
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
	assert_errno(__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), EIO,
		     "old mm detach after the handover");

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
		if (__vm_ioctl(vm, KVM_VM_DETACH, &no_flags))
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
	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), "detach: errno %d", errno);
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

/* Set shmem's THP mode; returns whether THP is there at all. */
static bool shmem_thp(const char *mode, char *old, size_t len)
{
	const char *path = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
	char buf[128], *a, *b;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return false;
	}
	fclose(f);
	if (old) {
		a = strchr(buf, '[');
		b = a ? strchr(a, ']') : NULL;
		if (!a || !b)
			return false;
		*b = 0;
		snprintf(old, len, "%s", a + 1);
	}
	f = fopen(path, "w");
	if (!f)
		return false;
	fputs(mode, f);
	return !fclose(f);
}

/*
 * The same memory at another address: refused where the address would not
 * keep the huge page alignment KVM recorded for the slot, taken where it
 * does, and KVM then maps a huge page through the new address.
 */
static char saved_thp[32];

static void restore_thp(void)
{
	shmem_thp(saved_thp, NULL, 0);
}

#define NX_HUGE_PAGES	"/sys/module/kvm/parameters/nx_huge_pages"

static bool nx_huge_pages_on(void)
{
	FILE *f = fopen(NX_HUGE_PAGES, "r");
	int c = f ? fgetc(f) : 'N';

	if (f)
		fclose(f);
	return c == 'Y' || c == 'y';
}

/* Returns NULL, or why it skipped. */
static const char *test_remap(void)
{
	struct userspace_mem_region *r0;
	u64 size, old, gpa, align, res_size, count_off;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	void *p, *res;

	if (!shmem_thp("always", saved_thp, sizeof(saved_thp)))
		return "no shmem THP to set";
	atexit(restore_thp);
	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);
	size = r0->region.memory_size;
	old = r0->region.userspace_addr;
	gpa = r0->region.guest_phys_addr;
	align = hva_align(gpa, old);
	count_off = addr_gva2gpa(vm, (gva_t)&count) - gpa;
	if (align < 2 * 1024 * 1024) {
		kvm_vm_free(vm);
		wait_no_vcpu_task("close without a THP-placed memslot");
		return "memslot 0 was not placed for 2 MiB pages";
	}
	TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), "detach: errno %d", errno);

	p = map_placed(r0->fd, size, old, align, 4096, &res, &res_size);
	assert_errno(attach_one(vm, 0, (u64)p, 0), EINVAL, "address off by a page");
	munmap(res, res_size);
	/* Half of 2 MiB: memslot 0 may be placed for 1 GiB, which KVM does not need kept. */
	p = map_placed(r0->fd, size, old, align, 1024 * 1024, &res, &res_size);
	assert_errno(attach_one(vm, 0, (u64)p, 0), EINVAL, "address off by 1 MiB");
	munmap(res, res_size);

	p = map_placed(r0->fd, size, old, align, 0, &res, &res_size);
	TEST_ASSERT(!madvise(p, size, MADV_HUGEPAGE), "madvise: errno %d", errno);
	TEST_ASSERT(!attach_one(vm, 0, (u64)p, 0), "attach at a congruent address: errno %d",
		    errno);
	assert_counting((u64 *)((u8 *)p + count_off), "after the move");
	/* With the NX huge page mitigation, executable memory maps small. */
	if (!nx_huge_pages_on())
		TEST_ASSERT(vm_get_stat(vm, pages_2m) > 0,
			    "no 2 MiB page mapped through the new address");
	kvm_vm_free(vm);
	munmap(res, res_size);
	wait_no_vcpu_task("close after the move");
	return NULL;
}

static void on_signal(int sig)
{
}

static bool stop_signals;

static void *signaller(void *arg)
{
	pthread_t target = *(pthread_t *)arg;

	while (!READ_ONCE(stop_signals)) {
		pthread_kill(target, SIGUSR1);
		sched_yield();
	}
	return NULL;
}

/*
 * Attach while signals arrive: a signal that is not fatal never makes an
 * attach fail (it used to leave the MMU notifier registered on no mm).
 */
static void test_attach_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal }, old_sa;
	struct userspace_mem_region *r0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	pthread_t me, t;
	int i;

	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);

	/* No SA_RESTART: a signal would show as EINTR. */
	TEST_ASSERT(!sigaction(SIGUSR1, &sa, &old_sa), "sigaction");
	me = pthread_self();
	WRITE_ONCE(stop_signals, false);
	TEST_ASSERT(!pthread_create(&t, NULL, signaller, &me), "pthread_create");
	for (i = 0; i < 200; i++) {
		TEST_ASSERT(!__vm_ioctl(vm, KVM_VM_DETACH, &no_flags), "detach %d: errno %d",
			    i, errno);
		TEST_ASSERT(!attach_one(vm, 0, r0->region.userspace_addr, 0),
			    "attach %d with signals arriving: errno %d", i, errno);
	}
	WRITE_ONCE(stop_signals, true);
	pthread_join(t, NULL);
	sigaction(SIGUSR1, &old_sa, NULL);

	assert_counting(addr_gva2hva(vm, (gva_t)&count), "after 200 attaches under signals");
	kvm_vm_free(vm);
	wait_no_vcpu_task("close after attaches under signals");
}

static int detach_to(struct kvm_vm *vm, int pidfd)
{
	struct kvm_vm_detach d = { .flags = KVM_VM_DETACH_SUCCESSOR, .successor_pidfd = pidfd };

	return __vm_ioctl(vm, KVM_VM_DETACH, &d);
}

/* Attach in a child and return its errno, 0 on success. */
static int attach_in_child(struct kvm_vm *vm, u64 addr, uid_t uid)
{
	int status;
	pid_t child = fork();

	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		if (uid && (seteuid(0) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)))
			_exit(255);
		_exit(attach_one(vm, 0, addr, 0) ? errno : 0);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status),
		    "attaching child: status 0x%x", status);
	return WEXITSTATUS(status);
}

/*
 * The VMM that detaches decides who may attach: the process it names with a
 * pidfd, and nobody else; or, naming none, its own euid at detach.
 */
static void test_permissions(void)
{
	struct kvm_vm_detach d = {};
	struct userspace_mem_region *r0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int pidfd, status, p[2];
	pid_t succ, child;
	u64 addr;
	char c;

	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);
	addr = r0->region.userspace_addr;

	TEST_ASSERT(!pipe(p), "pipe");
	succ = fork();
	TEST_ASSERT(succ >= 0, "fork");
	if (!succ) {
		if (read(p[0], &c, 1) != 1)
			_exit(254);
		_exit(attach_one(vm, 0, addr, 0) ? errno : 0);
	}
	pidfd = syscall(SYS_pidfd_open, succ, 0);
	TEST_ASSERT(pidfd >= 0, "pidfd_open: errno %d", errno);

	assert_errno(detach_to(vm, -1), EBADF, "successor -1");
	assert_errno(detach_to(vm, vm->fd), EBADF, "successor not a pidfd");
	d.successor_pidfd = pidfd;
	assert_errno(__vm_ioctl(vm, KVM_VM_DETACH, &d), EINVAL, "pidfd without the flag");
	TEST_ASSERT(!detach_to(vm, pidfd), "detach to a successor: errno %d", errno);

	/* Root, and a process of the same user, are not the successor. */
	assert_errno(attach_one(vm, 0, addr, 0), EPERM, "attach by the detaching VMM");
	TEST_ASSERT_EQ(attach_in_child(vm, addr, 0), EPERM);
	TEST_ASSERT(write(p[1], "x", 1) == 1, "write");
	TEST_ASSERT(waitpid(succ, &status, 0) == succ && WIFEXITED(status),
		    "successor: status 0x%x", status);
	TEST_ASSERT(!WEXITSTATUS(status), "the named successor could not attach: errno %d",
		    WEXITSTATUS(status));
	close(pidfd);
	close(p[0]);
	close(p[1]);
	kvm_vm_free(vm);
	wait_no_vcpu_task("after the named successor exited");

	/*
	 * A VMM that created its VM as root and dropped privileges hands it to
	 * its new user, and not to another.
	 */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
		start_and_tick(vm, vcpu);
		addr = memslot2region(vm, 0)->region.userspace_addr;
		if (setegid(65534) || seteuid(65534))
			_exit(1);
		if (__vm_ioctl(vm, KVM_VM_DETACH, &no_flags))
			_exit(2);
		if (attach_in_child(vm, addr, 65533) != EPERM)
			_exit(3);
		if (attach_in_child(vm, addr, 65534))
			_exit(4);
		_exit(0);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status),
		    "privilege-dropping VMM: status 0x%x", status);
	TEST_ASSERT(!WEXITSTATUS(status), "privilege-dropping VMM failed step %d",
		    WEXITSTATUS(status));
	wait_no_vcpu_task("after the privilege-dropping VMM");
}

#define MAX_DETACHED	"/proc/sys/user/max_kvm_detached_vms"

static void write_sysctl(const char *path, const char *v)
{
	FILE *f = fopen(path, "w");

	TEST_ASSERT(f, "open %s: errno %d", path, errno);
	TEST_ASSERT(fputs(v, f) >= 0 && !fclose(f), "write %s", path);
}

static char saved_max_detached[32];

static void restore_max_detached(void)
{
	write_sysctl(MAX_DETACHED, saved_max_detached);
}

/*
 * Detached VMs count per user against user.max_kvm_detached_vms, and the
 * count goes with an attach or the VM's last file: a detach-and-exit loop
 * leaves nothing behind.
 */
static void test_detached_limit(void)
{
	struct kvm_vcpu *vcpu[3];
	struct kvm_vm *vm[3];
	int i, status;
	pid_t child;
	FILE *f;

	f = fopen(MAX_DETACHED, "r");
	TEST_ASSERT(f, "open %s: errno %d", MAX_DETACHED, errno);
	TEST_ASSERT(fgets(saved_max_detached, sizeof(saved_max_detached), f), "read %s",
		    MAX_DETACHED);
	fclose(f);
	atexit(restore_max_detached);
	write_sysctl(MAX_DETACHED, "2");

	for (i = 0; i < 3; i++)
		vm[i] = create_vm(KVM_X86_DEFAULT_VM, &vcpu[i]);
	TEST_ASSERT(!__vm_ioctl(vm[0], KVM_VM_DETACH, &no_flags), "detach 1: errno %d", errno);
	TEST_ASSERT(!__vm_ioctl(vm[1], KVM_VM_DETACH, &no_flags), "detach 2: errno %d", errno);
	assert_errno(__vm_ioctl(vm[2], KVM_VM_DETACH, &no_flags), ENOSPC, "third detach");
	TEST_ASSERT(!attach_one(vm[0], 0, memslot2region(vm[0], 0)->region.userspace_addr, 0),
		    "attach: errno %d", errno);
	TEST_ASSERT(!__vm_ioctl(vm[2], KVM_VM_DETACH, &no_flags),
		    "detach after an attach: errno %d", errno);
	for (i = 0; i < 3; i++)
		kvm_vm_free(vm[i]);

	for (i = 0; i < 8; i++) {
		child = fork();
		TEST_ASSERT(child >= 0, "fork");
		if (!child) {
			vm[0] = create_vm(KVM_X86_DEFAULT_VM, &vcpu[0]);
			start_and_tick(vm[0], vcpu[0]);
			_exit(__vm_ioctl(vm[0], KVM_VM_DETACH, &no_flags) ? errno : 0);
		}
		TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status),
			    "detach-and-exit %d: status 0x%x", i, status);
		TEST_ASSERT(!WEXITSTATUS(status), "detach-and-exit %d: errno %d", i,
			    WEXITSTATUS(status));
	}
	wait_no_vcpu_task("detach-and-exit loop");
}

#define LOOP_SLOT	2
#define LOOP_GPA	0x20000000ull

struct in_flight {
	struct kvm_vm *vm;
	void *arg;
	int r;
	int err;
	bool done;
};

static void *set_region_thread(void *arg)
{
	struct in_flight *f = arg;

	f->r = __vm_ioctl(f->vm, KVM_SET_USER_MEMORY_REGION2,
			  (struct kvm_userspace_memory_region2 *)f->arg);
	f->err = errno;
	WRITE_ONCE(f->done, true);
	return NULL;
}

static void *detach_thread(void *arg)
{
	struct in_flight *f = arg;

	f->r = __vm_ioctl(f->vm, KVM_VM_DETACH, &no_flags);
	f->err = errno;
	WRITE_ONCE(f->done, true);
	return NULL;
}

/*
 * Detach while another VMM thread is inside a VM ioctl: one that began
 * before the detach, and is held in copy_from_user() by a userfaultfd, is
 * waited for, and what it did is the VM's when detach returns.
 */
static void test_detach_in_flight(void)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = LOOP_SLOT,
		.guest_phys_addr = LOOP_GPA,
		.memory_size = 4096,
	};
	struct uffdio_api api = { .api = UFFD_API };
	struct in_flight set = {}, det = {};
	struct kvm_vm_attach_slot s[2] = {};
	struct kvm_vm_attach a = { .slots = (u64)s };
	struct userspace_mem_region *r0;
	struct uffdio_register reg = {};
	struct uffdio_copy copy = {};
	long page = getpagesize();
	struct kvm_vcpu *vcpu;
	struct uffd_msg msg;
	pthread_t t1, t2;
	struct kvm_vm *vm;
	struct pollfd pfd;
	int uffd, fd;
	void *arg, *src;

	vm = create_vm(KVM_X86_DEFAULT_VM, &vcpu);
	start_and_tick(vm, vcpu);
	r0 = memslot2region(vm, 0);
	fd = kvm_memfd_alloc(4096, false);
	region.userspace_addr = (u64)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(region.userspace_addr != (u64)MAP_FAILED, "mmap");

	/* Kernel-mode faults: no UFFD_USER_MODE_ONLY (this test runs as root). */
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	TEST_ASSERT(uffd >= 0, "userfaultfd: errno %d", errno);
	TEST_ASSERT(!ioctl(uffd, UFFDIO_API, &api), "UFFDIO_API: errno %d", errno);
	arg = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(arg != MAP_FAILED && src != MAP_FAILED, "mmap");
	reg.range.start = (u64)arg;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	TEST_ASSERT(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER: errno %d", errno);

	/* The ioctl passes the owner check, then waits for its argument. */
	set.vm = vm;
	set.arg = arg;
	TEST_ASSERT(!pthread_create(&t1, NULL, set_region_thread, &set), "pthread_create");
	pfd.fd = uffd;
	pfd.events = POLLIN;
	TEST_ASSERT(poll(&pfd, 1, 20000) == 1, "the VM ioctl did not fault on its argument");
	TEST_ASSERT(read(uffd, &msg, sizeof(msg)) == sizeof(msg) &&
		    msg.event == UFFD_EVENT_PAGEFAULT, "userfaultfd event");

	det.vm = vm;
	TEST_ASSERT(!pthread_create(&t2, NULL, detach_thread, &det), "pthread_create");
	usleep(300000);
	TEST_ASSERT(!READ_ONCE(det.done),
		    "detach returned while a VM ioctl that began before it was in flight");
	/* Nobody attaches meanwhile (a child: same mappings, new mm). */
	TEST_ASSERT_EQ(attach_in_child(vm, r0->region.userspace_addr, 0), EAGAIN);

	memcpy(src, &region, sizeof(region));
	copy.dst = (u64)arg;
	copy.src = (u64)src;
	copy.len = page;
	TEST_ASSERT(!ioctl(uffd, UFFDIO_COPY, &copy), "UFFDIO_COPY: errno %d", errno);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	TEST_ASSERT(!set.r, "the VM ioctl that began before the detach failed: errno %d",
		    set.err);
	TEST_ASSERT(!det.r, "detach: errno %d", det.err);

	/* The memslot it added is the VM's: attach has to list it. */
	s[0].slot = 0;
	s[0].userspace_addr = r0->region.userspace_addr;
	s[1].slot = LOOP_SLOT;
	s[1].userspace_addr = region.userspace_addr;
	a.nr_slots = 1;
	assert_errno(ioctl(vm->fd, KVM_VM_ATTACH, &a), EINVAL, "attach without the new memslot");
	a.nr_slots = 2;
	TEST_ASSERT(!ioctl(vm->fd, KVM_VM_ATTACH, &a), "attach: errno %d", errno);
	assert_counting(addr_gva2hva(vm, (gva_t)&count), "after detaching under a VM ioctl");

	kvm_vm_free(vm);
	close(uffd);
	munmap(arg, page);
	munmap(src, page);
	munmap((void *)region.userspace_addr, 4096);
	close(fd);
	wait_no_vcpu_task("close after detaching under a VM ioctl");
}

int main(int argc, char *argv[])
{
	const char *skip;

	if (argc == 3 && !strcmp(argv[1], "--new-vmm"))
		return new_vmm(atoi(argv[2]));

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VM_HANDOVER));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));

	ksft_print_header();
	ksft_set_plan(8);

	test_errors();
	ksft_test_result_pass("errors, old mm, other user, SIGKILL, exit counted while detached\n");
	skip = test_remap();
	if (skip)
		ksft_test_result_skip("re-mapping: %s\n", skip);
	else
		ksft_test_result_pass("re-mapping: misaligned refused, congruent taken\n");
	test_attach_signals();
	ksft_test_result_pass("attach while signals arrive\n");
	if (geteuid()) {
		ksft_print_msg("not root: no userfaultfd for kernel faults, setuid or sysctl\n");
		ksft_test_result_skip("detach waits for VM ioctls in flight\n");
		ksft_test_result_skip("permissions\n");
		ksft_test_result_skip("detached VMs: per-user limit\n");
	} else {
		test_detach_in_flight();
		ksft_test_result_pass("detach waits for a VM ioctl in flight\n");
		test_permissions();
		ksft_test_result_pass("permissions: named successor, euid at detach\n");
		test_detached_limit();
		ksft_test_result_pass("detached VMs: per-user limit, no leak\n");
	}
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
