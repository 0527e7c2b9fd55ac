// SPDX-License-Identifier: GPL-2.0-only
/*
 * Benchmarks for the vCPU caretaker, as ratios measured side by side.
 *
 * -m exits: what any kernel can run, for a patched kernel against the base
 *   kernel it applies to (tooling/bench.sh boots both and divides):
 *   - exit round trips under KVM_RUN: a guest that does CPUID (served by KVM
 *     in the slow path) and one that makes port I/O exits to this VMM;
 *   - a timer- and IPI-heavy guest under KVM_RUN: two vCPUs, each re-arming
 *     its x2APIC TSC-deadline timer 50 us ahead and vCPU 0 pinging vCPU 1
 *     with IPIs; the rate of timer interrupts and IPI round trips.
 *   Each line: "<metric> <value>".
 *
 * -m caretaker: on two isolated CPUs, a vCPU with a caretaker against the
 *   same vCPU in a KVM_RUN_ASYNC task pinned to the same CPU, round by round:
 *   - guest work rate: a counting loop with a 1 kHz APIC timer;
 *   - timer wake-up latency: TSC-deadline timer 200 us ahead, HLT, the
 *     TSC at the interrupt minus the deadline (p50, p99, max);
 *   - IPI round trip: vCPU 0 to vCPU 1 and back, in TSC cycles (p50, p99).
 *   Each line: "<metric> <KVM_RUN_ASYNC> <caretaker> <ratio>".
 *
 * [-r rounds] [-w window_ms] [-o file]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "ucall_common.h"
#include "async_run.h"

#define TIMER_VEC	0xec
/* Above the timer's priority class, so that a timer storm cannot starve it. */
#define IPI_VEC		0xf0
#define NSAMPLES	4096

enum { G_IDLE, G_CPUID, G_PIO, G_STORM, G_WORK, G_TIMER_LAT, G_IPI_RTT };

static u64 job;		/* G_*, set by the host */
static u64 gen;		/* bumped by the host with each job */
static u64 tsc_khz_g;
static u64 count[2];		/* work done */
static u64 ticks[2], ipis, pongs;
static u64 acked[2];		/* the last gen each vCPU took */
static u64 armed_deadline[2];
static u64 nsamples;
static u64 samples[NSAMPLES];
static u64 ipi_sent_tsc, ipi_back;

static u32 me(void)
{
	return x2apic_read_reg(APIC_ID);
}

static void tscdeadline_in(u64 us)
{
	u64 d = rdtsc() + tsc_khz_g * us / 1000;

	armed_deadline[me()] = d;
	wrmsr(MSR_IA32_TSC_DEADLINE, d);
}

static void timer_handler(struct ex_regs *regs)
{
	u64 now = rdtsc();
	u32 id = me();

	ticks[id]++;
	switch (READ_ONCE(job)) {
	case G_STORM:
		if (id == 0)
			x2apic_write_reg(APIC_ICR, (1ull << 32) | IPI_VEC);
		tscdeadline_in(50);
		break;
	case G_WORK:
		tscdeadline_in(1000);
		break;
	case G_TIMER_LAT:
		if (id == 0 && nsamples < NSAMPLES)
			samples[nsamples++] = now - armed_deadline[0];
		break;
	}
	x2apic_write_reg(APIC_EOI, 0);
}

/* The APIC's spurious vector (SPIV): no EOI. */
static void spurious_handler(struct ex_regs *regs)
{
}

static void ipi_handler(struct ex_regs *regs)
{
	u64 now = rdtsc();

	if (me() == 1) {
		x2apic_write_reg(APIC_ICR, IPI_VEC);
	} else if (READ_ONCE(job) == G_IPI_RTT) {
		if (nsamples < NSAMPLES)
			samples[nsamples++] = now - ipi_sent_tsc;
		WRITE_ONCE(ipi_back, 1);
	} else {
		pongs++;
	}
	ipis++;
	x2apic_write_reg(APIC_EOI, 0);
}

static void guest_code(void)
{
	u64 my_gen = 0, j;
	u32 id, a, b, c, d;

	x2apic_enable();
	id = me();
	x2apic_write_reg(APIC_SPIV, APIC_SPIV_APIC_ENABLED | 0xff);
	x2apic_write_reg(APIC_LVTT, TIMER_VEC | APIC_LVT_TIMER_TSCDEADLINE);
	asm volatile("sti");
	for (;;) {
		while (READ_ONCE(gen) == my_gen)
			cpu_relax();
		my_gen = READ_ONCE(gen);
		WRITE_ONCE(acked[id], my_gen);
		j = READ_ONCE(job);
		switch (j) {
		case G_CPUID:
			while (READ_ONCE(gen) == my_gen) {
				a = 0; c = 0;
				asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
				WRITE_ONCE(count[id], count[id] + 1);
			}
			break;
		case G_PIO:
			while (READ_ONCE(gen) == my_gen) {
				GUEST_SYNC(0);
				WRITE_ONCE(count[id], count[id] + 1);
			}
			break;
		case G_STORM:
		case G_WORK:
			tscdeadline_in(j == G_STORM ? 50 : 1000);
			while (READ_ONCE(gen) == my_gen)
				WRITE_ONCE(count[id], count[id] + 1);
			break;
		case G_TIMER_LAT:
			while (READ_ONCE(gen) == my_gen) {
				/* STI's shadow: no interrupt before the HLT. */
				asm volatile("cli" ::: "memory");
				if (id == 0)
					tscdeadline_in(200);
				asm volatile("sti; hlt" ::: "memory");
			}
			break;
		case G_IPI_RTT:
			while (READ_ONCE(gen) == my_gen) {
				if (id != 0) {
					asm volatile("sti; hlt" ::: "memory");
					continue;
				}
				asm volatile("cli" ::: "memory");
				WRITE_ONCE(ipi_back, 0);
				ipi_sent_tsc = rdtsc();
				x2apic_write_reg(APIC_ICR, (1ull << 32) | IPI_VEC);
				while (!READ_ONCE(ipi_back))
					asm volatile("sti; hlt; cli" ::: "memory");
				asm volatile("sti" ::: "memory");
			}
			break;
		}
	}
}

#define GPTR(vm, var) ((typeof(var) *)addr_gva2hva(vm, (gva_t)&(var)))
#define GREAD(vm, var) READ_ONCE(*GPTR(vm, var))
#define GWRITE(vm, var, val) WRITE_ONCE(*GPTR(vm, var), val)

static struct kvm_vm *vm;
static struct kvm_vcpu *vcpus[2];

static u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void create_vm(int nr)
{
	int i;

	vm = vm_create_with_vcpus(nr, guest_code, vcpus);
	vm_install_exception_handler(vm, TIMER_VEC, timer_handler);
	vm_install_exception_handler(vm, IPI_VEC, ipi_handler);
	vm_install_exception_handler(vm, 0xff, spurious_handler);
	for (i = 0; i < nr; i++)
		vcpu_clear_cpuid_feature(vcpus[i], X86_FEATURE_SVM);
	tsc_khz_g = __vcpu_ioctl(vcpus[0], KVM_GET_TSC_KHZ, NULL);
	TEST_ASSERT(tsc_khz_g > 0, "KVM_GET_TSC_KHZ");
	sync_global_to_guest(vm, tsc_khz_g);
}

static void set_job(u64 j)
{
	GWRITE(vm, job, j);
	GWRITE(vm, nsamples, 0);
	GWRITE(vm, gen, GREAD(vm, gen) + 1);
}

static FILE *out;

static void emit(const char *metric, double v)
{
	printf("%-48s %14.1f\n", metric, v);
	if (out)
		fprintf(out, "%s %.1f\n", metric, v);
}

/* -m exits: synchronous KVM_RUN from threads of this process. */
struct runner {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	bool stop;
};

static void *run_vcpu(void *arg)
{
	struct runner *r = arg;
	struct ucall uc;

	while (!READ_ONCE(r->stop)) {
		if (__vcpu_run(r->vcpu) && errno == EINTR)
			continue;
		if (get_ucall(r->vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
	}
	return NULL;
}

static double window_rate(u64 *c, int ms)
{
	u64 c0 = READ_ONCE(*c), t0 = now_ns();

	usleep(ms * 1000);
	return (READ_ONCE(*c) - c0) * 1e9 / (now_ns() - t0);
}

static void kick_runners(struct runner *r, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		WRITE_ONCE(r[i].stop, true);
		pthread_kill(r[i].thread, SIGUSR1);
	}
	for (i = 0; i < n; i++)
		pthread_join(r[i].thread, NULL);
}

static void sig_nop(int s) {}

/*
 * Under QEMU TCG's emulated SVM a vCPU is sometimes left with the L1 kernel's
 * RIP (the instruction after its VMRUN) as its own, or at RIP 0x100, and
 * never makes progress again: on the base kernel as on a patched one.  A
 * round in which a vCPU did no work, or did not take the next job within a
 * second, measures that and not KVM: it is run again in a new VM, and the
 * count of such VMs is reported.
 */
static bool vcpu_answers(int i)
{
	u64 want = GREAD(vm, gen), t0 = now_ns();

	while (GREAD(vm, acked[i]) != want) {
		if (now_ns() - t0 > 1000000000ull)
			return false;
		usleep(1000);
	}
	return true;
}

static bool vcpu_wedged(int i, bool answered, u64 count_before)
{
	bool idle = GREAD(vm, count[i]) == count_before;
	struct kvm_regs regs;

	if (answered && !idle)
		return false;
	vcpu_regs_get(vcpus[i], &regs);
	printf("vCPU %d wedged at RIP %llx (%s): the round runs again in a new VM\n",
	       i, regs.rip, idle ? "no work done" : "its next job not taken");
	return true;
}

static void bench_exits(int rounds, int ms)
{
	double cpuid[64], pio[64], timers[64], rtt[64];
	struct runner r[2] = {};
	int i, k, wedged = 0;
	bool bad, answered[2];
	u64 c0[2];

	signal(SIGUSR1, sig_nop);
	create_vm(2);
	for (k = 0; k < rounds; k++) {
		for (i = 0; i < 2; i++) {
			c0[i] = GREAD(vm, count[i]);
			r[i].vcpu = vcpus[i];
			r[i].stop = false;
			pthread_create(&r[i].thread, NULL, run_vcpu, &r[i]);
		}
		set_job(G_CPUID);
		cpuid[k] = window_rate(GPTR(vm, count[0]), ms);
		set_job(G_PIO);
		pio[k] = window_rate(GPTR(vm, count[0]), ms);
		set_job(G_STORM);
		usleep(50000);
		{
			u64 t0 = GREAD(vm, ticks[0]) + GREAD(vm, ticks[1]), p0 = GREAD(vm, pongs);
			u64 n0 = now_ns(), dt;

			usleep(ms * 1000);
			dt = now_ns() - n0;
			timers[k] = (GREAD(vm, ticks[0]) + GREAD(vm, ticks[1]) - t0) * 1e9 / dt;
			rtt[k] = (GREAD(vm, pongs) - p0) * 1e9 / dt;
		}
		set_job(G_IDLE);
		answered[0] = vcpu_answers(0);
		answered[1] = vcpu_answers(1);
		kick_runners(r, 2);
		bad = vcpu_wedged(0, answered[0], c0[0]);
		bad |= vcpu_wedged(1, answered[1], c0[1]);
		if (bad) {
			wedged++;
			TEST_ASSERT(wedged <= 5, "%d wedged VMs", wedged);
			kvm_vm_free(vm);
			create_vm(2);
			k--;
			continue;
		}
		printf("round %d: cpuid %.0f/s, pio %.0f/s, storm: %.0f timers/s, %.0f IPI RTT/s\n",
		       k, cpuid[k], pio[k], timers[k], rtt[k]);
	}
	printf("%-48s %14s\n", "KVM_RUN exits (medians)", "per second");
	emit("cpuid_exits", median(cpuid, rounds));
	emit("pio_exits", median(pio, rounds));
	emit("storm_timer_irqs", median(timers, rounds));
	emit("storm_ipi_round_trips", median(rtt, rounds));
	printf("VMs wedged by the platform and replaced: %d\n", wedged);
	if (out)
		fprintf(out, "# wedged_vms %d\n", wedged);
	kvm_vm_free(vm);
}

/* -m caretaker */
static int isolated[2];

static int isolated_cpus(void)
{
	char buf[128];
	int a, b, n = 0;
	FILE *f = fopen("/sys/devices/system/cpu/isolated", "r");

	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return 0;
	}
	fclose(f);
	if (sscanf(buf, "%d-%d", &a, &b) == 2 && b > a) {
		isolated[0] = a;
		isolated[1] = a + 1;
		n = 2;
	} else if (sscanf(buf, "%d,%d", &a, &b) == 2) {
		isolated[0] = a;
		isolated[1] = b;
		n = 2;
	}
	return n;
}

static pid_t vcpu_task(int id)
{
	char path[300], want[32], buf[64];
	struct dirent *de;
	pid_t pid = 0;
	DIR *d = opendir("/proc");
	FILE *f;

	snprintf(want, sizeof(want), "kvm-vcpu-%d/%d\n", getpid(), id);
	while (d && !pid && (de = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && !strcmp(buf, want))
			pid = atoi(de->d_name);
		fclose(f);
	}
	if (d)
		closedir(d);
	return pid;
}

static void run_async(struct kvm_vcpu *vcpu, u32 flags)
{
	struct kvm_run_async ra = { .flags = flags };

	TEST_ASSERT(!__vcpu_ioctl(vcpu, KVM_RUN_ASYNC, &ra), "KVM_RUN_ASYNC 0x%x: errno %d",
		    flags, errno);
}

/* Start a VM whose vCPUs run in tasks on the isolated CPUs, with or without caretakers. */
static void start_vm(bool caretaker)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_CARETAKER };
	cpu_set_t set;
	int i;

	create_vm(2);
	for (i = 0; i < 2; i++) {
		if (caretaker) {
			cap.args[0] = isolated[i];
			vcpu_ioctl(vcpus[i], KVM_ENABLE_CAP, &cap);
		}
		run_async(vcpus[i], 0);
		if (!caretaker) {
			CPU_ZERO(&set);
			CPU_SET(isolated[i], &set);
			TEST_ASSERT(!sched_setaffinity(vcpu_task(i), sizeof(set), &set),
				    "pin the vCPU task to CPU %d", isolated[i]);
		}
	}
	usleep(100000);
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* p50, p99 and max of the guest's samples, in us. */
static void percentiles(double *p50, double *p99, double *max)
{
	static u64 s[NSAMPLES];
	u64 n = GREAD(vm, nsamples);
	u64 i;

	TEST_ASSERT(n >= 100, "only %lu samples", n);
	for (i = 0; i < n; i++)
		s[i] = GREAD(vm, samples[i]);
	qsort(s, n, sizeof(*s), cmp_u64);
	*p50 = s[n / 2] * 1000.0 / tsc_khz_g;
	*p99 = s[n * 99 / 100] * 1000.0 / tsc_khz_g;
	*max = s[n - 1] * 1000.0 / tsc_khz_g;
}

static void bench_caretaker(int rounds, int ms)
{
	double work[2][64], lat50[2][64], lat99[2][64], latmax[2][64];
	double ipi50[2][64], ipi99[2][64], ipimax[2][64];
	static const char * const names[] = {
		"guest_work_rate", "timer_latency_p50_us", "timer_latency_p99_us",
		"timer_latency_max_us", "ipi_round_trip_p50_us", "ipi_round_trip_p99_us",
		"ipi_round_trip_max_us",
	};
	double *m[][2] = { { work[0], work[1] }, { lat50[0], lat50[1] }, { lat99[0], lat99[1] },
			   { latmax[0], latmax[1] }, { ipi50[0], ipi50[1] },
			   { ipi99[0], ipi99[1] }, { ipimax[0], ipimax[1] } };
	int k, c, i;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_CARETAKER));
	if (isolated_cpus() < 2)
		ksft_exit_skip("needs two CPUs in isolcpus=domain\n");

	for (k = 0; k < rounds; k++) {
		for (c = 0; c < 2; c++) {
			start_vm(c);
			set_job(G_WORK);
			usleep(50000);
			work[c][k] = window_rate(GPTR(vm, count[0]), ms);
			set_job(G_TIMER_LAT);
			for (i = 0; i < 100 && GREAD(vm, nsamples) < 1000; i++)
				usleep(20000);
			percentiles(&lat50[c][k], &lat99[c][k], &latmax[c][k]);
			set_job(G_IPI_RTT);
			for (i = 0; i < 100 && GREAD(vm, nsamples) < 1000; i++)
				usleep(20000);
			percentiles(&ipi50[c][k], &ipi99[c][k], &ipimax[c][k]);
			set_job(G_IDLE);
			for (i = 0; i < 2; i++)
				run_async(vcpus[i], KVM_RUN_ASYNC_STOP);
			kvm_vm_free(vm);
		}
		printf("%d (async/caretaker): work %.0f/%.0f, timer %.1f/%.1f, IPI %.1f/%.1f\n",
		       k, work[0][k], work[1][k], lat50[0][k], lat50[1][k],
		       ipi50[0][k], ipi50[1][k]);
	}
	printf("\n%-32s %14s %14s %8s\n", "caretaker (medians)", "KVM_RUN_ASYNC", "caretaker",
	       "ratio");
	for (i = 0; i < (int)ARRAY_SIZE(names); i++) {
		double a = median(m[i][0], rounds), b = median(m[i][1], rounds);

		printf("%-32s %14.1f %14.1f %8.3f\n", names[i], a, b, b / a);
		if (out)
			fprintf(out, "%s %.1f %.1f %.4f\n", names[i], a, b, b / a);
	}
}

int main(int argc, char *argv[])
{
	const char *mode = "exits", *file = NULL;
	int rounds = 5, ms = 500, opt;

	while ((opt = getopt(argc, argv, "m:r:w:o:")) != -1) {
		switch (opt) {
		case 'm':
			mode = optarg;
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'w':
			ms = atoi(optarg);
			break;
		case 'o':
			file = optarg;
			break;
		default:
			printf("usage: %s [-m exits|caretaker] [-r n] [-w ms] [-o file]\n",
			       argv[0]);
			exit(KSFT_FAIL);
		}
	}
	TEST_ASSERT(rounds > 0 && rounds <= 64 && ms > 0, "bad -r or -w");
	if (file) {
		out = fopen(file, "w");
		TEST_ASSERT(out, "open %s", file);
		fprintf(out, "# %s: medians of %d rounds of %d ms\n", mode, rounds, ms);
	}
	if (!strcmp(mode, "exits"))
		bench_exits(rounds, ms);
	else if (!strcmp(mode, "caretaker"))
		bench_caretaker(rounds, ms);
	else
		TEST_FAIL("unknown mode %s", mode);
	if (out)
		fclose(out);
	return 0;
}
