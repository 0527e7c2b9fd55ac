// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_CAP_VM_PRESERVE: a VM and its vCPUs survive a kexec in a LUO session.
 *
 * Run as "vm_preserve_test -s 1" before the kexec and "vm_preserve_test -s 2"
 * after it.  Without -s, only the single-stage error subtests run and nothing
 * is left preserved, so that the test also fits a suite with no kexec.
 *
 * Stage 1 checks the error paths of KVM_ENABLE_CAP and of
 * LIVEUPDATE_SESSION_PRESERVE_FD (not opted in, vCPU before its VM, running
 * vCPU, closing the session), then starts a guest with a PIT whose vCPUs
 * count without exits in memfd-backed memory, three directly and, with SVM,
 * a fourth in a nested guest (L2) run by a hypervisor in the guest (L1).  It
 * stops the vCPUs, records their state and the PIT's in a "state" memfd and
 * preserves the memfds, the VM and the vCPUs in the session "kvm-preserve".
 * More VMs go into "kvm-preserve-faults" for the retrieve failures of stage 2.  If a kexec
 * image is loaded, a kexec with a running preserved vCPU must then fail with
 * EBUSY and lose nothing.  A child keeps the sessions open and stage 1 exits.
 *
 * Stage 2, in the new kernel and a new process, retrieves the VM (twice: one
 * file), re-adds its memslots from the retrieved memfds, retrieves the vCPUs,
 * compares their state (nested state included), the PIT's and the VM's
 * capabilities with the recorded ones, then runs them: the guest checks its
 * memory and counts on, and the nested guest exits to its hypervisor, which
 * reports and runs it on.  An interrupt that stage 1 raised through the
 * IOAPIC (KVM_IRQ_LINE) right before recording, while vCPU 0 had interrupts
 * off, reaches vCPU 0 exactly once when it enables them in stage 2.
 * The fault subtests make a VM retrieve fail with EPROTONOSUPPORT (foreign
 * format version), EBADMSG (corrupted payload) and EOPNOTSUPP (a capability
 * not carried), and a vCPU retrieve with EOPNOTSUPP (CPU or paravirtual
 * features, nested state), through the test-only kvm.luo_fault parameter.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/liveupdate.h>
#include <linux/reboot.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "svm_util.h"
#include "hyperv.h"
#include "libliveupdate.h"
#include "kvm_luo_util.h"

#define NR_VCPUS	3		/* vCPUs that run the guest directly */
#define NESTED_VCPU	NR_VCPUS	/* with SVM, one more runs it nested */
#define MAX_VCPUS	(NR_VCPUS + 1)
#define NESTED_PASS	0x80		/* L1's report, after L2's */
#define MAX_VCPU_ID	8		/* KVM_CAP_MAX_VCPU_ID of the main VM */
#define APIC_BUS_NS	4		/* KVM_CAP_X86_APIC_BUS_CYCLES_NS of it */
#define EVENT_CAPS	(KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
#define DATA_SLOT	1
#define DATA_GPA	0x10000000ull
#define DATA_SIZE	(2ull << 20)
#define PATTERN_WORDS	512
#define EXTRA_PAGES	16

#define PORT_READY	0x90
#define PORT_PASS	0x91
#define PORT_FAIL	0x92

#define TOKEN_MEM0		1
#define TOKEN_MEM1		2
#define TOKEN_STATE		3
#define TOKEN_VM		10
#define TOKEN_VCPU		20
#define TOKEN_FAULT_VERSION	30
#define TOKEN_FAULT_CORRUPT	40
#define TOKEN_FAULT_CPU_VM	50
#define TOKEN_FAULT_CPU_VCPU	51
#define TOKEN_FAULT_PV_VM	60
#define TOKEN_FAULT_PV_VCPU	61
#define TOKEN_FAULT_CAP_VM	70
#define TOKEN_FAULT_NESTED_VM	80
#define TOKEN_FAULT_NESTED_VCPU	81

#define SESSION_MAIN	"kvm-preserve"
#define SESSION_FAULTS	"kvm-preserve-faults"
#define SESSION_ERRORS	"kvm-preserve-errors"

#define LUO_FAULT	"/sys/module/kvm/parameters/luo_fault"
#define KEXEC_LOADED	"/sys/kernel/kexec_loaded"
#define KVM_DEBUGFS	"/sys/kernel/debug/kvm"

#define MAX_SLOTS	2
#define MAX_MSRS	1024
#define MAX_CPUID	256
#define MAX_XSAVE	(64 * 1024)
#define MAX_NESTED	(sizeof(struct kvm_nested_state) + 2 * 4096)
#define VMCB_CONTROL	0x400	/* the size of the VMCB's control area */
static_assert(sizeof(struct vmcb_control_area) == VMCB_CONTROL);
#define APIC_TMCCT	0x390
#define STATE_MAGIC	0x7365727072766d6bull	/* "kvmrpres" */

#define EXIT_TIMEOUT_MS	60000
#define IRQ_PIN		16	/* an IOAPIC pin the PIC does not share */
#define IRQ_VECTOR	0x40
#define APIC_LVT0	0x350

/* Guest data, in memslot 0. */
static u64 counters[MAX_VCPUS];
static u64 phase;
static u64 pattern[PATTERN_WORDS];
static u64 irqs;

/*
 * vCPU 0 takes the interrupt stage 1 raised through the IOAPIC, pending
 * since, once it enables interrupts in stage 2.
 */
static void guest_irq(struct ex_regs *regs)
{
	WRITE_ONCE(irqs, READ_ONCE(irqs) + 1);
	x2apic_write_reg(APIC_EOI, 0);
}

static u64 pattern_word(u64 i)
{
	return i * 0x9e3779b97f4a7c15ull + 0x0123456789abcdefull;
}

static u64 data_word(u64 i)
{
	return ~pattern_word(i) ^ (i << 32);
}

static void guest_out(u16 port, u8 v)
{
	asm volatile("outb %%al, %w0" : : "Nd"(port), "a"(v));
}

/* Count, with no exit, until the VMM of stage 2 bumps the phase; check. */
static void guest_count_and_check(u64 id)
{
	u64 *data = (u64 *)DATA_GPA;
	u64 i;

	while (READ_ONCE(phase) < 1)
		WRITE_ONCE(counters[id], READ_ONCE(counters[id]) + 1);

	for (i = 0; i < DATA_SIZE / 8; i++)
		if (READ_ONCE(data[i]) != data_word(i))
			guest_out(PORT_FAIL, 1);
	for (i = 0; i < PATTERN_WORDS; i++)
		if (READ_ONCE(pattern[i]) != pattern_word(i))
			guest_out(PORT_FAIL, 2);
	guest_out(PORT_PASS, id);
}

static void guest_count(u64 id)
{
	for (;;)
		WRITE_ONCE(counters[id], READ_ONCE(counters[id]) + 1);
}

static void guest_code(u64 id)
{
	u64 *data = (u64 *)DATA_GPA;
	u64 i;

	if (id == 0) {
		for (i = 0; i < DATA_SIZE / 8; i++)
			WRITE_ONCE(data[i], data_word(i));
		for (i = 0; i < PATTERN_WORDS; i++)
			WRITE_ONCE(pattern[i], pattern_word(i));
		/*
		 * The local APIC accepts interrupts, which stay pending (IF=0),
		 * but none from the PIC.
		 */
		x2apic_enable();
		x2apic_write_reg(APIC_LVT0, APIC_LVT_MASKED);
		guest_out(PORT_READY, 0);
	}

	guest_count_and_check(id);
	if (id == 0)
		asm volatile("sti; nop");
	guest_count(id);
}

/*
 * The nested vCPU: L2 counts and checks as the others do (its port I/O goes
 * straight to the VMM: L1 does not intercept it), then exits to L1, which
 * reports from its own context and runs L2 on, to count for good.
 */
static void nested_l2_code(void)
{
	guest_count_and_check(NESTED_VCPU);
	vmmcall();
	guest_count(NESTED_VCPU);
}

static void nested_l1_code(struct svm_test_data *svm)
{
	generic_svm_setup(svm, nested_l2_code);
	run_guest(svm->vmcb, svm->vmcb_gpa);
	if (svm->vmcb->control.exit_code != SVM_EXIT_VMMCALL)
		guest_out(PORT_FAIL, 3);
	guest_out(PORT_PASS, NESTED_PASS | NESTED_VCPU);
	svm->vmcb->save.rip += 3;
	run_guest(svm->vmcb, svm->vmcb_gpa);
	guest_out(PORT_FAIL, 4);
}

static void guest_spin_code(void)
{
	for (;;)
		cpu_relax();
}

/* One vCPU's state as the KVM_GET_* ioctls return it. */
struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	u64 tsc_khz;
	u64 counter;
	u32 nmsrs;
	u32 ncpuid;
	u32 xsave_size;
	u32 nested_size;
	u8 nested[MAX_NESTED];
	struct kvm_msr_entry msrs[MAX_MSRS];
	struct kvm_cpuid_entry2 cpuid[MAX_CPUID];
	u32 xsave[MAX_XSAVE / sizeof(u32)];
};

/* What stage 1 tells stage 2, in the preserved "state" memfd. */
struct preserved_state {
	u64 magic;
	u32 nr_vcpus;
	u32 nr_slots;
	struct {
		u32 slot;
		u32 flags;
		u64 gpa;
		u64 size;
		u64 token;
	} slots[MAX_SLOTS];
	u64 counters_gpa;
	u64 phase_gpa;
	u64 pattern_gpa;
	u64 irqs_gpa;
	u64 has_xcrs;
	u64 apic_bus_ns;
	u64 realtime_ns;	/* CLOCK_REALTIME when the vCPUs were recorded */
	struct kvm_pit_state2 pit;
	struct kvm_irqchip irqchip[3];	/* PIC master, PIC slave, IOAPIC */
	struct vcpu_state vcpus[MAX_VCPUS];
};

static u64 realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/*
 * How far the guest's TSC may have moved since stage 1 recorded it: the
 * time between the two stages by CLOCK_REALTIME, which the new kernel seeds
 * from the RTC (good to about 1 s), plus 2 s for that, at the vCPU's TSC
 * rate plus 10%.  A restore that lost the TSC offset, for one, would show
 * the host's TSC: the whole uptime of the old kernel more.
 */
static u64 tsc_moved_max;

static void assert_errno(int r, int e, const char *what)
{
	TEST_ASSERT(r == -1 && errno == e, "%s: expected errno %d (%s), got %d (%s), r %d",
		    what, e, strerror(e), errno, strerror(errno), r);
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

/* The port and byte of the port I/O exit a readable vCPU is parked on. */
static u16 parked_pio(int vcpu_fd, struct kvm_run *run, u8 *data)
{
	struct kvm_run_async ra;

	TEST_ASSERT(!run_async(vcpu_fd, KVM_RUN_ASYNC_QUERY, &ra), "QUERY: errno %d", errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_PARKED);
	TEST_ASSERT_EQ(ra.result, 0);
	TEST_ASSERT(run->exit_reason == KVM_EXIT_IO, "exit reason %u, want KVM_EXIT_IO",
		    run->exit_reason);
	*data = *((u8 *)run + run->io.data_offset);
	return run->io.port;
}

/* A value that the guest keeps increasing, read through @p. */
static void assert_counting(u64 *p, int vcpu, const char *when)
{
	u64 a = READ_ONCE(*p), b;
	int i;

	for (i = 0; i < 500; i++) {
		usleep(10000);
		b = READ_ONCE(*p);
		if (b > a)
			return;
	}
	TEST_FAIL("vCPU %d stopped counting %s (%lu)", vcpu, when, a);
}

/* vCPU state, from the raw files: stage 2 has no struct kvm_vm. */

static void get_or_die(int fd, unsigned long cmd, void *arg, const char *name)
{
	TEST_ASSERT(ioctl(fd, cmd, arg) >= 0, "%s: errno %d (%s)", name, errno,
		    strerror(errno));
}

/* Fill @s from the vCPU; s->nmsrs and s->msrs[].index say which MSRs. */
static void get_vcpu_state(int vm_fd, int vcpu_fd, bool has_xcrs, struct vcpu_state *s)
{
	struct kvm_cpuid2 *cpuid;
	struct kvm_msrs *msrs;
	int r, size;
	u32 i;

	get_or_die(vcpu_fd, KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	get_or_die(vcpu_fd, KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	if (has_xcrs)
		get_or_die(vcpu_fd, KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	get_or_die(vcpu_fd, KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	get_or_die(vcpu_fd, KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE");
	get_or_die(vcpu_fd, KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS");
	get_or_die(vcpu_fd, KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");

	r = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	TEST_ASSERT(r > 0, "KVM_GET_TSC_KHZ: r %d errno %d", r, errno);
	s->tsc_khz = r;

	size = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (size > 0) {
		TEST_ASSERT(size <= MAX_XSAVE, "xsave size %d, at most %d here", size, MAX_XSAVE);
		s->xsave_size = size;
		get_or_die(vcpu_fd, KVM_GET_XSAVE2, s->xsave, "KVM_GET_XSAVE2");
	} else {
		s->xsave_size = sizeof(struct kvm_xsave);
		get_or_die(vcpu_fd, KVM_GET_XSAVE, s->xsave, "KVM_GET_XSAVE");
	}

	msrs = calloc(1, sizeof(*msrs) + s->nmsrs * sizeof(msrs->entries[0]));
	TEST_ASSERT(msrs, "calloc");
	msrs->nmsrs = s->nmsrs;
	for (i = 0; i < s->nmsrs; i++)
		msrs->entries[i].index = s->msrs[i].index;
	r = ioctl(vcpu_fd, KVM_GET_MSRS, msrs);
	TEST_ASSERT(r == (int)s->nmsrs, "KVM_GET_MSRS: %d of %u, errno %d", r, s->nmsrs, errno);
	memcpy(s->msrs, msrs->entries, s->nmsrs * sizeof(msrs->entries[0]));
	free(msrs);

	size = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE);
	if (size > 0) {
		struct kvm_nested_state *ns = (void *)s->nested;

		TEST_ASSERT(size <= (int)MAX_NESTED, "nested state size %d, at most %lu here",
			    size, MAX_NESTED);
		ns->size = MAX_NESTED;
		get_or_die(vcpu_fd, KVM_GET_NESTED_STATE, ns, "KVM_GET_NESTED_STATE");
		s->nested_size = ns->size;
	}

	cpuid = calloc(1, sizeof(*cpuid) + MAX_CPUID * sizeof(cpuid->entries[0]));
	TEST_ASSERT(cpuid, "calloc");
	cpuid->nent = MAX_CPUID;
	get_or_die(vcpu_fd, KVM_GET_CPUID2, cpuid, "KVM_GET_CPUID2");
	s->ncpuid = cpuid->nent;
	memcpy(s->cpuid, cpuid->entries, s->ncpuid * sizeof(cpuid->entries[0]));
	free(cpuid);
}

static int first_diff(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;
	size_t i;

	for (i = 0; i < n; i++)
		if (x[i] != y[i])
			return i;
	return -1;
}

static int report_diff(int vcpu, const char *what, const void *a, const void *b, size_t n)
{
	int off = first_diff(a, b, n);

	if (off < 0)
		return 0;
	if (vcpu < 0)
		ksft_print_msg("VM: ");
	else
		ksft_print_msg("vCPU %d: ", vcpu);
	printf("%s differs (first at byte 0x%x: 0x%02x, was 0x%02x)\n", what, off,
	       ((const u8 *)b)[off], ((const u8 *)a)[off]);
	return 1;
}

static bool in_guest_mode(const struct vcpu_state *s)
{
	const struct kvm_nested_state *ns = (const void *)s->nested;

	return s->nested_size && (ns->flags & KVM_STATE_NESTED_GUEST_MODE);
}

/*
 * The nested state: all of it, but of an SVM VMCB only the control area and
 * the L1 state that VMRUN saves (KVM_SET_NESTED_STATE takes no more).
 */
static int compare_nested_state(int vcpu, const struct vcpu_state *old,
				const struct vcpu_state *new)
{
	const struct kvm_nested_state *a = (const void *)old->nested;
	const struct kvm_nested_state *b = (const void *)new->nested;
	const struct vmcb *va = (const void *)a->data.svm, *vb = (const void *)b->data.svm;
	int n = 0;

	if (old->nested_size != new->nested_size) {
		ksft_print_msg("vCPU %d: nested state of %u bytes, was %u\n", vcpu,
			       new->nested_size, old->nested_size);
		return 1;
	}
	if (!old->nested_size)
		return 0;
	n += report_diff(vcpu, "nested state header", a, b, sizeof(*a));
	if (a->format != KVM_STATE_NESTED_FORMAT_SVM || !(a->flags & KVM_STATE_NESTED_GUEST_MODE))
		return n + report_diff(vcpu, "nested state", a->data.vmx, b->data.vmx,
				       old->nested_size - sizeof(*a));

	n += report_diff(vcpu, "vmcb12 control", va, vb, VMCB_CONTROL);
	if (va->save.rip != vb->save.rip || va->save.rsp != vb->save.rsp ||
	    va->save.rax != vb->save.rax || va->save.rflags != vb->save.rflags ||
	    va->save.cr0 != vb->save.cr0 || va->save.cr3 != vb->save.cr3 ||
	    va->save.cr4 != vb->save.cr4 || va->save.efer != vb->save.efer) {
		ksft_print_msg("vCPU %d: L1 state differs (rip 0x%lx, was 0x%lx)\n", vcpu,
			       vb->save.rip, va->save.rip);
		n++;
	}
	return n;
}

/* The number of items of @new that differ from @old, each printed. */
/* The TSC among the MSRs recorded. */
static u64 now_tsc(const struct vcpu_state *s)
{
	u32 i;

	for (i = 0; i < s->nmsrs; i++)
		if (s->msrs[i].index == MSR_IA32_TSC)
			return s->msrs[i].data;
	return 0;
}

static int compare_vcpu_state(int vcpu, const struct vcpu_state *old,
			      const struct vcpu_state *new, bool has_xcrs)
{
	int n = 0;
	u32 i;

	n += report_diff(vcpu, "regs", &old->regs, &new->regs, sizeof(old->regs));
	n += report_diff(vcpu, "sregs", &old->sregs, &new->sregs, sizeof(old->sregs));
	if (has_xcrs)
		n += report_diff(vcpu, "xcrs", &old->xcrs, &new->xcrs, sizeof(old->xcrs));
	n += report_diff(vcpu, "events", &old->events, &new->events, sizeof(old->events));
	n += report_diff(vcpu, "mp_state", &old->mp_state, &new->mp_state,
			 sizeof(old->mp_state));
	n += report_diff(vcpu, "debugregs", &old->debugregs, &new->debugregs,
			 sizeof(old->debugregs));

	/* The timer's current count moves on: everything else must not. */
	n += report_diff(vcpu, "lapic", old->lapic.regs, new->lapic.regs, APIC_TMCCT);
	n += report_diff(vcpu, "lapic (after TMCCT)", old->lapic.regs + APIC_TMCCT + 4,
			 new->lapic.regs + APIC_TMCCT + 4,
			 sizeof(old->lapic.regs) - APIC_TMCCT - 4);

	if (old->tsc_khz != new->tsc_khz) {
		ksft_print_msg("vCPU %d: TSC kHz %lu, was %lu\n", vcpu, new->tsc_khz,
			       old->tsc_khz);
		n++;
	}

	if (old->ncpuid != new->ncpuid) {
		ksft_print_msg("vCPU %d: %u CPUID entries, was %u\n", vcpu, new->ncpuid,
			       old->ncpuid);
		n++;
	} else {
		for (i = 0; i < old->ncpuid; i++) {
			if (!memcmp(&old->cpuid[i], &new->cpuid[i], sizeof(old->cpuid[i])))
				continue;
			ksft_print_msg("vCPU %d: CPUID entry %u (0x%x.%u) differs\n", vcpu, i,
				       old->cpuid[i].function, old->cpuid[i].index);
			n++;
		}
	}

	n += compare_nested_state(vcpu, old, new);

	if (old->xsave_size != new->xsave_size) {
		ksft_print_msg("vCPU %d: xsave size %u, was %u\n", vcpu, new->xsave_size,
			       old->xsave_size);
		n++;
	} else {
		n += report_diff(vcpu, "xsave", old->xsave, new->xsave, old->xsave_size);
	}

	for (i = 0; i < old->nmsrs; i++) {
		const struct kvm_msr_entry *a = &old->msrs[i], *b = &new->msrs[i];

		/*
		 * Counters of time move on: the TSC from where it was, Hyper-V's
		 * reference counter and the vCPU's run time from this kernel's
		 * clocks (both are read-only to the guest).
		 */
		if (a->index == MSR_IA32_TSC ?
		    b->data >= a->data && b->data - a->data <= tsc_moved_max :
		    b->data == a->data)
			continue;
		if (a->index == HV_X64_MSR_TIME_REF_COUNT || a->index == HV_X64_MSR_VP_RUNTIME)
			continue;
		ksft_print_msg("vCPU %d: MSR 0x%x is 0x%llx, was 0x%llx\n", vcpu, a->index,
			       b->data, a->data);
		n++;
	}
	return n;
}

/* VMs that may be preserved. */

static struct kvm_vm *create_preservable_vm(struct vm_shape shape, int nr_vcpus,
					    struct kvm_vcpu **vcpus, void *code)
{
	struct kvm_vm *vm = __vm_create(shape, nr_vcpus, EXTRA_PAGES);
	int i;

	vm_enable_cap(vm, KVM_CAP_VM_PRESERVE, 0);
	for (i = 0; i < nr_vcpus; i++)
		vcpus[i] = vm_vcpu_add(vm, i, code);
	return vm;
}

static int enable_preserve(int vm_fd, u32 flags, int arg, u64 val)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_VM_PRESERVE, .flags = flags };

	if (arg >= 0)
		cap.args[arg] = val;
	return ioctl(vm_fd, KVM_ENABLE_CAP, &cap);
}

static void test_enable_cap(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	int i, j, r;

	TEST_ASSERT_EQ(kvm_check_cap(KVM_CAP_VM_PRESERVE), 1);

	for (i = 0; i < 32; i++) {
		r = enable_preserve(vm->fd, BIT(i), -1, 0);
		TEST_ASSERT(r == -1 && errno == EINVAL, "flags 0x%lx: r %d errno %d",
			    BIT(i), r, errno);
	}
	for (i = 0; i < 4; i++) {
		for (j = 0; j < 64; j++) {
			r = enable_preserve(vm->fd, 0, i, BIT_ULL(j));
			TEST_ASSERT(r == -1 && errno == EINVAL, "args[%d] 0x%llx: r %d errno %d",
				    i, BIT_ULL(j), r, errno);
		}
	}

	TEST_ASSERT(!enable_preserve(vm->fd, 0, -1, 0), "enable: errno %d", errno);
	TEST_ASSERT(!enable_preserve(vm->fd, 0, -1, 0), "enable twice: errno %d", errno);
	kvm_vm_free(vm);
}

static void test_vm_types(void)
{
	u32 types = kvm_check_cap(KVM_CAP_VM_TYPES);
	int kvm_fd, vm_fd, n = 0;
	u32 type;

	kvm_fd = open_kvm_dev_path_or_exit();
	for (type = 0; type < 32; type++) {
		if (type == KVM_X86_DEFAULT_VM || !(types & BIT(type)))
			continue;
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, type);
		TEST_ASSERT(vm_fd >= 0, "KVM_CREATE_VM type %u: errno %d", type, errno);
		assert_errno(enable_preserve(vm_fd, 0, -1, 0), EOPNOTSUPP,
			     "enable on a VM that is not KVM_X86_DEFAULT_VM");
		close(vm_fd);
		n++;
	}
	close(kvm_fd);
	if (n)
		ksft_test_result_pass("only KVM_X86_DEFAULT_VM opts in (%d other types)\n", n);
	else
		ksft_test_result_skip("no VM type other than KVM_X86_DEFAULT_VM\n");
}

static void test_not_opted_in(int luo_fd)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int s;

	vm = vm_create_with_one_vcpu(&vcpu, guest_spin_code);
	s = create_session(luo_fd, SESSION_ERRORS);
	assert_luo_errno(luo_session_preserve_fd(s, vm->fd, TOKEN_VM), ENOENT,
			 "VM that did not opt in");
	assert_luo_errno(luo_session_preserve_fd(s, vcpu->fd, TOKEN_VCPU), ENOENT,
			 "vCPU of a VM that did not opt in");
	close(s);
	kvm_vm_free(vm);
}

static void test_vcpu_before_vm(int luo_fd)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int s;

	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	s = create_session(luo_fd, SESSION_ERRORS);
	assert_luo_errno(luo_session_preserve_fd(s, vcpu->fd, TOKEN_VCPU), EINVAL,
			 "vCPU before its VM");
	preserve_fd(s, vm->fd, TOKEN_VM);
	preserve_fd(s, vcpu->fd, TOKEN_VCPU);
	close(s);
	kvm_vm_free(vm);
}

static void test_running_vcpu(int luo_fd)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int s;

	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	s = create_session(luo_fd, SESSION_ERRORS);
	preserve_fd(s, vm->fd, TOKEN_VM);
	start_vcpu(vcpu->fd);
	usleep(10000);
	assert_luo_errno(luo_session_preserve_fd(s, vcpu->fd, TOKEN_VCPU), EBUSY, "running vCPU");
	stop_vcpu(vcpu->fd);
	preserve_fd(s, vcpu->fd, TOKEN_VCPU);
	close(s);
	kvm_vm_free(vm);
}

static bool path_exists(const char *path)
{
	return !access(path, F_OK);
}

/* Returns false, and checks nothing, without KVM's debugfs to watch. */
static bool test_close_session(int luo_fd)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	char dir[64];
	int s, i;

	if (!path_exists(KVM_DEBUGFS)) {
		ksft_print_msg("%s does not exist: cannot see whether the VM is destroyed\n",
			       KVM_DEBUGFS);
		return false;
	}

	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	snprintf(dir, sizeof(dir), KVM_DEBUGFS "/%d-%d", getpid(), vm->fd);
	TEST_ASSERT(path_exists(dir), "no %s for a new VM", dir);

	s = create_session(luo_fd, SESSION_ERRORS);
	preserve_fd(s, vm->fd, TOKEN_VM);
	preserve_fd(s, vcpu->fd, TOKEN_VCPU);

	/* The session holds the VM and its vCPU... */
	kvm_vm_free(vm);
	usleep(100000);
	TEST_ASSERT(path_exists(dir), "the VM died while preserved");

	/* ...until it is closed: then nothing holds them. */
	close(s);
	for (i = 0; i < 500 && path_exists(dir); i++)
		usleep(10000);
	TEST_ASSERT(!path_exists(dir), "the VM outlived its files and its closed session (%s)",
		    dir);
	return true;
}

static bool kexec_loaded(void)
{
	char c = '0';
	int fd;

	fd = open(KEXEC_LOADED, O_RDONLY);
	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = '0';
	close(fd);
	return c == '1';
}

/*
 * Run with the main VM and the fault VMs preserved, so that stage 2 also
 * checks that a failed freeze loses nothing.
 */
static void test_freeze_running(int luo_fd)
{
	struct kvm_vcpu *vcpu, *vcpus[2];
	struct kvm_clock_data clock;
	struct kvm_run_async ra;
	struct kvm_vm *vm;
	int s;

	if (!kexec_loaded()) {
		ksft_print_msg("%s is not 1: no kexec image to freeze for\n", KEXEC_LOADED);
		ksft_test_result_skip("kexec with a running preserved vCPU\n");
		ksft_test_result_skip("kexec with a running vCPU not preserved\n");
		return;
	}

	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	s = create_session(luo_fd, SESSION_ERRORS);
	preserve_fd(s, vm->fd, TOKEN_VM);
	preserve_fd(s, vcpu->fd, TOKEN_VCPU);
	start_vcpu(vcpu->fd);
	usleep(10000);

	sync();
	assert_errno(reboot(LINUX_REBOOT_CMD_KEXEC), EBUSY,
		     "kexec with a running preserved vCPU");

	/* Nothing was lost: the session still holds both, and the vCPU runs. */
	assert_luo_errno(luo_session_preserve_fd(s, vm->fd, TOKEN_VM + 1), EBUSY,
			 "VM preserved again");
	assert_luo_errno(luo_session_preserve_fd(s, vm->fd, TOKEN_VM), EEXIST,
			 "VM token reused");
	TEST_ASSERT(!run_async(vcpu->fd, KVM_RUN_ASYNC_QUERY, &ra), "QUERY: errno %d", errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_RUNNING);

	stop_vcpu(vcpu->fd);
	close(s);
	kvm_vm_free(vm);
	ksft_test_result_pass("kexec with a running preserved vCPU fails with EBUSY\n");

	/*
	 * The VM's freeze holds every vCPU of the VM, preserved or not, before
	 * it saves the VM's interrupt controllers: a running vCPU that is not
	 * in the session holds the kexec up as well.
	 */
	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 2, vcpus, guest_spin_code);
	s = create_session(luo_fd, SESSION_ERRORS);
	preserve_fd(s, vm->fd, TOKEN_VM);
	preserve_fd(s, vcpus[0]->fd, TOKEN_VCPU);
	start_vcpu(vcpus[1]->fd);
	usleep(10000);

	sync();
	assert_errno(reboot(LINUX_REBOOT_CMD_KEXEC), EBUSY,
		     "kexec with a running vCPU that is not preserved");
	TEST_ASSERT(!run_async(vcpus[1]->fd, KVM_RUN_ASYNC_QUERY, &ra), "QUERY: errno %d",
		    errno);
	TEST_ASSERT_EQ(ra.state, KVM_RUN_ASYNC_STATE_RUNNING);
	/* The failed freeze thawed the VM: its ioctls work again. */
	TEST_ASSERT(!__vm_ioctl(vm, KVM_GET_CLOCK, &clock), "KVM_GET_CLOCK: errno %d", errno);

	stop_vcpu(vcpus[1]->fd);
	close(s);
	kvm_vm_free(vm);
	ksft_test_result_pass("kexec with a running vCPU not preserved fails with EBUSY\n");
}

static void run_error_tests(int luo_fd)
{
	test_enable_cap();
	ksft_test_result_pass("KVM_ENABLE_CAP: invalid flags and args\n");
	test_vm_types();
	test_not_opted_in(luo_fd);
	ksft_test_result_pass("a VM that did not opt in and its vCPU: ENOENT\n");
	test_vcpu_before_vm(luo_fd);
	ksft_test_result_pass("a vCPU before its VM: EINVAL\n");
	test_running_vcpu(luo_fd);
	ksft_test_result_pass("a running vCPU: EBUSY, then preserved once stopped\n");
	if (test_close_session(luo_fd))
		ksft_test_result_pass("closing the session unpreserves the VM\n");
	else
		ksft_test_result_skip("closing the session unpreserves the VM: no debugfs\n");
}

#define NR_ERROR_TESTS	6

/* Stage 1: the main VM, run, stopped, recorded and preserved; its vCPU count. */
/*
 * An edge on IOAPIC pin IRQ_PIN, routed to vCPU 0: it waits in vCPU 0's
 * local APIC, which the VM's state and vCPU 0's carry across the update.
 */
static void raise_irq(struct kvm_vm *vm)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	struct kvm_irq_level line = { .irq = IRQ_PIN };

	vm_ioctl(vm, KVM_GET_IRQCHIP, &chip);
	chip.chip.ioapic.redirtbl[IRQ_PIN].bits = 0;
	chip.chip.ioapic.redirtbl[IRQ_PIN].fields.vector = IRQ_VECTOR;
	chip.chip.ioapic.redirtbl[IRQ_PIN].fields.dest_id = 0;
	vm_ioctl(vm, KVM_SET_IRQCHIP, &chip);
	line.level = 1;
	vm_ioctl(vm, KVM_IRQ_LINE, &line);
	line.level = 0;
	vm_ioctl(vm, KVM_IRQ_LINE, &line);
}

static int preserve_main_vm(int luo_fd)
{
	const struct kvm_msr_list *msr_list = kvm_get_msr_index_list();
	struct kvm_pit_config pit_config = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int nr_vcpus = kvm_cpu_has(X86_FEATURE_SVM) ? MAX_VCPUS : NR_VCPUS;
	struct vm_shape shape = VM_SHAPE_DEFAULT;
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	struct userspace_mem_region *r;
	struct preserved_state *st;
	int st_fd, s, i, bkt, n = 0;
	gva_t svm_gva;
	u64 *counts;
	struct kvm_vm *vm;
	u8 data;
	u32 j;

	shape.src_type = VM_MEM_SRC_SHMEM;
	vm = __vm_create(shape, nr_vcpus, EXTRA_PAGES);
	vm_enable_cap(vm, KVM_CAP_VM_PRESERVE, 0);
	vm_ioctl(vm, KVM_CREATE_PIT2, &pit_config);

	/* VM capabilities, which stage 2 must find enabled. */
	vm_enable_cap(vm, KVM_CAP_EXCEPTION_PAYLOAD, 1);
	vm_enable_cap(vm, KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1);
	vm_enable_cap(vm, KVM_CAP_MAX_VCPU_ID, MAX_VCPU_ID);
	if (kvm_has_cap(KVM_CAP_X86_APIC_BUS_CYCLES_NS))
		vm_enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, APIC_BUS_NS);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_SHMEM, DATA_GPA, DATA_SLOT,
				    DATA_SIZE / vm->page_size, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_SIZE / vm->page_size);
	vm_install_exception_handler(vm, IRQ_VECTOR, guest_irq);
	for (i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = vm_vcpu_add(vm, i, guest_code);
		vcpu_args_set(vcpus[i], 1, (u64)i);
	}
	if (nr_vcpus > NESTED_VCPU) {
		vcpus[NESTED_VCPU] = vm_vcpu_add(vm, NESTED_VCPU, nested_l1_code);
		vcpu_alloc_svm(vm, &svm_gva);
		vcpu_args_set(vcpus[NESTED_VCPU], 1, svm_gva);
	} else {
		ksft_print_msg("no SVM: no vCPU in a nested guest\n");
	}

	for (i = 0; i < nr_vcpus; i++)
		start_vcpu(vcpus[i]->fd);
	TEST_ASSERT(readable(vcpus[0]->fd, EXIT_TIMEOUT_MS), "the guest did not fill its memory");
	TEST_ASSERT_EQ(parked_pio(vcpus[0]->fd, vcpus[0]->run, &data), PORT_READY);
	start_vcpu(vcpus[0]->fd);

	counts = addr_gva2hva(vm, (gva_t)counters);
	for (i = 0; i < nr_vcpus; i++)
		assert_counting(&counts[i], i, "in stage 1");
	for (i = 0; i < nr_vcpus; i++) {
		TEST_ASSERT(!readable(vcpus[i]->fd, 0), "vCPU %d exited", i);
		stop_vcpu(vcpus[i]->fd);
	}
	/* The last change before the state is recorded and preserved. */
	raise_irq(vm);

	st_fd = memfd_create("kvm-preserve-state", 0);
	TEST_ASSERT(st_fd >= 0, "memfd_create: errno %d", errno);
	TEST_ASSERT(!ftruncate(st_fd, sizeof(*st)), "ftruncate: errno %d", errno);
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, st_fd, 0);
	TEST_ASSERT(st != MAP_FAILED, "mmap state: errno %d", errno);

	st->magic = STATE_MAGIC;
	st->nr_vcpus = nr_vcpus;
	hash_for_each(vm->regions.slot_hash, bkt, r, slot_node)
		n++;
	TEST_ASSERT_EQ(n, MAX_SLOTS);
	st->nr_slots = MAX_SLOTS;
	for (i = 0; i < MAX_SLOTS; i++) {
		r = memslot2region(vm, i ? DATA_SLOT : 0);
		TEST_ASSERT(r->fd >= 0 && r->offset == 0, "slot %u is not a whole memfd",
			    r->region.slot);
		st->slots[i].slot = r->region.slot;
		st->slots[i].flags = r->region.flags;
		st->slots[i].gpa = r->region.guest_phys_addr;
		st->slots[i].size = r->region.memory_size;
		st->slots[i].token = i ? TOKEN_MEM1 : TOKEN_MEM0;
	}
	st->counters_gpa = addr_gva2gpa(vm, (gva_t)counters);
	st->phase_gpa = addr_gva2gpa(vm, (gva_t)&phase);
	st->pattern_gpa = addr_gva2gpa(vm, (gva_t)pattern);
	st->irqs_gpa = addr_gva2gpa(vm, (gva_t)&irqs);
	TEST_ASSERT_EQ(*(u64 *)addr_gva2hva(vm, (gva_t)&irqs), 0);
	st->has_xcrs = kvm_has_cap(KVM_CAP_XCRS);
	st->apic_bus_ns = kvm_has_cap(KVM_CAP_X86_APIC_BUS_CYCLES_NS) ? APIC_BUS_NS : 0;
	vm_ioctl(vm, KVM_GET_PIT2, &st->pit);
	for (i = 0; i < 3; i++) {
		st->irqchip[i].chip_id = i;
		vm_ioctl(vm, KVM_GET_IRQCHIP, &st->irqchip[i]);
	}
	st->realtime_ns = realtime_ns();

	TEST_ASSERT(msr_list->nmsrs <= MAX_MSRS, "%u MSRs, at most %u here", msr_list->nmsrs,
		    MAX_MSRS);
	for (i = 0; i < nr_vcpus; i++) {
		struct vcpu_state *vs = &st->vcpus[i];

		vs->counter = READ_ONCE(counts[i]);
		vs->nmsrs = msr_list->nmsrs;
		for (j = 0; j < msr_list->nmsrs; j++)
			vs->msrs[j].index = msr_list->indices[j];
		get_vcpu_state(vm->fd, vcpus[i]->fd, st->has_xcrs, vs);
		TEST_ASSERT(in_guest_mode(vs) == (i == NESTED_VCPU),
			    "vCPU %d was%s stopped in a nested guest", i,
			    in_guest_mode(vs) ? "" : " not");
		TEST_ASSERT((vs->events.flags & EVENT_CAPS) == EVENT_CAPS,
			    "vCPU %d: events flags 0x%x", i, vs->events.flags);
	}
	munmap(st, sizeof(*st));

	/* Guest memory, then the VM, then its vCPUs. */
	s = create_session(luo_fd, SESSION_MAIN);
	preserve_fd(s, memslot2region(vm, 0)->fd, TOKEN_MEM0);
	preserve_fd(s, memslot2region(vm, DATA_SLOT)->fd, TOKEN_MEM1);
	preserve_fd(s, st_fd, TOKEN_STATE);
	preserve_fd(s, vm->fd, TOKEN_VM);
	for (i = 0; i < nr_vcpus; i++)
		preserve_fd(s, vcpus[i]->fd, TOKEN_VCPU + i);

	/* The VM, its files and the session stay open for the kexec. */
	return nr_vcpus;
}

static void preserve_fault_vcpu(int s, u64 vm_token, u64 vcpu_token)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	preserve_fd(s, vm->fd, vm_token);
	preserve_fd(s, vcpu->fd, vcpu_token);
}

/* Stage 1: VMs and vCPUs that stage 2 fails to retrieve. */
static int preserve_fault_vms(int luo_fd)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int s, i;

	s = create_session(luo_fd, SESSION_FAULTS);
	for (i = 0; i < 2; i++) {
		vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
		preserve_fd(s, vm->fd, i ? TOKEN_FAULT_CORRUPT : TOKEN_FAULT_VERSION);
	}
	/*
	 * vCPUs whose CPUID uses a CPU feature or a paravirtual one that the
	 * next kernel "cannot give", and one with "unknown" nested state.
	 */
	preserve_fault_vcpu(s, TOKEN_FAULT_CPU_VM, TOKEN_FAULT_CPU_VCPU);
	preserve_fault_vcpu(s, TOKEN_FAULT_PV_VM, TOKEN_FAULT_PV_VCPU);
	preserve_fault_vcpu(s, TOKEN_FAULT_NESTED_VM, TOKEN_FAULT_NESTED_VCPU);

	/* A VM with a capability the next kernel "does not carry". */
	vm = create_preservable_vm(VM_SHAPE_DEFAULT, 1, &vcpu, guest_spin_code);
	vm_enable_cap(vm, KVM_CAP_EXCEPTION_PAYLOAD, 1);
	preserve_fd(s, vm->fd, TOKEN_FAULT_CAP_VM);
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
		ksft_print_msg("child %d holds the sessions: kexec, then run with -s 2\n", pid);
		ksft_finished();
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

static void stage1(void)
{
	int luo_fd = luo_open();

	ksft_print_header();
	ksft_set_plan(NR_ERROR_TESTS + 4);

	run_error_tests(luo_fd);
	ksft_test_result_pass("%d-vCPU VM with a PIT run, stopped, recorded and preserved\n",
			      preserve_main_vm(luo_fd));
	preserve_fault_vms(luo_fd);
	ksft_test_result_pass("VMs and vCPUs preserved for the retrieve faults\n");
	test_freeze_running(luo_fd);
	/* The sessions stand alone: /dev/liveupdate is for the next test to open. */
	close(luo_fd);

	daemonize_and_exit();
}

/* Stage 2. */

static void set_luo_fault(const char *v)
{
	int fd = open(LUO_FAULT, O_WRONLY);

	TEST_ASSERT(fd >= 0, "open %s: errno %d", LUO_FAULT, errno);
	TEST_ASSERT(write(fd, v, strlen(v)) == (ssize_t)strlen(v), "write %s: errno %d",
		    LUO_FAULT, errno);
	close(fd);
}

/* The fault is used once: the parameter reads 0 again, if it can be read. */
static void assert_fault_used(void)
{
	char buf[16] = {};
	int fd = open(LUO_FAULT, O_RDONLY);

	if (fd < 0)
		return;
	if (read(fd, buf, sizeof(buf) - 1) > 0)
		TEST_ASSERT(atoi(buf) == 0, "%s is %s after its use", LUO_FAULT, buf);
	close(fd);
}

/*
 * A vCPU that was created in its VM and then refused leaves the VM dead:
 * the VM retrieves, but its ioctls fail with EIO.
 */
static void assert_vm_dead(int s, u64 vm_token)
{
	struct kvm_clock_data clock;
	int vm_fd = luo_session_retrieve_fd(s, vm_token);

	TEST_ASSERT(vm_fd >= 0, "retrieve of the VM of a refused vCPU: errno %d", errno);
	assert_errno(ioctl(vm_fd, KVM_GET_CLOCK, &clock), EIO,
		     "VM ioctl on the VM of a refused vCPU");
	close(vm_fd);
}

/* Fault 6: nested state of a format this KVM does not know. */
static void test_nested_state_fault(int s)
{
	if (!kvm_has_cap(KVM_CAP_NESTED_STATE)) {
		ksft_test_result_skip("nested state this KVM cannot take: KVM has none\n");
		return;
	}
	set_luo_fault("6");
	assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_NESTED_VCPU), EOPNOTSUPP,
			 "retrieve of a vCPU with unknown nested state");
	assert_fault_used();
	assert_vm_dead(s, TOKEN_FAULT_NESTED_VM);
	ksft_test_result_pass("nested state this KVM cannot take: EOPNOTSUPP, VM dead\n");
}

static void test_retrieve_faults(int luo_fd)
{
	int s = retrieve_session(luo_fd, SESSION_FAULTS);

	if (!path_exists(LUO_FAULT)) {
		ksft_print_msg("%s does not exist: no fault hook in this kernel\n", LUO_FAULT);
		ksft_test_result_skip("retrieve of a foreign format version\n");
		ksft_test_result_skip("retrieve of a corrupted payload\n");
		ksft_test_result_skip("CPUID features this KVM cannot give\n");
		ksft_test_result_skip("paravirtual features this KVM cannot give\n");
		ksft_test_result_skip("a VM capability this KVM does not carry\n");
		ksft_test_result_skip("nested state this KVM cannot take\n");
	} else {
		set_luo_fault("1");
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_VERSION), EPROTONOSUPPORT,
				 "retrieve of a foreign format version");
		assert_fault_used();
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_VERSION), EPROTONOSUPPORT,
				 "retrieve of a foreign format version, again");
		ksft_test_result_pass("retrieve of a foreign format version: EPROTONOSUPPORT\n");

		set_luo_fault("2");
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_CORRUPT), EBADMSG,
				 "retrieve of a corrupted payload");
		assert_fault_used();
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_CORRUPT), EBADMSG,
				 "retrieve of a corrupted payload, again");
		ksft_test_result_pass("retrieve of a corrupted payload: EBADMSG, twice\n");

		/*
		 * Fault 3 gives the guest a CPU feature that no KVM gives (EST,
		 * CPUID 1 ECX bit 7), and makes the saved record of what the
		 * old KVM could give list it: a feature the guest had, and
		 * that this KVM genuinely lacks.
		 */
		set_luo_fault("3");
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_CPU_VCPU), EOPNOTSUPP,
				 "retrieve of a vCPU with features this KVM lacks");
		assert_fault_used();
		assert_vm_dead(s, TOKEN_FAULT_CPU_VM);
		ksft_test_result_pass("CPUID features this KVM cannot give: EOPNOTSUPP, VM dead\n");

		/* Fault 4: a paravirtual feature, i.e. hypercalls, is lost. */
		set_luo_fault("4");
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_PV_VCPU), EOPNOTSUPP,
				 "retrieve of a vCPU with PV features this KVM lacks");
		assert_fault_used();
		assert_vm_dead(s, TOKEN_FAULT_PV_VM);
		ksft_test_result_pass("PV features this KVM cannot give: EOPNOTSUPP, VM dead\n");

		set_luo_fault("5");
		assert_luo_errno(luo_session_retrieve_fd(s, TOKEN_FAULT_CAP_VM), EOPNOTSUPP,
				 "retrieve of a VM with a capability this KVM does not carry");
		assert_fault_used();
		ksft_test_result_pass("a VM capability this KVM does not carry: EOPNOTSUPP\n");

		test_nested_state_fault(s);
	}

	finish_session(s, SESSION_FAULTS);
	close(s);
	ksft_test_result_pass("FINISH of the session of failed retrieves\n");
}

static const char *fail_reason(u8 v)
{
	switch (v) {
	case 1:
		return "slot 1 changed";
	case 2:
		return "slot 0 changed";
	case 3:
		return "L2's exit to L1 is not VMMCALL";
	default:
		return "L2 exited to L1 again";
	}
}

static void *map_gpa(void **maps, const struct preserved_state *st, u64 gpa)
{
	u32 i;

	for (i = 0; i < st->nr_slots; i++)
		if (gpa >= st->slots[i].gpa && gpa < st->slots[i].gpa + st->slots[i].size)
			return (u8 *)maps[i] + (gpa - st->slots[i].gpa);
	TEST_FAIL("gpa 0x%lx is in no memslot", gpa);
	return NULL;
}

static void test_restore(int luo_fd)
{
	int s, st_fd, vm_fd, vm_fd2, kvm_fd, vcpu_fds[MAX_VCPUS], done = 0, n = 0, i, nr;
	struct kvm_run *runs[MAX_VCPUS];
	struct kvm_pit_state2 pit;
	struct preserved_state *st;
	struct pollfd pfd[MAX_VCPUS];
	struct stat sa, sb;
	void *maps[MAX_SLOTS];
	struct vcpu_state *now;
	u64 *counts, *data, *irqs, j, elapsed;
	bool l2_passed = false;
	long mmap_size;
	u8 v;

	s = retrieve_session(luo_fd, SESSION_MAIN);
	st_fd = retrieve_fd(s, TOKEN_STATE);
	TEST_ASSERT(!fstat(st_fd, &sa) && sa.st_size >= (off_t)sizeof(*st), "state memfd size");
	st = mmap(NULL, sizeof(*st), PROT_READ, MAP_SHARED, st_fd, 0);
	TEST_ASSERT(st != MAP_FAILED, "mmap state: errno %d", errno);
	TEST_ASSERT(st->magic == STATE_MAGIC && st->nr_vcpus >= NR_VCPUS &&
		    st->nr_vcpus <= MAX_VCPUS && st->nr_slots == MAX_SLOTS,
		    "the state memfd is not what stage 1 wrote");
	nr = st->nr_vcpus;

	/* One file, however many times it is retrieved. */
	vm_fd = retrieve_fd(s, TOKEN_VM);
	vm_fd2 = retrieve_fd(s, TOKEN_VM);
	TEST_ASSERT(vm_fd != vm_fd2, "the same fd twice");
	TEST_ASSERT(!fstat(vm_fd, &sa) && !fstat(vm_fd2, &sb), "fstat: errno %d", errno);
	TEST_ASSERT(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev,
		    "two retrieves of the VM gave two files");
	close(vm_fd2);

	/* No memslot survives: add them again, at the same place. */
	for (i = 0; i < st->nr_slots; i++) {
		struct kvm_userspace_memory_region2 region = {
			.slot = st->slots[i].slot,
			.flags = st->slots[i].flags,
			.guest_phys_addr = st->slots[i].gpa,
			.memory_size = st->slots[i].size,
		};
		int fd = retrieve_fd(s, st->slots[i].token);

		maps[i] = mmap(NULL, st->slots[i].size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		TEST_ASSERT(maps[i] != MAP_FAILED, "mmap slot %u: errno %d", region.slot, errno);
		region.userspace_addr = (u64)maps[i];
		TEST_ASSERT(!ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region),
			    "KVM_SET_USER_MEMORY_REGION2 slot %u: errno %d", region.slot, errno);
		close(fd);
	}

	/* Guest memory is as the stopped guest left it. */
	data = map_gpa(maps, st, DATA_GPA);
	for (j = 0; j < DATA_SIZE / 8; j++)
		TEST_ASSERT(data[j] == data_word(j), "slot %u differs at word %lu", DATA_SLOT, j);
	data = map_gpa(maps, st, st->pattern_gpa);
	for (j = 0; j < PATTERN_WORDS; j++)
		TEST_ASSERT(data[j] == pattern_word(j), "slot 0 differs at word %lu", j);
	counts = map_gpa(maps, st, st->counters_gpa);
	for (i = 0; i < nr; i++)
		TEST_ASSERT(counts[i] == st->vcpus[i].counter, "vCPU %d counter %lu, was %lu",
			    i, counts[i], st->vcpus[i].counter);

	for (i = 0; i < nr; i++)
		vcpu_fds[i] = retrieve_fd(s, TOKEN_VCPU + i);
	ksft_test_result_pass("VM retrieved twice as one file, memslots added, memory intact\n");

	/* Before it runs, every vCPU is as stage 1 recorded it. */
	now = malloc(sizeof(*now));
	TEST_ASSERT(now, "malloc");
	for (i = 0; i < nr; i++) {
		memset(now, 0, sizeof(*now));
		now->nmsrs = st->vcpus[i].nmsrs;
		for (j = 0; j < now->nmsrs; j++)
			now->msrs[j].index = st->vcpus[i].msrs[j].index;
		get_vcpu_state(vm_fd, vcpu_fds[i], st->has_xcrs, now);
		elapsed = realtime_ns() - st->realtime_ns;
		if ((s64)elapsed < 0)
			elapsed = 0;
		tsc_moved_max = (elapsed + 2000000000ull) / 1000 * st->vcpus[i].tsc_khz / 1000 *
				11 / 10;
		ksft_print_msg("vCPU %d: TSC +%lld in %llu ms between the stages (at most +%llu)\n",
			       i, (long long)(now_tsc(now) - now_tsc(&st->vcpus[i])),
			       elapsed / 1000000, tsc_moved_max);
		n += compare_vcpu_state(i, &st->vcpus[i], now, st->has_xcrs);
	}
	free(now);

	/* The PIT's counters are reloaded, at the time of the restore. */
	TEST_ASSERT(!ioctl(vm_fd, KVM_GET_PIT2, &pit), "KVM_GET_PIT2: errno %d", errno);
	for (i = 0; i < 3; i++)
		pit.channels[i].count_load_time = st->pit.channels[i].count_load_time;
	n += report_diff(-1, "PIT", &st->pit, &pit, sizeof(pit));
	/*
	 * The PICs and the IOAPIC, as recorded after the IOAPIC's edge went
	 * to vCPU 0's local APIC (whose IRR has it: see the vCPUs above).
	 */
	for (i = 0; i < 3; i++) {
		static const char * const chips[] = { "PIC master", "PIC slave", "IOAPIC" };
		struct kvm_irqchip chip = { .chip_id = i };

		TEST_ASSERT(!ioctl(vm_fd, KVM_GET_IRQCHIP, &chip), "KVM_GET_IRQCHIP %d: errno %d",
			    i, errno);
		n += report_diff(-1, chips[i], &st->irqchip[i], &chip, sizeof(chip));
	}
	TEST_ASSERT(!n, "%d items of vCPU and VM state differ", n);

	/* VM capabilities (exception payloads and triple faults: in events). */
	TEST_ASSERT(ioctl(vm_fd, KVM_CREATE_VCPU, MAX_VCPU_ID) == -1 && errno == EINVAL,
		    "KVM_CREATE_VCPU %d: KVM_CAP_MAX_VCPU_ID was lost", MAX_VCPU_ID);
	if (st->apic_bus_ns)
		TEST_ASSERT_EQ(ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_APIC_BUS_CYCLES_NS),
			       st->apic_bus_ns);
	ksft_test_result_pass("vCPU state restored: regs, sregs, xsave, lapic, MSRs, %s...; %s\n",
			      nr > NESTED_VCPU ? "nested state (in L2), " : "", "PIT, VM caps");

	/* Run: the guest checks its memory, reports, and counts on. */
	kvm_fd = open_kvm_dev_path_or_exit();
	mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	TEST_ASSERT(mmap_size > 0, "KVM_GET_VCPU_MMAP_SIZE: errno %d", errno);
	for (i = 0; i < nr; i++) {
		runs[i] = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       vcpu_fds[i], 0);
		TEST_ASSERT(runs[i] != MAP_FAILED, "mmap kvm_run: errno %d", errno);
		start_vcpu(vcpu_fds[i]);
	}
	for (i = 0; i < nr; i++)
		assert_counting(&counts[i], i, "after the kexec");
	WRITE_ONCE(*(u64 *)map_gpa(maps, st, st->phase_gpa), 1);

	while (done != BIT(nr) - 1) {
		for (i = 0; i < nr; i++) {
			pfd[i].fd = done & BIT(i) ? -1 : vcpu_fds[i];
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		TEST_ASSERT(poll(pfd, nr, EXIT_TIMEOUT_MS) > 0,
			    "no report from the guest within %d ms", EXIT_TIMEOUT_MS);
		for (i = 0; i < nr; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			switch (parked_pio(vcpu_fds[i], runs[i], &v)) {
			case PORT_PASS:
				/* The nested vCPU: first L2, then L1. */
				if (i == NESTED_VCPU && v == i) {
					TEST_ASSERT(!l2_passed, "L2 reported twice");
					l2_passed = true;
					break;
				}
				TEST_ASSERT_EQ(v, i == NESTED_VCPU ? (NESTED_PASS | i) : i);
				TEST_ASSERT(i != NESTED_VCPU || l2_passed, "L1 reported before L2");
				done |= BIT(i);
				break;
			case PORT_FAIL:
				TEST_FAIL("vCPU %d: %s", i, fail_reason(v));
				break;
			default:
				TEST_FAIL("vCPU %d: unexpected port 0x%x", i, runs[i]->io.port);
			}
			start_vcpu(vcpu_fds[i]);
		}
	}

	for (i = 0; i < nr; i++) {
		TEST_ASSERT(READ_ONCE(counts[i]) > st->vcpus[i].counter,
			    "vCPU %d counter did not move past %lu", i, st->vcpus[i].counter);
		assert_counting(&counts[i], i, "after the memory check");
	}
	/* The interrupt raised before the update: taken once, not lost. */
	irqs = map_gpa(maps, st, st->irqs_gpa);
	for (i = 0; i < 2000 && !READ_ONCE(*irqs); i++)
		usleep(10000);
	usleep(200000);
	TEST_ASSERT(READ_ONCE(*irqs) == 1, "vCPU 0 took %lu interrupts, not 1", READ_ONCE(*irqs));
	for (i = 0; i < nr; i++) {
		TEST_ASSERT(!readable(vcpu_fds[i], 0), "vCPU %d exited again", i);
		stop_vcpu(vcpu_fds[i]);
	}

	finish_session(s, SESSION_MAIN);
	close(s);
	ksft_test_result_pass("the guest found its memory, counts on%s, took the IRQ once\n",
			      nr > NESTED_VCPU ? " (in L2 too, with L1 alive)" : "");

	for (i = 0; i < nr; i++) {
		munmap(runs[i], mmap_size);
		close(vcpu_fds[i]);
	}
	for (i = 0; i < st->nr_slots; i++)
		munmap(maps[i], st->slots[i].size);
	munmap(st, sizeof(*st));
	close(st_fd);
	close(vm_fd);
	close(kvm_fd);
}

static void stage2(void)
{
	int luo_fd = luo_open();

	ksft_print_header();
	ksft_set_plan(10);

	test_retrieve_faults(luo_fd);
	test_restore(luo_fd);
	close(luo_fd);
	ksft_finished();
}

int main(int argc, char *argv[])
{
	int opt, stage = 0, luo_fd;

	while ((opt = getopt(argc, argv, "s:")) != -1) {
		if (opt == 's' && (!strcmp(optarg, "1") || !strcmp(optarg, "2"))) {
			stage = atoi(optarg);
			continue;
		}
		printf("usage: %s [-s 1|2]\n", argv[0]);
		exit(KSFT_FAIL);
	}

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VM_PRESERVE));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_VCPU_ASYNC_RUN));

	if (stage == 1)
		stage1();
	if (stage == 2)
		stage2();

	luo_fd = luo_open();
	ksft_print_header();
	ksft_set_plan(NR_ERROR_TESTS);
	run_error_tests(luo_fd);
	close(luo_fd);
	ksft_finished();
}
