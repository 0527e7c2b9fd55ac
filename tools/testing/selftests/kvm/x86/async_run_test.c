// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_RUN_ASYNC: a vCPU runs in a kernel task of its own; its exits park it,
 * the vCPU file polls readable, and the VMM completes them through kvm_run.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "async_run.h"

#define MMIO_GPA	0xc0000000ull
#define MMIO_VALUE	0x12345678abcdef01ull
#define PIO_PORT	0x80
#define PIO_VALUE	0xa5
#define NR_SYNCS	100
#define XMM_PATTERN	0x5a5a0000c3c30000ull

#define VALID_FLAGS	(KVM_RUN_ASYNC_STOP | KVM_RUN_ASYNC_QUERY)

/* Written by the host, read by the guest while it spins. */
static u64 release;

static void guest_spin(u64 want)
{
	while (READ_ONCE(release) < want)
		cpu_relax();
}

static void guest_code(void)
{
	u64 i, v;
	u8 b;

	/* Port I/O and MMIO exits, completed by the VMM through kvm_run. */
	asm volatile("inb %w1, %b0" : "=a"(b) : "Nd"(PIO_PORT));
	GUEST_ASSERT_EQ(b, PIO_VALUE);
	v = READ_ONCE(*(u64 *)MMIO_GPA);
	GUEST_ASSERT_EQ(v, MMIO_VALUE);

	/* Every exit reaches the VMM exactly once, in order. */
	for (i = 0; i < NR_SYNCS; i++)
		GUEST_SYNC(i);

	/* Run with no exit until the VMM says so. */
	guest_spin(1);
	GUEST_SYNC(NR_SYNCS);
	guest_spin(2);
	GUEST_DONE();
}

static void set_xmm(u64 v)
{
	asm volatile("movq %0, %%xmm0\n\t"
		     "movq %0, %%xmm1\n\t"
		     "movq %0, %%xmm2\n\t"
		     "movq %0, %%xmm3\n\t"
		     "movq %0, %%xmm4\n\t"
		     "movq %0, %%xmm5\n\t"
		     "movq %0, %%xmm6\n\t"
		     "movq %0, %%xmm7"
		     : : "r"(v) : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
				  "xmm5", "xmm6", "xmm7");
}

/* The first xmm register whose low quadword is not @v, or -1. */
static int check_xmm(u64 v)
{
	u64 x[8];

	asm volatile("movq %%xmm0, %0\n\t"
		     "movq %%xmm1, %1\n\t"
		     "movq %%xmm2, %2\n\t"
		     "movq %%xmm3, %3\n\t"
		     "movq %%xmm4, %4\n\t"
		     "movq %%xmm5, %5\n\t"
		     "movq %%xmm6, %6\n\t"
		     "movq %%xmm7, %7"
		     : "=r"(x[0]), "=r"(x[1]), "=r"(x[2]), "=r"(x[3]),
		       "=r"(x[4]), "=r"(x[5]), "=r"(x[6]), "=r"(x[7]));
	for (int i = 0; i < 8; i++)
		if (x[i] != v)
			return i;
	return -1;
}

static void guest_spin_code(void)
{
	for (;;)
		cpu_relax();
}

/* The guest's SSE registers survive while its task is preempted. */
static void guest_fpu_code(void)
{
	int bad;

	set_xmm(XMM_PATTERN);
	GUEST_SYNC(0);
	while (READ_ONCE(release) < 1) {
		bad = check_xmm(XMM_PATTERN);
		__GUEST_ASSERT(bad < 0, "xmm%d lost the guest's value", bad);
	}
	bad = check_xmm(XMM_PATTERN);
	__GUEST_ASSERT(bad < 0, "xmm%d lost the guest's value", bad);
	GUEST_DONE();
}

static int __run_async(struct kvm_vcpu *vcpu, u32 flags, struct kvm_run_async *ra)
{
	memset(ra, 0, sizeof(*ra));
	ra->flags = flags;
	return __vcpu_ioctl(vcpu, KVM_RUN_ASYNC, ra);
}

static struct kvm_run_async run_async(struct kvm_vcpu *vcpu, u32 flags)
{
	struct kvm_run_async ra;
	int r = __run_async(vcpu, flags, &ra);

	TEST_ASSERT(!r, "KVM_RUN_ASYNC(0x%x) failed: %d errno %d", flags, r, errno);
	return ra;
}

/* Whether the vCPU file is readable (the vCPU is parked or synchronous). */
static bool vcpu_readable(struct kvm_vcpu *vcpu, int timeout_ms)
{
	struct pollfd pfd = { .fd = vcpu->fd, .events = POLLIN };
	int r = poll(&pfd, 1, timeout_ms);

	TEST_ASSERT(r >= 0, "poll failed: errno %d", errno);
	return r == 1 && (pfd.revents & POLLIN);
}

/*
 * get_ucall() completes the exit with an immediate KVM_RUN, which a vCPU
 * with its own task refuses: read the ucall and leave its completion to the
 * next KVM_RUN_ASYNC.
 */
static u64 async_get_ucall(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	void *addr = ucall_arch_get_ucall(vcpu);

	memset(uc, 0, sizeof(*uc));
	if (addr)
		memcpy(uc, addr, sizeof(*uc));
	return uc->cmd;
}

/* Wait for the next exit of an asynchronous vCPU and return its ucall. */
static u64 wait_exit(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	struct kvm_run_async ra;

	TEST_ASSERT(vcpu_readable(vcpu, 20000), "the vCPU did not park within 20 s");
	ra = run_async(vcpu, KVM_RUN_ASYNC_QUERY);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_PARKED);
	TEST_ASSERT_EQ(ra.result, 0);
	return async_get_ucall(vcpu, uc);
}

static void expect_sync(struct kvm_vcpu *vcpu, u64 n)
{
	struct ucall uc;
	u64 cmd = wait_exit(vcpu, &uc);

	if (cmd == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT(cmd == UCALL_SYNC, "expected UCALL_SYNC, got %lu", cmd);
	TEST_ASSERT(uc.args[1] == n, "expected sync %lu, got %lu", n, uc.args[1]);
}

/* Every vCPU ioctl but KVM_RUN_ASYNC fails while the vCPU's task runs it. */
static void check_busy(struct kvm_vcpu *vcpu)
{
	struct kvm_run_async ra;
	struct kvm_regs regs;
	int r;

	TEST_ASSERT(!vcpu_readable(vcpu, 0), "a running vCPU polls readable");

	r = __vcpu_ioctl(vcpu, KVM_GET_REGS, &regs);
	TEST_ASSERT(r == -1 && errno == EBUSY, "KVM_GET_REGS: %d errno %d", r, errno);
	r = __vcpu_ioctl(vcpu, KVM_RUN, NULL);
	TEST_ASSERT(r == -1 && errno == EBUSY, "KVM_RUN: %d errno %d", r, errno);
	r = __run_async(vcpu, 0, &ra);
	TEST_ASSERT(r == -1 && errno == EBUSY, "resume while running: %d errno %d", r, errno);

	ra = run_async(vcpu, KVM_RUN_ASYNC_QUERY);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_RUNNING);
}

static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, void *code)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, code);

	virt_map(vm, MMIO_GPA, MMIO_GPA, 1);
	sync_global_to_guest(vm, release);
	return vm;
}

static void set_release(struct kvm_vm *vm, u64 v)
{
	WRITE_ONCE(*(u64 *)addr_gva2hva(vm, (gva_t)&release), v);
}

static void test_exits(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_run_async ra;
	struct kvm_vm *vm;
	struct ucall uc;
	u64 i;

	vm = create_vm(&vcpu, guest_code);

	ra = run_async(vcpu, KVM_RUN_ASYNC_QUERY);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_SYNC);
	TEST_ASSERT(vcpu_readable(vcpu, 0), "a synchronous vCPU must poll readable");

	ra = run_async(vcpu, 0);
	TEST_ASSERT(ra.state == KVM_RUN_ASYNC_STATE_RUNNING ||
		    ra.state == KVM_RUN_ASYNC_STATE_PARKED, "state %u", ra.state);

	/* Port I/O in: the VMM supplies the byte the guest reads. */
	TEST_ASSERT(vcpu_readable(vcpu, 20000), "no exit within 20 s");
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu->run->io.port, PIO_PORT);
	TEST_ASSERT_EQ(vcpu->run->io.direction, KVM_EXIT_IO_IN);
	*((u8 *)vcpu->run + vcpu->run->io.data_offset) = PIO_VALUE;
	run_async(vcpu, 0);

	/* MMIO read: the VMM supplies the value. */
	TEST_ASSERT(vcpu_readable(vcpu, 20000), "no exit within 20 s");
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_MMIO);
	TEST_ASSERT_EQ(vcpu->run->mmio.phys_addr, MMIO_GPA);
	TEST_ASSERT_EQ(vcpu->run->mmio.is_write, 0);
	TEST_ASSERT_EQ(vcpu->run->mmio.len, 8);
	memcpy(vcpu->run->mmio.data, &(u64){ MMIO_VALUE }, 8);
	run_async(vcpu, 0);

	for (i = 0; i < NR_SYNCS; i++) {
		expect_sync(vcpu, i);
		run_async(vcpu, 0);
	}

	/* The guest spins with no exit: the vCPU belongs to its task. */
	usleep(10000);
	check_busy(vcpu);
	set_release(vm, 1);
	expect_sync(vcpu, NR_SYNCS);

	/* A parked vCPU serves other ioctls, but not KVM_RUN. */
	vcpu_regs_get(vcpu, &(struct kvm_regs){});
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_RUN, NULL) == -1 && errno == EBUSY,
		    "KVM_RUN on a parked asynchronous vCPU: errno %d", errno);
	run_async(vcpu, 0);

	/*
	 * Stop while the guest spins: the vCPU exits as for a signal and is
	 * synchronous again; KVM_RUN continues the same guest.
	 */
	usleep(10000);
	check_busy(vcpu);
	ra = run_async(vcpu, KVM_RUN_ASYNC_STOP);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_SYNC);
	TEST_ASSERT_EQ(ra.result, -EINTR);
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_INTR);
	TEST_ASSERT(vcpu_readable(vcpu, 0), "a stopped vCPU must poll readable");

	/* Stopping a synchronous vCPU does nothing. */
	ra = run_async(vcpu, KVM_RUN_ASYNC_STOP);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_SYNC);

	set_release(vm, 2);
	vcpu_run(vcpu);
	TEST_ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_DONE);

	kvm_vm_free(vm);
}

static bool stop_noise;

/* Keep the CPUs busy with other FPU state, so that the vCPU task is preempted. */
static void *fpu_noise(void *arg)
{
	while (!READ_ONCE(stop_noise)) {
		set_xmm(~XMM_PATTERN);
		TEST_ASSERT(check_xmm(~XMM_PATTERN) < 0, "host xmm lost");
	}
	return NULL;
}

static void test_fpu(void)
{
	pthread_t noise[2];
	struct kvm_vcpu *vcpu;
	long before, after;
	struct kvm_vm *vm;
	struct ucall uc;
	int i;

	vm = create_vm(&vcpu, guest_fpu_code);
	run_async(vcpu, 0);
	expect_sync(vcpu, 0);
	run_async(vcpu, 0);

	TEST_ASSERT(vcpu_tasks(&before) == 1, "the vCPU task was not found in /proc");
	WRITE_ONCE(stop_noise, false);
	for (i = 0; i < 2; i++)
		pthread_create(&noise[i], NULL, fpu_noise, NULL);

	/* Until the task was preempted a few times, at most 10 s. */
	for (i = 0; i < 1000; i++) {
		usleep(10000);
		vcpu_tasks(&after);
		if (after - before >= 20 || vcpu_readable(vcpu, 0))
			break;
	}
	WRITE_ONCE(stop_noise, true);
	for (i = 0; i < 2; i++)
		pthread_join(noise[i], NULL);
	set_release(vm, 1);

	if (wait_exit(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
	ksft_print_msg("vCPU task preempted %ld times while the guest checked its xmm registers\n",
		       after - before);
	TEST_ASSERT(after - before > 0,
		    "the vCPU task was never preempted: the test proved nothing");
	kvm_vm_free(vm);
}

static void test_errors(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_run_async ra;
	struct kvm_vm *vm;
	pid_t child;
	int r, i, status;

	vm = create_vm(&vcpu, guest_code);

	for (i = 0; i < 32; i++) {
		if (BIT(i) & VALID_FLAGS)
			continue;
		r = __run_async(vcpu, BIT(i), &ra);
		TEST_ASSERT(r == -1 && errno == EINVAL, "flag 0x%lx: %d errno %d",
			    BIT(i), r, errno);
	}
	r = __run_async(vcpu, KVM_RUN_ASYNC_STOP | KVM_RUN_ASYNC_QUERY, &ra);
	TEST_ASSERT(r == -1 && errno == EINVAL, "STOP|QUERY: %d errno %d", r, errno);

	memset(&ra, 0, sizeof(ra));
	ra.pad = 1;
	r = __vcpu_ioctl(vcpu, KVM_RUN_ASYNC, &ra);
	TEST_ASSERT(r == -1 && errno == EINVAL, "pad: %d errno %d", r, errno);
	for (i = 0; i < ARRAY_SIZE(ra.reserved); i++) {
		memset(&ra, 0, sizeof(ra));
		ra.reserved[i] = 1;
		r = __vcpu_ioctl(vcpu, KVM_RUN_ASYNC, &ra);
		TEST_ASSERT(r == -1 && errno == EINVAL, "reserved[%d]: %d errno %d", i, r, errno);
	}
	r = ioctl(vcpu->fd, KVM_RUN_ASYNC, (void *)8);
	TEST_ASSERT(r == -1 && errno == EFAULT, "bad pointer: %d errno %d", r, errno);

	/* Another process (another mm) cannot drive the vCPU. */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		memset(&ra, 0, sizeof(ra));
		r = ioctl(vcpu->fd, KVM_RUN_ASYNC, &ra);
		_exit(r == -1 && errno == EIO ? 0 : 1);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
		    !WEXITSTATUS(status), "KVM_RUN_ASYNC from another mm must fail with EIO");

	/* Nothing was started by the failed calls. */
	ra = run_async(vcpu, KVM_RUN_ASYNC_QUERY);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_SYNC);
	TEST_ASSERT_EQ(vcpu_tasks(NULL), 0);
	kvm_vm_free(vm);
}

/* The VM lives as long as its files; its last close stops the vCPU's task. */
static void test_lifetime(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	pid_t child;
	int status;

	vm = create_vm(&vcpu, guest_code);
	run_async(vcpu, 0);
	TEST_ASSERT(vcpu_readable(vcpu, 20000), "no exit within 20 s");
	TEST_ASSERT_EQ(vcpu_tasks(NULL), 1);
	kvm_vm_free(vm);
	wait_no_vcpu_task("close while parked");

	vm = create_vm(&vcpu, guest_spin_code);
	run_async(vcpu, 0);
	usleep(10000);
	check_busy(vcpu);
	kvm_vm_free(vm);
	wait_no_vcpu_task("close while running");

	/* A VMM killed while its vCPU runs in the guest. */
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		vm = create_vm(&vcpu, guest_spin_code);
		run_async(vcpu, 0);
		usleep(10000);
		check_busy(vcpu);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFSIGNALED(status),
		    "the child was not killed");
	wait_no_vcpu_task("SIGKILL of the VMM");
}

#define MEMCG_GPA	0x10000000ull
#define MEMCG_SLOT	1
#define MEMCG_SIZE	(64ull << 20)

/* Touch every page of the memcg test's slot. */
static void guest_touch_code(void)
{
	u64 i;

	for (i = 0; i < MEMCG_SIZE; i += 4096)
		WRITE_ONCE(*(u64 *)(MEMCG_GPA + i), i);
	GUEST_DONE();
}

static bool write_file(const char *dir, const char *name, const char *val)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	fputs(val, f);
	return !fclose(f);
}

static u64 memcg_stat(const char *dir, const char *key)
{
	char path[256], name[64];
	unsigned long long v;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	f = fopen(path, "r");
	TEST_ASSERT(f, "open %s", path);
	while (fscanf(f, "%63s %llu", name, &v) == 2) {
		if (!strcmp(name, key)) {
			fclose(f);
			return v;
		}
	}
	fclose(f);
	TEST_FAIL("no %s in %s", key, path);
	return 0;
}

/* Where cgroup2 is mounted, mounting it if nothing has. */
static bool cgroup2_root(char *root, size_t len)
{
	char dev[64], dir[256], type[64];
	bool found = false;
	FILE *f = fopen("/proc/self/mounts", "r");

	while (f && fscanf(f, "%63s %255s %63s %*[^\n]", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2")) {
			snprintf(root, len, "%s", dir);
			found = true;
			break;
		}
	}
	if (f)
		fclose(f);
	if (found)
		return true;
	snprintf(root, len, "/tmp/async-run-test-cgroup2");
	mkdir(root, 0755);
	return !mount("none", root, "cgroup2", 0, NULL);
}

/*
 * The memcg test, in a child that moves itself into a new memory cgroup:
 * the vCPU task's kernel allocations for the guest (KVM's page tables) are
 * the VMM's, so they are charged to the VMM's cgroup.
 */
static int memcg_child(void)
{
	char root[256], cg[320], stat[340], pid[32];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	u64 before, after, anon;

	if (!cgroup2_root(root, sizeof(root))) {
		ksft_print_msg("cgroup2 is not mounted and cannot be\n");
		return KSFT_SKIP;
	}
	/* Fails harmlessly where the controller is enabled already. */
	write_file(root, "cgroup.subtree_control", "+memory");
	snprintf(cg, sizeof(cg), "%s/async-run-test-%d", root, getpid());
	if (mkdir(cg, 0755) && errno != EEXIST) {
		ksft_print_msg("mkdir %s: errno %d\n", cg, errno);
		return KSFT_SKIP;
	}
	snprintf(pid, sizeof(pid), "%d", getpid());
	snprintf(stat, sizeof(stat), "%s/memory.stat", cg);
	if (access(stat, R_OK) ||
	    !write_file(cg, "cgroup.procs", pid)) {
		ksft_print_msg("no memory controller in %s\n", cg);
		return KSFT_SKIP;
	}

	before = memcg_stat(cg, "sec_pagetables");
	vm = vm_create_with_one_vcpu(&vcpu, guest_touch_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, MEMCG_GPA, MEMCG_SLOT,
				    MEMCG_SIZE / 4096, 0);
	virt_map(vm, MEMCG_GPA, MEMCG_GPA, MEMCG_SIZE / 4096);
	anon = memcg_stat(cg, "anon");

	run_async(vcpu, 0);
	TEST_ASSERT(vcpu_readable(vcpu, 60000), "the guest did not finish within 60 s");
	TEST_ASSERT_EQ(async_get_ucall(vcpu, &uc), UCALL_DONE);
	after = memcg_stat(cg, "sec_pagetables");
	ksft_print_msg("memcg: sec_pagetables %lu -> %lu bytes, anon %lu -> %lu bytes\n",
		       before, after, anon, memcg_stat(cg, "anon"));
	TEST_ASSERT(after > before,
		    "KVM's page tables built by the vCPU task were not charged to the VMM's memcg");
	TEST_ASSERT(memcg_stat(cg, "anon") >= anon + MEMCG_SIZE / 2,
		    "guest memory faulted in by the vCPU task was not charged to the VMM's memcg");
	kvm_vm_free(vm);
	wait_no_vcpu_task("memcg test");
	return 0;
}

static int test_memcg(void)
{
	char root[256], cg[320];
	int status;
	pid_t child;

	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child)
		_exit(memcg_child());
	TEST_ASSERT(waitpid(child, &status, 0) == child && WIFEXITED(status),
		    "memcg child: status 0x%x", status);
	if (cgroup2_root(root, sizeof(root))) {
		snprintf(cg, sizeof(cg), "%s/async-run-test-%d", root, child);
		rmdir(cg);
	}
	TEST_ASSERT(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == KSFT_SKIP,
		    "memcg child failed: %d", WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

int main(int argc, char *argv[])
{
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));
	TEST_ASSERT_EQ(kvm_check_cap(KVM_CAP_VCPU_ASYNC_RUN), VALID_FLAGS);

	ksft_print_header();
	ksft_set_plan(5);

	test_errors();
	ksft_test_result_pass("error paths\n");
	test_exits();
	ksft_test_result_pass("port I/O, MMIO and sync exits, busy, stop\n");
	test_fpu();
	ksft_test_result_pass("guest FPU state across preemption\n");
	test_lifetime();
	ksft_test_result_pass("lifetime: close parked, close running, SIGKILL\n");
	if (test_memcg())
		ksft_test_result_skip("memcg: no cgroup2 memory controller\n");
	else
		ksft_test_result_pass("memcg: the vCPU task charges the VMM's memory cgroup\n");

	ksft_finished();
}
