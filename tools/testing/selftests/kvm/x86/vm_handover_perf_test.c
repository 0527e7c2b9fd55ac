// SPDX-License-Identifier: GPL-2.0-only
/*
 * What a VMM swap costs a compute-bound guest, side by side for two ways of
 * replacing the VMM:
 *
 *  - handover: the running VMM detaches, a new process (a new mm) attaches
 *    (KVM_VM_DETACH, KVM_VM_ATTACH); the vCPU runs in its task throughout;
 *  - stop-save-restore: the VMM stops the vCPU and saves its state, a new
 *    process creates a new VM on the same memory and restores the state, as
 *    x86/state_test does.
 *
 * Each round measures the guest's work rate in a window with one swap and in
 * an equal window before it with none, and the longest time the guest made
 * no progress.  Prints the ratios; asserts nothing about time.
 *
 *   vm_handover_perf_test [-r rounds] [-w window_ms] [-o file]
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "async_run.h"

static const struct kvm_vm_detach no_flags;
static u64 count;

static void guest_code(void)
{
	for (;;)
		WRITE_ONCE(count, READ_ONCE(count) + 1);
}

static u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void run_async(struct kvm_vcpu *vcpu, u32 flags)
{
	struct kvm_run_async ra = { .flags = flags };

	vcpu_ioctl(vcpu, KVM_RUN_ASYNC, &ra);
}

struct window {
	double rate;		/* guest iterations per second */
	double stall_ms;	/* longest time without progress */
};

/* Watch the guest's counter for @ms. */
static struct window watch(u64 *p, int ms)
{
	u64 t0 = now_ns(), end = t0 + ms * 1000000ull, last = t0, t, max = 0;
	u64 c0 = READ_ONCE(*p), c = c0, v;
	struct window w;

	while ((t = now_ns()) < end) {
		v = READ_ONCE(*p);
		if (v != c) {
			if (t - last > max)
				max = t - last;
			last = t;
			c = v;
		}
		sched_yield();
	}
	if (t - last > max)
		max = t - last;
	w.rate = (c - c0) * 1e9 / (t - t0);
	w.stall_ms = max / 1e6;
	return w;
}

struct swap {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	bool handover;
	pid_t child;
	int ready[2];
};

/* The new VMM: a child process, so a new mm with the same mappings. */
static void new_vmm(struct swap *s, struct kvm_x86_state *state)
{
	struct userspace_mem_region *r = memslot2region(s->vm, 0);
	struct kvm_vm_attach_slot slot = { .userspace_addr = r->region.userspace_addr };
	struct kvm_vm_attach attach = { .nr_slots = 1, .slots = (u64)&slot };
	struct kvm_vcpu *vcpu;
	char c = 1;

	if (s->handover) {
		TEST_ASSERT(!ioctl(s->vm->fd, KVM_VM_ATTACH, &attach), "attach: errno %d", errno);
	} else {
		/* A new VM on the same memory, with the state saved by the old VMM. */
		kvm_vm_release(s->vm);
		vcpu = vm_recreate_with_one_vcpu(s->vm);
		vcpu_load_state(vcpu, state);
		run_async(vcpu, 0);
	}
	TEST_ASSERT(write(s->ready[1], &c, 1) == 1, "pipe");
	for (;;)
		pause();
}

static void *do_swap(void *arg)
{
	struct kvm_x86_state *state = NULL;
	struct swap *s = arg;
	char c;

	if (s->handover) {
		vm_ioctl(s->vm, KVM_VM_DETACH, &no_flags);
	} else {
		run_async(s->vcpu, KVM_RUN_ASYNC_STOP);
		state = vcpu_save_state(s->vcpu);
	}
	s->child = fork();
	TEST_ASSERT(s->child >= 0, "fork");
	if (!s->child)
		new_vmm(s, state);
	TEST_ASSERT(read(s->ready[0], &c, 1) == 1, "the new VMM did not start");
	if (state)
		kvm_x86_state_cleanup(state);
	return NULL;
}

/* One round: a window with no swap, then an equal one with a swap. */
static void round_of(bool handover, int ms, struct window *quiet, struct window *swapped)
{
	struct swap s = { .handover = handover };
	struct vm_shape shape = VM_SHAPE_DEFAULT;
	u64 *p;
	pthread_t t;
	int status;

	shape.src_type = VM_MEM_SRC_SHMEM;
	s.vm = vm_create_shape_with_one_vcpu(shape, &s.vcpu, guest_code);
	TEST_ASSERT(!pipe(s.ready), "pipe");
	p = addr_gva2hva(s.vm, (gva_t)&count);

	run_async(s.vcpu, 0);
	usleep(50000);
	*quiet = watch(p, ms);

	pthread_create(&t, NULL, do_swap, &s);
	*swapped = watch(p, ms);
	pthread_join(t, NULL);

	kill(s.child, SIGKILL);
	waitpid(s.child, &status, 0);
	close(s.ready[0]);
	close(s.ready[1]);
	kvm_vm_free(s.vm);
}

int main(int argc, char *argv[])
{
	double ratio[2][64], stall[2][64];
	const char *name[2] = { "stop-save-restore", "handover" };
	int rounds = 5, ms = 500, i, m;
	struct window q, w;
	const char *out = NULL;
	FILE *f;

	perf_args(argc, argv, &rounds, &ms, &out);
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VM_HANDOVER));

	for (i = 0; i < rounds; i++) {
		/* Alternate which method goes first. */
		for (m = 0; m < 2; m++) {
			int h = (i + m) % 2;

			round_of(h, ms, &q, &w);
			ratio[h][i] = w.rate / q.rate;
			stall[h][i] = w.stall_ms;
			printf("round %d %-18s quiet %.0f/s (stall %.1f ms), ",
			       i, name[h], q.rate, q.stall_ms);
			printf("with swap %.0f/s (stall %.1f ms): %.3f\n",
			       w.rate, w.stall_ms, ratio[h][i]);
		}
	}

	printf("\n%-58s %8s %16s\n", "VMM swap, compute-bound guest (median)",
	       "ratio", "longest stall");
	for (m = 1; m >= 0; m--)
		printf("%-58s %8.3f %13.1f ms\n", name[m], median(ratio[m], rounds),
		       median(stall[m], rounds));
	printf("(ratio: guest work in a %d ms window with one swap / in an equal one without)\n",
	       ms);

	if (out) {
		f = fopen(out, "w");
		TEST_ASSERT(f, "cannot write %s", out);
		fprintf(f, "# method ratio longest_stall_ms (medians of %d rounds of %d ms)\n",
			rounds, ms);
		for (m = 1; m >= 0; m--)
			fprintf(f, "%s %.4f %.2f\n", name[m], median(ratio[m], rounds),
				median(stall[m], rounds));
		fclose(f);
	}
	return 0;
}
