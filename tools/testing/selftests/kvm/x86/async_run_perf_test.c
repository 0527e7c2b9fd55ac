// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_RUN_ASYNC against KVM_RUN, side by side: the work rate of a guest that
 * never exits, and the rate of port I/O exits a VMM serves, each measured in
 * alternating windows so that both see the same machine.  Prints ratios
 * (asynchronous / synchronous); asserts nothing about time.
 *
 *   async_run_perf_test [-r rounds] [-w window_ms] [-o file]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "async_run.h"

#define PERF_PORT	0x80

static u64 guest_count;

static void guest_compute(void)
{
	for (;;)
		WRITE_ONCE(guest_count, guest_count + 1);
}

static void guest_exits(void)
{
	for (;;) {
		WRITE_ONCE(guest_count, guest_count + 1);
		asm volatile("outb %%al, %w0" : : "Nd"(PERF_PORT), "a"(0));
	}
}

static u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static u64 count(struct kvm_vm *vm)
{
	return READ_ONCE(*(u64 *)addr_gva2hva(vm, (gva_t)&guest_count));
}

static void run_async(struct kvm_vcpu *vcpu, u32 flags)
{
	struct kvm_run_async ra = { .flags = flags };

	vcpu_ioctl(vcpu, KVM_RUN_ASYNC, &ra);
}

/* Guest iterations per second while it runs for @ms with no exit. */
static double rate_of(struct kvm_vm *vm, int ms)
{
	u64 c0, c1, t0, t1;

	c0 = count(vm);
	t0 = now_ns();
	usleep(ms * 1000);
	c1 = count(vm);
	t1 = now_ns();
	return (c1 - c0) * 1e9 / (t1 - t0);
}

static void sigusr1(int sig)
{
}

static void *sync_runner(void *arg)
{
	struct kvm_vcpu *vcpu = arg;

	/* Returns -EINTR when the main thread signals this one. */
	__vcpu_run(vcpu);
	return NULL;
}

static double compute_sync(struct kvm_vcpu *vcpu, int ms)
{
	pthread_t t;
	double r;

	pthread_create(&t, NULL, sync_runner, vcpu);
	usleep(20000);
	r = rate_of(vcpu->vm, ms);
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	return r;
}

static double compute_async(struct kvm_vcpu *vcpu, int ms)
{
	double r;

	run_async(vcpu, 0);
	usleep(20000);
	r = rate_of(vcpu->vm, ms);
	run_async(vcpu, KVM_RUN_ASYNC_STOP);
	return r;
}

/* Exits served per second for @ms, by KVM_RUN in this thread. */
static double exits_sync(struct kvm_vcpu *vcpu, int ms)
{
	u64 t0 = now_ns(), end = t0 + ms * 1000000ull, n = 0;

	while (now_ns() < end) {
		vcpu_run(vcpu);
		TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_IO);
		n++;
	}
	return n * 1e9 / (now_ns() - t0);
}

/* The same, served from poll() with the vCPU in its own task. */
static double exits_async(struct kvm_vcpu *vcpu, int ms)
{
	struct pollfd pfd = { .fd = vcpu->fd, .events = POLLIN };
	u64 t0 = now_ns(), end = t0 + ms * 1000000ull, n = 0;
	double r;

	run_async(vcpu, 0);
	while (now_ns() < end) {
		TEST_ASSERT(poll(&pfd, 1, 10000) == 1, "no exit within 10 s");
		TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_IO);
		n++;
		run_async(vcpu, 0);
	}
	r = n * 1e9 / (now_ns() - t0);

	run_async(vcpu, KVM_RUN_ASYNC_STOP);
	return r;
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *cvcpu, *evcpu;
	struct kvm_vm *cvm, *evm;
	int rounds = 5, ms = 500, i;
	const char *out = NULL;
	double cs[64], ca[64], es[64], ea[64], cr[64], er[64];
	struct sigaction sa = { .sa_handler = sigusr1 };
	FILE *f;

	perf_args(argc, argv, &rounds, &ms, &out);
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));
	sigaction(SIGUSR1, &sa, NULL);

	cvm = vm_create_with_one_vcpu(&cvcpu, guest_compute);
	evm = vm_create_with_one_vcpu(&evcpu, guest_exits);

	/* Warm up both paths once. */
	compute_sync(cvcpu, 50);
	compute_async(cvcpu, 50);
	exits_sync(evcpu, 50);
	exits_async(evcpu, 50);

	for (i = 0; i < rounds; i++) {
		/* Alternate the order so that neither side always goes first. */
		if (i % 2) {
			ca[i] = compute_async(cvcpu, ms);
			cs[i] = compute_sync(cvcpu, ms);
			ea[i] = exits_async(evcpu, ms);
			es[i] = exits_sync(evcpu, ms);
		} else {
			cs[i] = compute_sync(cvcpu, ms);
			ca[i] = compute_async(cvcpu, ms);
			es[i] = exits_sync(evcpu, ms);
			ea[i] = exits_async(evcpu, ms);
		}
		cr[i] = ca[i] / cs[i];
		er[i] = ea[i] / es[i];
		printf("round %d: compute %.0f/s sync, %.0f/s async (%.3f); ",
		       i, cs[i], ca[i], cr[i]);
		printf("exits %.0f/s sync, %.0f/s async (%.3f)\n", es[i], ea[i], er[i]);
	}

	printf("\n%-44s %14s %14s %8s\n", "KVM_RUN_ASYNC vs KVM_RUN (median)",
	       "KVM_RUN", "KVM_RUN_ASYNC", "ratio");
	printf("%-44s %14.0f %14.0f %8.3f\n", "guest work rate, no exits (iterations/s)",
	       median(cs, rounds), median(ca, rounds), median(cr, rounds));
	printf("%-44s %14.0f %14.0f %8.3f\n", "port I/O exits served (exits/s)",
	       median(es, rounds), median(ea, rounds), median(er, rounds));

	if (out) {
		f = fopen(out, "w");
		TEST_ASSERT(f, "cannot write %s", out);
		fprintf(f, "# metric sync async ratio (medians of %d rounds of %d ms)\n",
			rounds, ms);
		fprintf(f, "compute_rate %.0f %.0f %.4f\n", median(cs, rounds),
			median(ca, rounds), median(cr, rounds));
		fprintf(f, "exit_rate %.0f %.0f %.4f\n", median(es, rounds),
			median(ea, rounds), median(er, rounds));
		fclose(f);
	}

	kvm_vm_free(cvm);
	kvm_vm_free(evm);
	return 0;
}
