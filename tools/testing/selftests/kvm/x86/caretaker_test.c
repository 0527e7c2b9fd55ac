// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_CAP_X86_CARETAKER: a vCPU given an isolated CPU runs there in its
 * KVM_RUN_ASYNC task and serves its APIC timer, IPIs, EOIs and HLT without
 * the slow path.
 *
 * The guest has two vCPUs on two isolated CPUs.  Each idles in HLT and
 * wakes on its APIC timer at 1 kHz (one-shot, then TSC-deadline); on its
 * ticks vCPU 0 sends vCPU 1 an IPI if the last one was answered, and vCPU 1
 * answers each with an IPI.  Across every
 * HLT each vCPU keeps values in r12-r15 and xmm6-xmm7 and counts any that
 * changed.  The VMM does nothing while the guest runs, then checks the
 * counters, the tick rate, the IPIs, the registers and the vCPU stats.
 *
 * Needs a kernel booted with at least two CPUs in isolcpus=domain (the
 * project's `make test` boots with isolcpus=domain,2-3) and, on SVM
 * without NRIPS, kvm_amd.fastpath_insn_len=1.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "async_run.h"

#define NR_VCPUS	2
#define TIMER_VEC	0xec
#define IPI_VEC		0xe0
#define PERIOD_NS	1000000ull	/* 1 kHz; the APIC bus runs at 1 GHz */
#define REG_PATTERN	0x5a5a0000c0de0000ull

enum { MODE_ONESHOT, MODE_TSCDEADLINE };

/* Written by the host. */
static u64 tsc_khz_g;
static u64 mode;		/* MODE_* */
static u64 timers_on;		/* arm the next tick */
static u64 sync_req;		/* vCPU 1: make one port I/O exit */
static u64 pings_on;		/* vCPU 0: ping vCPU 1 on each tick */
/* Written by the guest, read by the host while it runs. */
static u64 ticks[NR_VCPUS], loops[NR_VCPUS], bad[NR_VCPUS];
static u64 pings, pongs, pings_got, syncs;
static u64 seen[NR_VCPUS];
static u64 ready[NR_VCPUS];		/* the vCPU's APIC is enabled */
static u64 mwaits[NR_VCPUS];		/* MONITOR/MWAIT pairs, NOPs for KVM */
/* Read by the guest; remapped and rewritten by the host. */
static u64 probe[512] __aligned(4096);
static u64 cur_mode[NR_VCPUS] = { -1ull, -1ull };

static u32 me(void)
{
	return x2apic_read_reg(APIC_ID);
}

static void arm_timer(u32 id)
{
	u64 m = READ_ONCE(mode);

	if (!READ_ONCE(timers_on))
		return;
	if (cur_mode[id] != m) {
		cur_mode[id] = m;
		x2apic_write_reg(APIC_TDCR, 0xb);	/* divide by 1 */
		x2apic_write_reg(APIC_LVTT, TIMER_VEC |
				 (m == MODE_TSCDEADLINE ? APIC_LVT_TIMER_TSCDEADLINE :
							  APIC_LVT_TIMER_ONESHOT));
	}
	if (m == MODE_TSCDEADLINE)
		wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + tsc_khz_g * PERIOD_NS / 1000000);
	else
		x2apic_write_reg(APIC_TMICT, PERIOD_NS);
}

/*
 * The handlers are plain integer code: no SSE, which leaves xmm6 and xmm7
 * to the guest's loop across HLT.
 */
static void timer_handler(struct ex_regs *regs)
{
	u32 id = me();

	ticks[id]++;
	/*
	 * One ping in flight at a time: two pending IPIs would coalesce.  None
	 * before vCPU 1's APIC is enabled, which would drop it.
	 */
	if (id == 0 && READ_ONCE(pings_on) && READ_ONCE(ready[1]) &&
	    READ_ONCE(pongs) == pings) {
		pings++;
		x2apic_write_reg(APIC_ICR, (1ull << 32) | APIC_DM_FIXED | IPI_VEC);
	}
	arm_timer(id);
	x2apic_write_reg(APIC_EOI, 0);
}

/* The APIC's spurious vector (SPIV): no EOI. */
static void spurious_handler(struct ex_regs *regs)
{
}

static void ipi_handler(struct ex_regs *regs)
{
	if (me() == 1) {
		pings_got++;
		x2apic_write_reg(APIC_ICR, APIC_DM_FIXED | IPI_VEC);
	} else {
		pongs++;
	}
	x2apic_write_reg(APIC_EOI, 0);
}

/*
 * HLT with interrupts enabled, with values in callee-saved GPRs and in two
 * SSE registers across it: non-zero if any of them changed.
 */
static u64 halt_and_check(u64 p)
{
	u64 diff;

	asm volatile("mov %[p], %%r12\n\t"
		     "lea 1(%[p]), %%r13\n\t"
		     "lea 2(%[p]), %%r14\n\t"
		     "lea 3(%[p]), %%r15\n\t"
		     "movq %%r12, %%xmm6\n\t"
		     "movq %%r15, %%xmm7\n\t"
		     "sti; hlt\n\t"
		     "cli\n\t"
		     "mov %%r12, %[d]\n\t"
		     "sub %[p], %[d]\n\t"
		     "lea 1(%[p]), %%rax\n\t"
		     "xor %%rax, %%r13\n\t"
		     "or %%r13, %[d]\n\t"
		     "lea 2(%[p]), %%rax\n\t"
		     "xor %%rax, %%r14\n\t"
		     "or %%r14, %[d]\n\t"
		     "lea 3(%[p]), %%rax\n\t"
		     "xor %%rax, %%r15\n\t"
		     "or %%r15, %[d]\n\t"
		     "movq %%xmm6, %%rax\n\t"
		     "xor %[p], %%rax\n\t"
		     "or %%rax, %[d]\n\t"
		     "movq %%xmm7, %%rax\n\t"
		     "sub %[p], %%rax\n\t"
		     "sub $3, %%rax\n\t"
		     "or %%rax, %[d]\n\t"
		     : [d] "=&r"(diff)
		     : [p] "r"(p)
		     : "rax", "r12", "r13", "r14", "r15", "xmm6", "xmm7", "memory");
	return diff;
}

static void guest_code(void)
{
	u32 id;

	x2apic_enable();
	id = me();
	x2apic_write_reg(APIC_SPIV, APIC_SPIV_APIC_ENABLED | 0xff);
	WRITE_ONCE(ready[id], 1);
	arm_timer(id);
	for (;;) {
		if (halt_and_check(REG_PATTERN + loops[id] * 16))
			bad[id]++;
		loops[id]++;
		WRITE_ONCE(seen[id], READ_ONCE(probe[0]));
		/* Served as NOPs in the fastpath (KVM's MWAIT quirk). */
		if (!(loops[id] % 8)) {
			asm volatile(".byte 0x0f, 0x01, 0xc8" /* monitor */
				     : : "a"(&probe[1]), "c"(0), "d"(0));
			asm volatile(".byte 0x0f, 0x01, 0xc9" /* mwait */
				     : : "a"(0), "c"(0));
			WRITE_ONCE(mwaits[id], mwaits[id] + 1);
		}
		if (id == 1 && READ_ONCE(sync_req)) {
			WRITE_ONCE(sync_req, 0);
			syncs++;
			asm volatile("sti");
			GUEST_SYNC(syncs);
		}
	}
}

/* Guest globals, read and written while the guest runs. */
#define GPTR(vm, var) ((typeof(var) *)addr_gva2hva(vm, (gva_t)&(var)))
#define GREAD(vm, var) READ_ONCE(*GPTR(vm, var))
#define GWRITE(vm, var, val) WRITE_ONCE(*GPTR(vm, var), val)

static struct kvm_vm *vm;
static struct kvm_vcpu *vcpus[NR_VCPUS];
static int cpus[NR_VCPUS];

static u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
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

	TEST_ASSERT(!r, "KVM_RUN_ASYNC(0x%x): %d errno %d", flags, r, errno);
	return ra;
}

static int __enable_caretaker(struct kvm_vcpu *vcpu, u32 flags, u64 a0, u64 a1, u64 a2,
			      u64 a3)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_CARETAKER,
		.flags = flags,
		.args = { a0, a1, a2, a3 },
	};

	return __vcpu_ioctl(vcpu, KVM_ENABLE_CAP, &cap);
}

#define enable_caretaker_args(vcpu, a0, a1, a2, a3) __enable_caretaker(vcpu, 0, a0, a1, a2, a3)

static int enable_caretaker(struct kvm_vcpu *vcpu, u64 cpu, u64 arg1, u32 flags)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_CARETAKER,
		.flags = flags,
		.args = { cpu, arg1 },
	};

	return __vcpu_ioctl(vcpu, KVM_ENABLE_CAP, &cap);
}

#define EXPECT_ERRNO(expr, err, what) do {					\
	int __r = (expr), __err = (err);					\
	TEST_ASSERT(__r == -1 && errno == __err,				\
		    "%s: expected errno %d, got %d errno %d", what, __err, __r, errno); \
} while (0)

/* The isolated CPUs, from sysfs. */
static int isolated_cpus(int *out, int max)
{
	char buf[256], *p = buf;
	int n = 0, a, b;
	FILE *f = fopen("/sys/devices/system/cpu/isolated", "r");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	while (*p && *p != '\n' && n < max) {
		if (sscanf(p, "%d-%d", &a, &b) == 2) {
			while (a <= b && n < max)
				out[n++] = a++;
		} else if (*p >= '0' && *p <= '9') {
			out[n++] = strtol(p, NULL, 10);
		}
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	return n;
}

static int write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	int r = 0;

	if (!f)
		return -errno;
	if (fputs(s, f) < 0)
		r = -errno;
	if (fclose(f) && !r)
		r = -errno;
	return r;
}

static int set_cpu_online(int cpu, bool online)
{
	char path[80];

	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", cpu);
	return write_str(path, online ? "1" : "0");
}

/* A failed assertion must not leave a CPU offline for the tests after. */
static void cpus_online(void)
{
	set_cpu_online(cpus[0], true);
	set_cpu_online(cpus[1], true);
}

static struct kvm_vm *create_vm(void)
{
	struct kvm_vm *v = vm_create_with_vcpus(NR_VCPUS, guest_code, vcpus);
	int i;

	vm_install_exception_handler(v, TIMER_VEC, timer_handler);
	vm_install_exception_handler(v, IPI_VEC, ipi_handler);
	vm_install_exception_handler(v, 0xff, spurious_handler);
	for (i = 0; i < NR_VCPUS; i++)
		vcpu_clear_cpuid_feature(vcpus[i], X86_FEATURE_SVM);
	tsc_khz_g = __vcpu_ioctl(vcpus[0], KVM_GET_TSC_KHZ, NULL);
	TEST_ASSERT(tsc_khz_g > 0, "KVM_GET_TSC_KHZ");
	sync_global_to_guest(v, tsc_khz_g);
	return v;
}

/* The CPUs a task named kvm-vcpu-<pid>/<id> may run on, or "" if none. */
static void vcpu_task_cpus(pid_t pid, int id, char *out, size_t len)
{
	char name[32], path[300], buf[256];
	struct dirent *de;
	DIR *d = opendir("/proc");
	FILE *f;

	out[0] = 0;
	snprintf(name, sizeof(name), "kvm-vcpu-%d/%d\n", pid, id);
	while (d && (de = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(buf, sizeof(buf), f) || strcmp(buf, name)) {
			fclose(f);
			continue;
		}
		fclose(f);
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		f = fopen(path, "r");
		while (f && fgets(buf, sizeof(buf), f))
			if (!strncmp(buf, "Cpus_allowed_list:", 18))
				snprintf(out, len, "%s", buf + 19);
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	out[strcspn(out, "\n")] = 0;
}

static void start_all(void)
{
	int i;

	for (i = 0; i < NR_VCPUS; i++)
		run_async(vcpus[i], 0);
}

static void stop_all(void)
{
	int i;

	for (i = 0; i < NR_VCPUS; i++)
		run_async(vcpus[i], KVM_RUN_ASYNC_STOP);
}

/*
 * Let the guest run for @ms with the VMM doing nothing, then check that it
 * made progress at the programmed rate.
 */
static void check_window(const char *what, int ms)
{
	u64 t0[NR_VCPUS], l0[NR_VCPUS], p0 = GREAD(vm, pings), t, dt;
	double rate;
	int i;

	for (i = 0; i < NR_VCPUS; i++) {
		t0[i] = GREAD(vm, ticks[i]);
		l0[i] = GREAD(vm, loops[i]);
	}
	t = now_ns();
	usleep(ms * 1000);
	dt = now_ns() - t;
	for (i = 0; i < NR_VCPUS; i++) {
		u64 n = GREAD(vm, ticks[i]) - t0[i];

		rate = n * 1e9 / dt;
		printf("# %s: vCPU %d: %lu ticks, %lu ms (%.0f Hz), %lu wake-ups, %lu bad regs\n",
		       what, i, n, dt / 1000000, rate, GREAD(vm, loops[i]) - l0[i],
		       GREAD(vm, bad[i]));
		/*
		 * The next tick is armed from the previous one's handler, so
		 * the rate is at most 1 kHz (10% for the TSC calibration of
		 * the host); under QEMU's TCG the guest's time runs unevenly,
		 * so the floor is a quarter of it.
		 */
		TEST_ASSERT(rate <= 1000 * 1.10 && rate >= 250,
			    "%s: vCPU %d ticked at %.0f Hz, programmed 1000 Hz", what, i, rate);
		TEST_ASSERT(!GREAD(vm, bad[i]), "%s: vCPU %d lost register values", what, i);
		TEST_ASSERT(GREAD(vm, mwaits[i]), "%s: vCPU %d made no MONITOR/MWAIT", what, i);
	}
	TEST_ASSERT(GREAD(vm, pings) > p0, "%s: no IPIs", what);
}

/* What the vCPUs' local APICs hold, for a failure report. */
static void dump_state(void)
{
	struct kvm_lapic_state la;
	struct kvm_mp_state mp;
	u32 *r = (u32 *)la.regs;
	int i;

	for (i = 0; i < NR_VCPUS; i++)
		printf("# vCPU %d: %lu ticks\n", i, GREAD(vm, ticks[i]));
	usleep(100000);
	for (i = 0; i < NR_VCPUS; i++) {
		printf("# vCPU %d: %lu ticks\n", i, GREAD(vm, ticks[i]));
		run_async(vcpus[i], KVM_RUN_ASYNC_STOP);
		vcpu_ioctl(vcpus[i], KVM_GET_LAPIC, &la);
		vcpu_ioctl(vcpus[i], KVM_GET_MP_STATE, &mp);
		printf("# vCPU %d: mp_state %u ISR[224..] %08x IRR[224..] %08x PPR %x LVTT %x\n",
		       i, mp.mp_state, r[(0x100 + 0x70) / 4], r[(0x200 + 0x70) / 4],
		       r[0xa0 / 4], r[0x320 / 4]);
	}
}

/* Every IPI vCPU 0 sent was answered, once the timers are stopped. */
static void check_ipis(void)
{
	int i;

	GWRITE(vm, pings_on, 0);
	for (i = 0; i < 500 && (GREAD(vm, pongs) != GREAD(vm, pings) ||
				GREAD(vm, pings_got) != GREAD(vm, pings)); i++)
		usleep(10000);
	printf("# IPIs: %lu sent, %lu received, %lu answered\n",
	       GREAD(vm, pings), GREAD(vm, pings_got), GREAD(vm, pongs));
	if (GREAD(vm, pongs) != GREAD(vm, pings) || GREAD(vm, pings_got) != GREAD(vm, pings))
		dump_state();
	TEST_ASSERT(GREAD(vm, pings_got) == GREAD(vm, pings) &&
		    GREAD(vm, pongs) == GREAD(vm, pings),
		    "IPIs lost: %lu sent, %lu received, %lu answered",
		    GREAD(vm, pings), GREAD(vm, pings_got), GREAD(vm, pongs));
	GWRITE(vm, pings_on, 1);
}

/* The caretaker's trace ring, through debugfs: what it served, recently. */
static void check_trace(void)
{
	char cmd[256], buf[128];
	int served = 0, halts = 0, wakes = 0, timers = 0, lines = 0;
	FILE *f;

	if (access("/sys/kernel/debug/kvm", F_OK))
		system("mount -t debugfs none /sys/kernel/debug 2>/dev/null");
	snprintf(cmd, sizeof(cmd), "cat /sys/kernel/debug/kvm/%d-*/vcpu1/caretaker_trace",
		 getpid());
	f = popen(cmd, "r");
	TEST_ASSERT(f, "popen");
	while (fgets(buf, sizeof(buf), f)) {
		if (buf[0] == '#')
			continue;
		lines++;
		served += !!strstr(buf, " served ");
		halts += !!strstr(buf, " halt ");
		wakes += !!strstr(buf, " wake ");
		timers += !!strstr(buf, " timer ");
	}
	pclose(f);
	printf("# trace ring of vCPU 1: %d records: %d served, %d halts, %d wake-ups, %d timers\n",
	       lines, served, halts, wakes, timers);
	TEST_ASSERT(lines > 100 && served && halts && wakes && timers,
		    "the trace ring lacks records");
}

static void test_run(void)
{
	u64 served, halts, slow, fast;
	char allowed[64], want[16];
	int i;

	vm = create_vm();
	GWRITE(vm, timers_on, 1);
	GWRITE(vm, pings_on, 1);
	for (i = 0; i < NR_VCPUS; i++)
		TEST_ASSERT(!enable_caretaker(vcpus[i], cpus[i], 0, 0),
			    "KVM_CAP_X86_CARETAKER on CPU %d: errno %d", cpus[i], errno);
	start_all();
	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_task_cpus(getpid(), i, allowed, sizeof(allowed));
		snprintf(want, sizeof(want), "%d", cpus[i]);
		TEST_ASSERT(!strcmp(allowed, want), "vCPU %d task may run on '%s', want '%s'",
			    i, allowed, want);
	}
	/* Offlining a caretaker's CPU is refused. */
	i = set_cpu_online(cpus[0], false);
	TEST_ASSERT(i == -EPERM, "offlining caretaker CPU %d: %d", cpus[0], i);
	vcpu_task_cpus(getpid(), 0, allowed, sizeof(allowed));
	snprintf(want, sizeof(want), "%d", cpus[0]);
	TEST_ASSERT(!strcmp(allowed, want), "after the refused offline, vCPU 0 may run on '%s'",
		    allowed);

	GWRITE(vm, mode, MODE_ONESHOT);
	check_window("one-shot", 2000);
	check_ipis();
	GWRITE(vm, mode, MODE_TSCDEADLINE);
	usleep(100000);
	check_window("TSC deadline", 2000);
	check_ipis();

	for (i = 0; i < NR_VCPUS; i++) {
		served = vcpu_get_stat(vcpus[i], caretaker_exits);
		halts = vcpu_get_stat(vcpus[i], caretaker_halts);
		slow = vcpu_get_stat(vcpus[i], caretaker_slow_exits);
		fast = vcpu_get_stat(vcpus[i], fastpath_exits);
		printf("# vCPU %d: caretaker %lu served, %lu halts, %lu slow; %lu fastpath\n",
		       i, served, halts, slow, fast);
		/*
		 * Every tick wakes the vCPU from a halt: if most halts were not
		 * the caretaker's, the vCPU did not run in its caretaker.
		 */
		TEST_ASSERT(served && fast && halts * 4 >= GREAD(vm, ticks[i]),
			    "vCPU %d: %lu caretaker halts for %lu ticks", i, halts,
			    GREAD(vm, ticks[i]));
	}
	check_trace();
	stop_all();
}

/* A port write leaves for the VMM exactly once, and the guest goes on. */
static void test_port_exit(void)
{
	struct kvm_run_async ra;
	struct ucall uc;
	u64 t;

	GWRITE(vm, sync_req, 1);
	start_all();
	TEST_ASSERT(poll(&(struct pollfd){ .fd = vcpus[1]->fd, .events = POLLIN }, 1, 20000) == 1,
		    "vCPU 1 did not park for its port write");
	ra = run_async(vcpus[1], KVM_RUN_ASYNC_QUERY);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_PARKED);
	TEST_ASSERT_EQ(vcpus[1]->run->exit_reason, KVM_EXIT_IO);
	memcpy(&uc, (void *)ucall_arch_get_ucall(vcpus[1]), sizeof(uc));
	TEST_ASSERT(uc.cmd == UCALL_SYNC && uc.args[1] == 1, "ucall %lu/%lu", uc.cmd, uc.args[1]);
	t = GREAD(vm, ticks[1]);
	run_async(vcpus[1], 0);
	usleep(300000);
	TEST_ASSERT(GREAD(vm, ticks[1]) > t, "vCPU 1 did not go on after its exit");
	/* Exactly once: no second exit, the guest made one. */
	TEST_ASSERT(!poll(&(struct pollfd){ .fd = vcpus[1]->fd, .events = POLLIN }, 1, 0),
		    "vCPU 1 exited again");
	TEST_ASSERT_EQ(GREAD(vm, syncs), 1);
}

/* Guest memory remapped under a running caretaker: the guest sees the new page. */
static void test_remap(void)
{
	void *hva = addr_gva2hva(vm, (gva_t)probe);
	static const char * const how[] = { "MADV_DONTNEED", "munmap by mmap(MAP_FIXED)",
					    "MADV_FREE" };
	u64 v;
	int k, i, j;

	for (k = 0; k < 3; k++) {
		v = 0x1000 + k;
		switch (k) {
		case 0:
			TEST_ASSERT(!madvise(hva, 4096, MADV_DONTNEED), "MADV_DONTNEED");
			break;
		case 1:
			/*
			 * Unmapped and replaced in one step: a guest access
			 * between a munmap() and a new mmap() would fault to
			 * the VMM (EFAULT), as it should.
			 */
			TEST_ASSERT(mmap(hva, 4096, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == hva,
				    "mmap MAP_FIXED");
			break;
		case 2:
			TEST_ASSERT(!madvise(hva, 4096, MADV_FREE), "MADV_FREE");
			break;
		}
		WRITE_ONCE(*(u64 *)hva, v);
		for (i = 0; i < NR_VCPUS; i++) {
			for (j = 0; j < 500 && GREAD(vm, seen[i]) != v; j++)
				usleep(10000);
			TEST_ASSERT(GREAD(vm, seen[i]) == v, "%s: vCPU %d sees %lx, want %lx",
				    how[k], i, GREAD(vm, seen[i]), v);
		}
	}
}

/* Stop and start the caretakers: the kick round trip, and the registers. */
static void test_kicks(int cycles)
{
	static const u64 bounds[] = { 100, 300, 1000, 3000, 10000, 30000, -1ull };
	u64 hist[ARRAY_SIZE(bounds)] = {}, t, us;
	int c, b;

	for (c = 0; c < cycles; c++) {
		t = now_ns();
		run_async(vcpus[c & 1], KVM_RUN_ASYNC_STOP);
		us = (now_ns() - t) / 1000;
		for (b = 0; us > bounds[b]; b++)
			;
		hist[b]++;
		run_async(vcpus[c & 1], 0);
	}
	printf("# kick round trip (KVM_RUN_ASYNC_STOP of a caretaker, us), %d cycles:\n", cycles);
	for (b = 0; b < (int)ARRAY_SIZE(bounds); b++)
		if (bounds[b] == -1ull)
			printf("#   >%5lu: %lu\n", bounds[b - 1], hist[b]);
		else
			printf("#  <=%5lu: %lu\n", bounds[b], hist[b]);
	usleep(200000);
	TEST_ASSERT(!GREAD(vm, bad[0]) && !GREAD(vm, bad[1]), "registers lost across stop/start");
}

static void test_lifetime(void)
{
	struct kvm_vcpu *v[NR_VCPUS];
	int status, i, fds[2];
	pid_t child;
	char c;

	/* Closing the VM with the caretakers running. */
	kvm_vm_free(vm);
	wait_no_vcpu_task("VM closed with caretakers running");

	/* SIGKILL of a VMM whose caretakers run. */
	TEST_ASSERT(!pipe(fds), "pipe");
	child = fork();
	TEST_ASSERT(child >= 0, "fork");
	if (!child) {
		vm = create_vm();
		GWRITE(vm, timers_on, 1);
		for (i = 0; i < NR_VCPUS; i++)
			TEST_ASSERT(!enable_caretaker(vcpus[i], cpus[i], 0, 0), "enable");
		start_all();
		while (!GREAD(vm, ticks[0]) || !GREAD(vm, ticks[1]))
			usleep(1000);
		TEST_ASSERT(write(fds[1], "r", 1) == 1, "write");
		for (;;)
			pause();
	}
	close(fds[1]);
	TEST_ASSERT(read(fds[0], &c, 1) == 1, "the child VMM did not get its caretakers running");
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	wait_no_vcpu_task("VMM killed with caretakers running");

	/* The CPUs were given back, and can be offlined again. */
	vm = vm_create_with_vcpus(NR_VCPUS, guest_code, v);
	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_clear_cpuid_feature(v[i], X86_FEATURE_SVM);
		TEST_ASSERT(!enable_caretaker(v[i], cpus[i], 0, 0),
			    "CPU %d not given back: errno %d", cpus[i], errno);
	}
	kvm_vm_free(vm);
	TEST_ASSERT(!set_cpu_online(cpus[1], false), "CPU %d cannot go offline", cpus[1]);
	TEST_ASSERT(!set_cpu_online(cpus[1], true), "CPU %d cannot come back", cpus[1]);
}

/* Drop or take back CAP_SYS_ADMIN from the effective set (it stays permitted). */
static void cap_sys_admin(bool on)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	TEST_ASSERT(!syscall(SYS_capget, &h, d), "capget");
	if (on)
		d[0].effective |= 1u << CAP_SYS_ADMIN;
	else
		d[0].effective &= ~(1u << CAP_SYS_ADMIN);
	TEST_ASSERT(!syscall(SYS_capset, &h, d), "capset");
}

static void test_errors(void)
{
	struct kvm_vcpu *v[NR_VCPUS];
	struct kvm_vm *e = vm_create_with_vcpus(NR_VCPUS, guest_code, v);
	int status, hk = 0;

	/* Bad arguments. */
	vcpu_clear_cpuid_feature(v[0], X86_FEATURE_SVM);
	vcpu_clear_cpuid_feature(v[1], X86_FEATURE_SVM);
	EXPECT_ERRNO(enable_caretaker(v[0], cpus[0], 0, 1), EINVAL, "flags");
	EXPECT_ERRNO(enable_caretaker(v[0], cpus[0], 1, 0), EINVAL, "args[1]");
	EXPECT_ERRNO(enable_caretaker_args(v[0], cpus[0], 0, 1, 0), EINVAL, "args[2]");
	EXPECT_ERRNO(enable_caretaker_args(v[0], cpus[0], 0, 0, 1), EINVAL, "args[3]");
	EXPECT_ERRNO(enable_caretaker(v[0], 1u << 20, 0, 0), EINVAL, "CPU out of range");
	/* A CPU that is not isolated (CPU 0 never is). */
	EXPECT_ERRNO(enable_caretaker(v[0], hk, 0, 0), EINVAL, "housekeeping CPU");
	/* An offline CPU. */
	TEST_ASSERT(!set_cpu_online(cpus[1], false), "offline CPU %d", cpus[1]);
	EXPECT_ERRNO(enable_caretaker(v[0], cpus[1], 0, 0), ENODEV, "offline CPU");
	TEST_ASSERT(!set_cpu_online(cpus[1], true), "online CPU %d", cpus[1]);

	/* No privilege. */
	cap_sys_admin(false);
	status = enable_caretaker(v[0], cpus[0], 0, 0);
	cap_sys_admin(true);
	EXPECT_ERRNO(status, EPERM, "without CAP_SYS_ADMIN");

	/* Twice, and another vCPU on a taken CPU. */
	TEST_ASSERT(!enable_caretaker(v[0], cpus[0], 0, 0), "enable: errno %d", errno);
	EXPECT_ERRNO(enable_caretaker(v[0], cpus[1], 0, 0), EEXIST, "twice");
	EXPECT_ERRNO(enable_caretaker(v[1], cpus[0], 0, 0), EBUSY, "a taken CPU");
	kvm_vm_free(e);

	/* A vCPU whose KVM_RUN_ASYNC task exists already. */
	e = vm_create_with_vcpus(1, guest_code, v);
	vcpu_clear_cpuid_feature(v[0], X86_FEATURE_SVM);
	{
		struct kvm_run_async ra = { .flags = 0 };

		TEST_ASSERT(!__vcpu_ioctl(v[0], KVM_RUN_ASYNC, &ra), "KVM_RUN_ASYNC");
		EXPECT_ERRNO(enable_caretaker(v[0], cpus[0], 0, 0), EBUSY, "task exists");
		ra.flags = KVM_RUN_ASYNC_STOP;
		TEST_ASSERT(!__vcpu_ioctl(v[0], KVM_RUN_ASYNC, &ra), "KVM_RUN_ASYNC_STOP");
	}
	kvm_vm_free(e);

	/* An unsupported vCPU: nested virtualization in its CPUID. */
	e = vm_create_with_vcpus(1, guest_code, v);
	if (kvm_cpu_has(X86_FEATURE_SVM) || kvm_cpu_has(X86_FEATURE_VMX)) {
		vcpu_set_cpuid_feature(v[0], kvm_cpu_has(X86_FEATURE_SVM) ?
				       X86_FEATURE_SVM : X86_FEATURE_VMX);
		EXPECT_ERRNO(enable_caretaker(v[0], cpus[0], 0, 0), EOPNOTSUPP, "nested vCPU");
	} else {
		printf("# no nested virtualization in KVM: that error is not tested\n");
	}
	kvm_vm_free(e);
	/*
	 * "No housekeeping CPU would stay online" cannot be reached here: the
	 * boot CPU is never isolated and x86 cannot offline it.
	 */
}

/*
 * -d, for `make run`: the guest ticks on its isolated CPUs while this VMM
 * sleeps, then the VMM takes its vCPUs back.
 */
static void demo(void)
{
	u64 t[NR_VCPUS] = {}, n;
	int s, i;

	vm = create_vm();
	GWRITE(vm, timers_on, 1);
	GWRITE(vm, pings_on, 1);
	GWRITE(vm, mode, MODE_TSCDEADLINE);
	for (i = 0; i < NR_VCPUS; i++)
		TEST_ASSERT(!enable_caretaker(vcpus[i], cpus[i], 0, 0), "enable: errno %d", errno);
	start_all();
	printf("2 vCPUs, each in a caretaker on isolated CPU %d and %d; the VMM now sleeps\n",
	       cpus[0], cpus[1]);
	for (s = 1; s <= 3; s++) {
		sleep(1);
		printf("  %d s:", s);
		for (i = 0; i < NR_VCPUS; i++) {
			n = GREAD(vm, ticks[i]);
			printf(" vCPU %d: %lu timer interrupts (+%lu)", i, n, n - t[i]);
			t[i] = n;
		}
		printf(", IPIs answered: %lu, registers lost: %lu\n", GREAD(vm, pongs),
		       GREAD(vm, bad[0]) + GREAD(vm, bad[1]));
	}
	stop_all();
	for (i = 0; i < NR_VCPUS; i++)
		printf("vCPU %d back: its caretaker served %lu exits, %lu halts, %lu slow\n",
		       i, vcpu_get_stat(vcpus[i], caretaker_exits),
		       vcpu_get_stat(vcpus[i], caretaker_halts),
		       vcpu_get_stat(vcpus[i], caretaker_slow_exits));
	kvm_vm_free(vm);
}

int main(int argc, char *argv[])
{
	int n;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_CARETAKER));
	n = isolated_cpus(cpus, NR_VCPUS);
	if (n < NR_VCPUS)
		ksft_exit_skip("needs %d CPUs in isolcpus=domain, has %d\n", NR_VCPUS, n);
	TEST_REQUIRE(getuid() == 0);
	atexit(cpus_online);
	if (argc > 1 && !strcmp(argv[1], "-d")) {
		demo();
		return 0;
	}

	ksft_print_header();
	ksft_set_plan(6);

	test_errors();
	ksft_test_result_pass("errors: args, isolation, offline, privilege, twice, taken\n");
	test_run();
	ksft_test_result_pass("1 kHz one-shot and TSC-deadline timers, IPIs, regs, stats, trace\n");
	test_port_exit();
	ksft_test_result_pass("a port write leaves for the VMM once and the guest goes on\n");
	test_remap();
	ksft_test_result_pass("MADV_DONTNEED, munmap, MADV_FREE of guest memory: no stale map\n");
	test_kicks(1000);
	ksft_test_result_pass("1000 stop/start cycles keep the registers\n");
	test_lifetime();
	ksft_test_result_pass("lifetime: VM closed, VMM killed, caretakers running; CPUs back\n");
	ksft_finished();
}
