// SPDX-License-Identifier: GPL-2.0-only
/*
 * What KVM_CAP_VM_PRESERVE costs, across a kexec: the guest's blackout, and
 * the time of PRESERVE_FD and RETRIEVE_FD for VMs of 1 to 8 vCPUs and 64 MiB
 * to 4 GiB of guest memory.
 *
 *   vm_preserve_perf_test -s 1|2 [-r rounds] [-o file] [-d]
 *
 * Stage 1 (-s 1), before the kexec, runs a 2-vCPU guest whose vCPUs count
 * without exits in memfd-backed memory, stops it, records the time and the
 * counters, and preserves the memfd, the VM and the vCPUs in the session
 * "kvm-perf-live".  It then builds the cost matrix: for each number of vCPUs
 * and each memory size, three VMs whose memslot 1 is an untouched (sparse)
 * memfd at 4 GiB, which is not preserved: KVM never touches guest memory to
 * preserve or retrieve a VM, so both costs should not depend on its size.
 * The first VM is preserved and unpreserved (the session closed) -r times,
 * then all three go into the session "kvm-perf-matrix".  What stage 2 needs,
 * and the medians of stage 1, go into a memfd of "kvm-perf-live"; a child
 * keeps the sessions open and stage 1 exits.
 *
 * Stage 2 (-s 2), in the new kernel, retrieves the live VM, adds its memslot
 * again, retrieves its vCPUs and runs them until both counters move on: the
 * blackout is from the stop in stage 1 to that moment, in CLOCK_REALTIME,
 * which the new kernel sets from the RTC (so it is good to about 1 s).  It
 * then retrieves every VM of the matrix with its vCPUs, adds memslot 1 again
 * from a new sparse memfd, and prints the medians; -o writes them to a file
 * as "key value" lines.
 *
 * -d (a demonstration) leaves out the matrix and shows the guest counting
 * before the stop and after the resume; stage 2 follows what stage 1 did, so
 * it measures the matrix if and only if stage 1 preserved one.  -r applies to
 * stage 1, -o to stage 2.  Asserts nothing about time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/liveupdate.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "async_run.h"
#include "libliveupdate.h"
#include "kvm_luo_util.h"

#define NR_LIVE_VCPUS	2
#define MAX_VCPUS	8
#define NR_VCPU_COUNTS	4
#define NR_SIZES	3
#define NR_CFGS		(NR_VCPU_COUNTS * NR_SIZES)
#define NR_COPIES	3	/* VMs per configuration, for the retrieve */

#define MATRIX_SLOT	1
#define MATRIX_GPA	0x100000000ull

#define TOKEN_MEM0	1
#define TOKEN_STATE	2
#define TOKEN_VM	10
#define TOKEN_VCPU	20
#define TOKEN_MATRIX	1000	/* + 16 per VM: the VM, then its vCPUs */

#define SESSION_LIVE	"kvm-perf-live"
#define SESSION_MATRIX	"kvm-perf-matrix"
#define SESSION_ROUND	"kvm-perf-round"

#define STATE_MAGIC	0x66727076726c6b6bull	/* "kklrvprf" */
#define TIMEOUT_NS	(60 * 1000000000ull)
#define DEMO_MS		2000
#define DEMO_STEP_MS	250

static const int vcpu_counts[NR_VCPU_COUNTS] = { 1, 2, 4, 8 };
static const u64 mem_sizes[NR_SIZES] = { 64ull << 20, 1ull << 30, 4ull << 30 };
static const char * const size_names[NR_SIZES] = { "64M", "1G", "4G" };
static const char * const size_labels[NR_SIZES] = { "64 MiB", "1 GiB", "4 GiB" };

/* Guest data, in memslot 0. */
static u64 counters[NR_LIVE_VCPUS];

static void guest_code(u64 id)
{
	for (;;)
		WRITE_ONCE(counters[id], READ_ONCE(counters[id]) + 1);
}

static void guest_spin_code(void)
{
	for (;;)
		cpu_relax();
}

struct matrix_cfg {
	u32 nr_vcpus;
	u32 slot_flags;
	u64 gpa;
	u64 size;
	u64 tokens[NR_COPIES];		/* of each VM; vCPU i is token + 1 + i */
	double preserve_ms;		/* median of the rounds of stage 1 */
};

/* What stage 1 tells stage 2, in the preserved "state" memfd. */
struct perf_state {
	u64 magic;
	u64 t_stop_ns;			/* CLOCK_REALTIME, when both vCPUs stopped */
	u64 counters_gpa;
	u64 counters[NR_LIVE_VCPUS];
	struct {
		u32 slot;
		u32 flags;
		u64 gpa;
		u64 size;
	} slot0;
	u32 demo;
	u32 rounds;
	u32 nr_cfgs;			/* 0: no matrix */
	u32 pad;
	struct matrix_cfg cfgs[NR_CFGS];
};

static u64 clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static u64 now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static double ms_since(u64 t0, u64 t1)
{
	return (t1 - t0) / 1e6;
}

/* A vCPU that exited is readable: the guests here never exit. */
static void assert_not_exited(int vcpu_fd, int vcpu)
{
	struct pollfd pfd = { .fd = vcpu_fd, .events = POLLIN };

	TEST_ASSERT(poll(&pfd, 1, 0) == 0, "vCPU %d exited", vcpu);
}

/* Wait until every counter is past @from; returns the monotonic time. */
static u64 wait_progress(u64 *counts, const u64 *from, const char *when)
{
	u64 t0 = now_ns(), t;
	int i, n;

	for (;;) {
		t = now_ns();
		for (i = 0, n = 0; i < NR_LIVE_VCPUS; i++)
			n += READ_ONCE(counts[i]) > from[i];
		if (n == NR_LIVE_VCPUS)
			return t;
		TEST_ASSERT(t - t0 < TIMEOUT_NS, "the guest made no progress %s", when);
		sched_yield();
	}
}

static void print_counting(u64 *counts)
{
	int t, i;

	for (t = 0; t < DEMO_MS; t += DEMO_STEP_MS) {
		usleep(DEMO_STEP_MS * 1000);
		printf("guest counting:");
		for (i = 0; i < NR_LIVE_VCPUS; i++)
			printf(" vCPU%d %lu", i, READ_ONCE(counts[i]));
		printf("\n");
		fflush(stdout);
	}
}

/* Stage 1. */

/* The live VM: run, stopped, recorded in @st and preserved. */
static int preserve_live_vm(int luo_fd, struct perf_state *st, bool demo)
{
	struct vm_shape shape = VM_SHAPE_DEFAULT;
	struct kvm_vcpu *vcpus[NR_LIVE_VCPUS];
	struct userspace_mem_region *r;
	u64 zero[NR_LIVE_VCPUS] = {};
	struct kvm_vm *vm;
	u64 *counts;
	int s, i;

	shape.src_type = VM_MEM_SRC_SHMEM;
	vm = __vm_create(shape, NR_LIVE_VCPUS, 0);
	vm_enable_cap(vm, KVM_CAP_VM_PRESERVE, 0);
	for (i = 0; i < NR_LIVE_VCPUS; i++) {
		vcpus[i] = vm_vcpu_add(vm, i, guest_code);
		vcpu_args_set(vcpus[i], 1, (u64)i);
	}
	counts = addr_gva2hva(vm, (gva_t)counters);

	for (i = 0; i < NR_LIVE_VCPUS; i++)
		start_vcpu(vcpus[i]->fd);
	wait_progress(counts, zero, "in stage 1");
	if (demo)
		print_counting(counts);
	for (i = 0; i < NR_LIVE_VCPUS; i++) {
		assert_not_exited(vcpus[i]->fd, i);
		stop_vcpu(vcpus[i]->fd);
	}
	st->t_stop_ns = clock_ns(CLOCK_REALTIME);

	r = memslot2region(vm, 0);
	TEST_ASSERT(r->fd >= 0 && r->offset == 0, "slot 0 is not a whole memfd");
	st->slot0.slot = r->region.slot;
	st->slot0.flags = r->region.flags;
	st->slot0.gpa = r->region.guest_phys_addr;
	st->slot0.size = r->region.memory_size;
	st->counters_gpa = addr_gva2gpa(vm, (gva_t)counters);
	for (i = 0; i < NR_LIVE_VCPUS; i++)
		st->counters[i] = READ_ONCE(counts[i]);

	/* Guest memory, then the VM, then its vCPUs. */
	s = create_session(luo_fd, SESSION_LIVE);
	preserve_fd(s, r->fd, TOKEN_MEM0);
	preserve_fd(s, vm->fd, TOKEN_VM);
	for (i = 0; i < NR_LIVE_VCPUS; i++)
		preserve_fd(s, vcpus[i]->fd, TOKEN_VCPU + i);

	if (demo) {
		printf("guest stopped at vCPU0 %lu vCPU1 %lu, VM preserved\n",
		       st->counters[0], st->counters[1]);
	} else {
		printf("live VM: %d vCPUs stopped at %lu and %lu, slot 0 %lu KiB, ",
		       NR_LIVE_VCPUS, st->counters[0], st->counters[1], st->slot0.size >> 10);
		printf("preserved in %s\n", SESSION_LIVE);
	}

	/* The VM, its files and the session stay open for the kexec. */
	return s;
}

struct matrix_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	int nr_vcpus;
};

/* A VM with memslot 1 on a sparse memfd of @size that nothing touches. */
static void create_matrix_vm(struct matrix_vm *m, int nr_vcpus, u64 size)
{
	void *mem;
	int fd, i;

	m->nr_vcpus = nr_vcpus;
	m->vm = __vm_create(VM_SHAPE_DEFAULT, nr_vcpus, 0);
	vm_enable_cap(m->vm, KVM_CAP_VM_PRESERVE, 0);

	fd = memfd_create("kvm-perf-mem", MFD_CLOEXEC);
	TEST_ASSERT(fd >= 0, "memfd_create: errno %d", errno);
	TEST_ASSERT(!ftruncate(fd, size), "ftruncate %lu: errno %d", size, errno);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(mem != MAP_FAILED, "mmap %lu: errno %d", size, errno);
	close(fd);
	vm_set_user_memory_region(m->vm, MATRIX_SLOT, 0, MATRIX_GPA, size, mem);

	for (i = 0; i < nr_vcpus; i++)
		m->vcpus[i] = vm_vcpu_add(m->vm, i, guest_spin_code);
}

static void preserve_matrix_vm(int session_fd, struct matrix_vm *m, u64 token)
{
	int i;

	preserve_fd(session_fd, m->vm->fd, token);
	for (i = 0; i < m->nr_vcpus; i++)
		preserve_fd(session_fd, m->vcpus[i]->fd, token + 1 + i);
}

/* Each configuration: the preserve timed, then NR_COPIES VMs kept preserved. */
static int preserve_matrix(int luo_fd, struct perf_state *st, int rounds)
{
	struct matrix_vm *vms;
	double t[64];
	int s, c, k, i, tmp;
	u64 t0, token;

	vms = calloc(NR_CFGS * NR_COPIES, sizeof(*vms));
	TEST_ASSERT(vms, "calloc");
	s = create_session(luo_fd, SESSION_MATRIX);

	for (c = 0; c < NR_CFGS; c++) {
		struct matrix_cfg *cfg = &st->cfgs[c];
		struct matrix_vm *m = &vms[c * NR_COPIES];

		cfg->nr_vcpus = vcpu_counts[c / NR_SIZES];
		cfg->size = mem_sizes[c % NR_SIZES];
		cfg->gpa = MATRIX_GPA;
		cfg->slot_flags = 0;
		for (k = 0; k < NR_COPIES; k++)
			create_matrix_vm(&m[k], cfg->nr_vcpus, cfg->size);

		/* Closing the session unpreserves the VM and its vCPUs. */
		for (i = 0; i < rounds; i++) {
			tmp = create_session(luo_fd, SESSION_ROUND);
			t0 = now_ns();
			preserve_matrix_vm(tmp, &m[0], TOKEN_MATRIX);
			t[i] = ms_since(t0, now_ns());
			close(tmp);
		}
		cfg->preserve_ms = median(t, rounds);

		for (k = 0; k < NR_COPIES; k++) {
			token = TOKEN_MATRIX + (c * NR_COPIES + k) * 16;
			preserve_matrix_vm(s, &m[k], token);
			cfg->tokens[k] = token;
		}
		st->nr_cfgs = c + 1;

		printf("preserve %u vCPU%s %4lu MiB: %8.3f ms (median of %d)\n", cfg->nr_vcpus,
		       cfg->nr_vcpus > 1 ? "s" : " ", cfg->size >> 20, cfg->preserve_ms, rounds);
		fflush(stdout);
	}

	/* The VMs stay open, like the live one. */
	printf("%d VMs preserved in %s, %d per configuration (%d vCPUs in all)\n",
	       NR_CFGS * NR_COPIES, SESSION_MATRIX, NR_COPIES,
	       NR_COPIES * NR_SIZES * (1 + 2 + 4 + 8));
	return s;
}

/* Leave a child holding every file, and exit. */
static void daemonize_and_exit(void)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork: errno %d", errno);
	if (pid) {
		printf("child %d holds the sessions: kexec, then run with -s 2\n", pid);
		exit(KSFT_PASS);
	}

	setsid();
	close(STDIN_FILENO);
	close(STDOUT_FILENO);
	close(STDERR_FILENO);
	if (chdir("/"))
		_exit(1);
	for (;;)
		pause();
}

static void stage1(int rounds, bool demo)
{
	int luo_fd = luo_open(), live, st_fd;
	struct perf_state *st;

	st_fd = memfd_create("kvm-perf-state", 0);
	TEST_ASSERT(st_fd >= 0, "memfd_create: errno %d", errno);
	TEST_ASSERT(!ftruncate(st_fd, sizeof(*st)), "ftruncate: errno %d", errno);
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, st_fd, 0);
	TEST_ASSERT(st != MAP_FAILED, "mmap state: errno %d", errno);
	memset(st, 0, sizeof(*st));
	st->magic = STATE_MAGIC;
	st->demo = demo;
	st->rounds = rounds;

	live = preserve_live_vm(luo_fd, st, demo);
	if (!demo)
		preserve_matrix(luo_fd, st, rounds);

	/* Written in full: now it goes with the live VM. */
	munmap(st, sizeof(*st));
	preserve_fd(live, st_fd, TOKEN_STATE);
	/* The sessions stand alone: /dev/liveupdate is for the next test to open. */
	close(luo_fd);
	daemonize_and_exit();
}

/* Stage 2. */

struct live_result {
	double blackout_s;	/* CLOCK_REALTIME, across the kexec */
	double restore_ms;	/* from the VM's retrieve to the vCPUs started */
	double progress_ms;	/* from the vCPUs started to both counting on */
};

static void restore_live_vm(int luo_fd, struct perf_state *st, bool demo,
			    struct live_result *res)
{
	struct kvm_userspace_memory_region2 region = {};
	int s, st_fd, mem_fd, vm_fd, kvm_fd, vcpu_fds[NR_LIVE_VCPUS], i;
	struct kvm_run *runs[NR_LIVE_VCPUS];
	u64 t0, t_start, t1, t_resume;
	struct perf_state *p;
	long mmap_size;
	struct stat sb;
	u64 *counts;
	void *mem;

	kvm_fd = open_kvm_dev_path_or_exit();
	mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	TEST_ASSERT(mmap_size > 0, "KVM_GET_VCPU_MMAP_SIZE: errno %d", errno);

	s = retrieve_session(luo_fd, SESSION_LIVE);
	mem_fd = retrieve_fd(s, TOKEN_MEM0);
	st_fd = retrieve_fd(s, TOKEN_STATE);
	TEST_ASSERT(!fstat(st_fd, &sb) && sb.st_size >= (off_t)sizeof(*st), "state memfd size");
	p = mmap(NULL, sizeof(*st), PROT_READ, MAP_SHARED, st_fd, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap state: errno %d", errno);
	memcpy(st, p, sizeof(*st));
	munmap(p, sizeof(*st));
	close(st_fd);
	TEST_ASSERT(st->magic == STATE_MAGIC && st->nr_cfgs <= NR_CFGS &&
		    st->counters_gpa - st->slot0.gpa < st->slot0.size,
		    "the state memfd is not what stage 1 wrote");
	demo |= st->demo;

	/* The VM, its memslot, its vCPUs, and run. */
	t0 = now_ns();
	vm_fd = retrieve_fd(s, TOKEN_VM);
	mem = mmap(NULL, st->slot0.size, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
	TEST_ASSERT(mem != MAP_FAILED, "mmap slot 0: errno %d", errno);
	region.slot = st->slot0.slot;
	region.flags = st->slot0.flags;
	region.guest_phys_addr = st->slot0.gpa;
	region.memory_size = st->slot0.size;
	region.userspace_addr = (u64)mem;
	TEST_ASSERT(!ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region),
		    "KVM_SET_USER_MEMORY_REGION2 slot 0: errno %d", errno);
	for (i = 0; i < NR_LIVE_VCPUS; i++)
		vcpu_fds[i] = retrieve_fd(s, TOKEN_VCPU + i);
	for (i = 0; i < NR_LIVE_VCPUS; i++) {
		runs[i] = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       vcpu_fds[i], 0);
		TEST_ASSERT(runs[i] != MAP_FAILED, "mmap kvm_run: errno %d", errno);
	}
	counts = (u64 *)((u8 *)mem + (st->counters_gpa - st->slot0.gpa));
	for (i = 0; i < NR_LIVE_VCPUS; i++)
		TEST_ASSERT(counts[i] == st->counters[i], "vCPU %d counter %lu, was %lu",
			    i, counts[i], st->counters[i]);
	for (i = 0; i < NR_LIVE_VCPUS; i++)
		start_vcpu(vcpu_fds[i]);
	t_start = now_ns();

	t1 = wait_progress(counts, st->counters, "after the kexec");
	t_resume = clock_ns(CLOCK_REALTIME);

	res->restore_ms = ms_since(t0, t_start);
	res->progress_ms = ms_since(t_start, t1);
	res->blackout_s = ((double)t_resume - (double)st->t_stop_ns) / 1e9;

	if (demo) {
		printf("VM retrieved and resumed in %.1f ms\n", res->restore_ms);
		print_counting(counts);
		printf("blackout: %.1f s (from the last guest progress in the old kernel ",
		       res->blackout_s);
		printf("to the first in the new one)\n");
	} else {
		printf("live VM: retrieved and restored in %.3f ms, ", res->restore_ms);
		printf("first guest progress %.3f ms after the start\n", res->progress_ms);
	}

	for (i = 0; i < NR_LIVE_VCPUS; i++) {
		assert_not_exited(vcpu_fds[i], i);
		stop_vcpu(vcpu_fds[i]);
	}
	finish_session(s, SESSION_LIVE);
	close(s);

	for (i = 0; i < NR_LIVE_VCPUS; i++) {
		munmap(runs[i], mmap_size);
		close(vcpu_fds[i]);
	}
	munmap(mem, st->slot0.size);
	close(mem_fd);
	close(vm_fd);
	close(kvm_fd);
}

struct matrix_result {
	double retrieve_ms[NR_CFGS];	/* the VM and its vCPUs, median */
	double slot_ms[NR_CFGS];	/* KVM_SET_USER_MEMORY_REGION2 of slot 1, median */
};

struct retrieved_vm {
	int vm_fd;
	int vcpu_fds[MAX_VCPUS];
	void *mem;
	u64 size;
};

static void retrieve_matrix(int luo_fd, const struct perf_state *st,
			    struct matrix_result *res)
{
	double t_ret[NR_COPIES], t_slot[NR_COPIES];
	struct retrieved_vm *vms, *v;
	u64 t0, t1, t2, t3;
	int s, c, k, i, fd;

	vms = calloc(NR_CFGS * NR_COPIES, sizeof(*vms));
	TEST_ASSERT(vms, "calloc");
	s = retrieve_session(luo_fd, SESSION_MATRIX);

	for (c = 0; c < (int)st->nr_cfgs; c++) {
		const struct matrix_cfg *cfg = &st->cfgs[c];
		struct kvm_userspace_memory_region2 region = {
			.slot = MATRIX_SLOT,
			.flags = cfg->slot_flags,
			.guest_phys_addr = cfg->gpa,
			.memory_size = cfg->size,
		};

		TEST_ASSERT(cfg->nr_vcpus >= 1 && cfg->nr_vcpus <= MAX_VCPUS,
			    "configuration %d: %u vCPUs", c, cfg->nr_vcpus);
		for (k = 0; k < NR_COPIES; k++) {
			v = &vms[c * NR_COPIES + k];

			/* The VM first, then its vCPUs. */
			t0 = now_ns();
			v->vm_fd = retrieve_fd(s, cfg->tokens[k]);
			for (i = 0; i < (int)cfg->nr_vcpus; i++)
				v->vcpu_fds[i] = retrieve_fd(s, cfg->tokens[k] + 1 + i);
			t1 = now_ns();

			fd = memfd_create("kvm-perf-mem", MFD_CLOEXEC);
			TEST_ASSERT(fd >= 0, "memfd_create: errno %d", errno);
			TEST_ASSERT(!ftruncate(fd, cfg->size), "ftruncate: errno %d", errno);
			v->size = cfg->size;
			v->mem = mmap(NULL, v->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			TEST_ASSERT(v->mem != MAP_FAILED, "mmap: errno %d", errno);
			close(fd);
			region.userspace_addr = (u64)v->mem;

			t2 = now_ns();
			TEST_ASSERT(!ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION2, &region),
				    "KVM_SET_USER_MEMORY_REGION2 slot %d: errno %d",
				    MATRIX_SLOT, errno);
			t3 = now_ns();

			t_ret[k] = ms_since(t0, t1);
			t_slot[k] = ms_since(t2, t3);
		}
		res->retrieve_ms[c] = median(t_ret, NR_COPIES);
		res->slot_ms[c] = median(t_slot, NR_COPIES);
	}

	finish_session(s, SESSION_MATRIX);
	close(s);

	for (c = 0; c < (int)st->nr_cfgs; c++) {
		for (k = 0; k < NR_COPIES; k++) {
			v = &vms[c * NR_COPIES + k];
			for (i = 0; i < (int)st->cfgs[c].nr_vcpus; i++)
				close(v->vcpu_fds[i]);
			close(v->vm_fd);
			munmap(v->mem, v->size);
		}
	}
	free(vms);
}

static void print_blackout(const struct live_result *live)
{
	printf("blackout: %.1f s (stop in the old kernel to the first guest progress ",
	       live->blackout_s);
	printf("in the new one; CLOCK_REALTIME from the RTC: about 1 s accuracy)\n");
}

static void print_table(const struct perf_state *st, const struct matrix_result *res,
			const struct live_result *live)
{
	int v, m, c;

	printf("\nKVM_CAP_VM_PRESERVE, ms (medians: preserve of %u rounds, retrieve of %d VMs)\n",
	       st->rounds, NR_COPIES);
	printf("%-6s%27s %27s  %15s\n", "", "preserve", "retrieve", "4 GiB / 64 MiB");
	printf("%-6s", "vCPUs");
	for (m = 0; m < 2 * NR_SIZES; m++)
		printf("%s %8s", m == NR_SIZES ? " " : "", size_labels[m % NR_SIZES]);
	printf("  %7s %7s\n", "pres", "retr");
	for (v = 0; v < NR_VCPU_COUNTS; v++) {
		c = v * NR_SIZES;
		printf("%-6d", vcpu_counts[v]);
		for (m = 0; m < NR_SIZES; m++)
			printf(" %8.3f", st->cfgs[c + m].preserve_ms);
		printf(" ");
		for (m = 0; m < NR_SIZES; m++)
			printf(" %8.3f", res->retrieve_ms[c + m]);
		printf("  %7.2f %7.2f\n",
		       st->cfgs[c + NR_SIZES - 1].preserve_ms / st->cfgs[c].preserve_ms,
		       res->retrieve_ms[c + NR_SIZES - 1] / res->retrieve_ms[c]);
	}

	printf("\nmemslot 1 added again after the retrieve, ms (median of %d)\n", NR_COPIES);
	printf("%-6s", "vCPUs");
	for (m = 0; m < NR_SIZES; m++)
		printf(" %8s", size_labels[m]);
	printf("\n");
	for (v = 0; v < NR_VCPU_COUNTS; v++) {
		printf("%-6d", vcpu_counts[v]);
		for (m = 0; m < NR_SIZES; m++)
			printf(" %8.3f", res->slot_ms[v * NR_SIZES + m]);
		printf("\n");
	}
	printf("\n");
	print_blackout(live);
}

static void write_results(const char *out, const struct perf_state *st,
			  const struct matrix_result *res, const struct live_result *live)
{
	const struct matrix_cfg *cfg;
	FILE *f = fopen(out, "w");
	int v, m, c;

	TEST_ASSERT(f, "cannot write %s", out);
	fprintf(f, "# vm_preserve_perf_test: ms unless named _s; medians\n");
	fprintf(f, "blackout_s %.3f\n", live->blackout_s);
	fprintf(f, "live_restore_ms %.3f\n", live->restore_ms);
	fprintf(f, "live_first_progress_ms %.3f\n", live->progress_ms);
	for (c = 0; c < (int)st->nr_cfgs; c++) {
		cfg = &st->cfgs[c];
		m = c % NR_SIZES;
		fprintf(f, "preserve_ms_%uvcpu_%s %.4f\n", cfg->nr_vcpus, size_names[m],
			cfg->preserve_ms);
		fprintf(f, "retrieve_ms_%uvcpu_%s %.4f\n", cfg->nr_vcpus, size_names[m],
			res->retrieve_ms[c]);
		fprintf(f, "memslot_add_ms_%uvcpu_%s %.4f\n", cfg->nr_vcpus, size_names[m],
			res->slot_ms[c]);
	}
	if (st->nr_cfgs == NR_CFGS) {
		for (v = 0; v < NR_VCPU_COUNTS; v++) {
			c = v * NR_SIZES;
			fprintf(f, "preserve_ratio_4G_64M_%dvcpu %.3f\n", vcpu_counts[v],
				st->cfgs[c + NR_SIZES - 1].preserve_ms / st->cfgs[c].preserve_ms);
			fprintf(f, "retrieve_ratio_4G_64M_%dvcpu %.3f\n", vcpu_counts[v],
				res->retrieve_ms[c + NR_SIZES - 1] / res->retrieve_ms[c]);
		}
	}
	fclose(f);
}

static void stage2(const char *out, bool demo)
{
	int luo_fd = luo_open();
	struct matrix_result res = {};
	struct live_result live;
	struct perf_state *st;

	st = calloc(1, sizeof(*st));
	TEST_ASSERT(st, "calloc");

	/* The guest is shown counting with -d, or if stage 1 had -d. */
	restore_live_vm(luo_fd, st, demo, &live);

	/* The matrix, if stage 1 made one. */
	if (st->nr_cfgs) {
		TEST_ASSERT_EQ(st->nr_cfgs, NR_CFGS);
		retrieve_matrix(luo_fd, st, &res);
		print_table(st, &res, &live);
	} else if (!demo && !st->demo) {
		print_blackout(&live);
	}

	if (out)
		write_results(out, st, &res, &live);
	free(st);
	close(luo_fd);
}

static void bad_args(const char *name)
{
	printf("usage: %s -s 1|2 [-r rounds (1-64)] [-o file] [-d]\n", name);
	exit(KSFT_FAIL);
}

int main(int argc, char *argv[])
{
	const char *out = NULL;
	int opt, stage = 0, rounds = 5;
	bool demo = false;

	while ((opt = getopt(argc, argv, "s:r:o:d")) != -1) {
		switch (opt) {
		case 's':
			stage = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'o':
			out = optarg;
			break;
		case 'd':
			demo = true;
			break;
		default:
			bad_args(argv[0]);
		}
	}
	if ((stage != 1 && stage != 2) || rounds < 1 || rounds > 64)
		bad_args(argv[0]);

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VM_PRESERVE));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));

	if (stage == 1)
		stage1(rounds, demo);
	stage2(out, demo);
	return 0;
}
