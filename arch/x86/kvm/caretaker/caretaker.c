// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vCPU caretaker: a vCPU that was given a physical CPU of its own
 * (KVM_CAP_X86_CARETAKER) and runs in its KVM_RUN_ASYNC task on that CPU
 * stays in the IRQs-off part of vcpu_enter_guest() for every exit it can
 * serve there: the fastpath exits (x2APIC ICR, EOI, TMICT and TSC-deadline
 * writes, HLT), host interrupts, APIC timer expiry and interrupt injection,
 * and HLT itself, which halts the physical CPU until an interrupt or a kick.
 * Anything else leaves for the slow path of the same task, as KVM_RUN would.
 *
 * The world switch is vcpu_enter_guest()'s own (kvm_x86_run_guest_once()):
 * this file only decides what to do between two runs of the guest.
 *
 * See Documentation/virt/kvm/caretaker.rst.
 */

#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/device.h>
#include <linux/kthread.h>
#include <linux/kvm_host.h>
#include <linux/sched/isolation.h>
#include <linux/seq_file.h>

#include "../irq.h"
#include "../lapic.h"
#include "../pmu.h"
#include "../x86.h"
#include "../xen.h"
#include "caretaker.h"

/*
 * The CPUs given to a caretaker, one vCPU each.  While a caretaker holds a
 * CPU, the CPU stays online.  Offlining it through its CPU device (the
 * "online" file) fails with EPERM before anything is torn down, as for a CPU
 * that cannot be hot-unplugged.  Other paths to cpu_down() (the hotplug
 * "target" file, SMT control, suspend) meet a teardown callback that fails
 * with EBUSY and rolls the operation back; by then the scheduler has pushed
 * the vCPU's task off the CPU, and the vCPU runs as under KVM_RUN.
 */
static DEFINE_MUTEX(caretaker_lock);
static struct cpumask caretaker_cpus;
/* The CPUs whose device was not offline_disabled before a caretaker held it. */
static struct cpumask caretaker_dev_flag;
static int caretaker_hp_state;

static void caretaker_hold_cpu(unsigned int cpu)
{
	struct device *dev = get_cpu_device(cpu);

	cpumask_set_cpu(cpu, &caretaker_cpus);
	if (dev && !dev_test_and_set_offline_disabled(dev))
		cpumask_set_cpu(cpu, &caretaker_dev_flag);
}

static void caretaker_give_back_cpu(unsigned int cpu)
{
	struct device *dev = get_cpu_device(cpu);

	if (dev && cpumask_test_and_clear_cpu(cpu, &caretaker_dev_flag))
		dev_clear_offline_disabled(dev);
	cpumask_clear_cpu(cpu, &caretaker_cpus);
}

static int caretaker_cpu_down(unsigned int cpu)
{
	guard(mutex)(&caretaker_lock);
	if (!cpumask_test_cpu(cpu, &caretaker_cpus))
		return 0;
	pr_warn_ratelimited("kvm: CPU %u runs a vCPU caretaker: not taken offline\n", cpu);
	return -EBUSY;
}

void kvm_caretaker_init(void)
{
	int r = cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "kvm/x86/caretaker:online",
					  NULL, caretaker_cpu_down);

	/* Without it, KVM_CAP_X86_CARETAKER is not offered. */
	caretaker_hp_state = r > 0 ? r : 0;
}

void kvm_caretaker_exit(void)
{
	if (caretaker_hp_state > 0)
		cpuhp_remove_state_nocalls(caretaker_hp_state);
}

/*
 * The caretaker serves no posted interrupts and no AVIC doorbells: APICv
 * that might be enabled for any vCPU, now or later, rules it out.
 */
static bool caretaker_host_ok(void)
{
	return caretaker_hp_state > 0 && !enable_apicv &&
	       kvm_x86_call(caretaker_supported)();
}

int kvm_caretaker_check_extension(void)
{
	return caretaker_host_ok() ? 1 : 0;
}

static void caretaker_record(struct kvm_vcpu *vcpu, u16 type, u32 data)
{
	struct kvm_caretaker_ring *ring = vcpu->arch.caretaker_ring;
	u64 head = le64_to_cpu(ring->head);
	struct kvm_caretaker_record *rec = &ring->rec[head % KVM_CARETAKER_RING_RECORDS];

	/*
	 * The last head before this slot is overwritten: a reader that sees
	 * the new bytes also sees a head that tells it the slot is stale.
	 */
	smp_wmb();
	rec->tsc = cpu_to_le64(rdtsc());
	rec->type = cpu_to_le16(type);
	rec->data = cpu_to_le32(data);
	/* The record before the head that covers it, for a reader elsewhere. */
	smp_store_release(&ring->head, cpu_to_le64(head + 1));
}

static struct kvm_caretaker_ring *caretaker_ring_alloc(void)
{
	struct kvm_caretaker_ring *ring;

	ring = (void *)get_zeroed_page(GFP_KERNEL_ACCOUNT);
	if (!ring)
		return NULL;
	ring->magic = cpu_to_le64(KVM_CARETAKER_RING_MAGIC);
	ring->version = cpu_to_le32(KVM_CARETAKER_RING_VERSION);
	ring->nr_records = cpu_to_le32(KVM_CARETAKER_RING_RECORDS);
	return ring;
}

/* debugfs vcpuN/caretaker_trace: the ring, oldest record first. */
static int caretaker_trace_show(struct seq_file *m, void *unused)
{
	static const char * const names[] = {
		[KVM_CARETAKER_REC_SERVED] = "served",
		[KVM_CARETAKER_REC_HOST_IRQ] = "host_irq",
		[KVM_CARETAKER_REC_TIMER] = "timer",
		[KVM_CARETAKER_REC_HALT] = "halt",
		[KVM_CARETAKER_REC_WAKE] = "wake",
		[KVM_CARETAKER_REC_SLOW] = "slow",
	};
	struct kvm_vcpu *vcpu = m->private;
	struct kvm_caretaker_ring *ring;
	u64 head, i, tsc;
	u32 data;
	u16 type;

	/* Pairs with the release in kvm_caretaker_enable(). */
	ring = smp_load_acquire(&vcpu->arch.caretaker_ring);
	if (!ring)
		return 0;
	/* Pairs with caretaker_record(): the records below head are written. */
	head = le64_to_cpu(smp_load_acquire(&ring->head));
	seq_printf(m, "# version %u, %llu records written, tsc type data\n",
		   le32_to_cpu(ring->version), head);
	i = head > KVM_CARETAKER_RING_RECORDS ? head - KVM_CARETAKER_RING_RECORDS : 0;
	for (; i < head; i++) {
		struct kvm_caretaker_record *r = &ring->rec[i % KVM_CARETAKER_RING_RECORDS];

		tsc = le64_to_cpu(READ_ONCE(r->tsc));
		type = le16_to_cpu(READ_ONCE(r->type));
		data = le32_to_cpu(READ_ONCE(r->data));
		/* Overwritten while it was read: skip it (seqcount-like). */
		smp_rmb();
		if (le64_to_cpu(READ_ONCE(ring->head)) - i >= KVM_CARETAKER_RING_RECORDS)
			continue;
		seq_printf(m, "%llu %s %u\n", tsc,
			   type < ARRAY_SIZE(names) && names[type] ? names[type] : "?", data);
	}
	return 0;
}

static int caretaker_trace_open(struct inode *inode, struct file *file)
{
	return single_open(file, caretaker_trace_show, inode->i_private);
}

const struct file_operations kvm_caretaker_trace_fops = {
	.owner = THIS_MODULE,
	.open = caretaker_trace_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
};

static int caretaker_refuse(struct kvm_vcpu *vcpu, int err, const char *why)
{
	pr_warn_ratelimited("kvm: pid %d: vCPU %d: no caretaker: %s\n",
			    task_pid_nr(current), vcpu->vcpu_id, why);
	return err;
}

/* What the caretaker cannot serve yet, refused when it is asked for. */
static int caretaker_check_vcpu(struct kvm_vcpu *vcpu)
{
	struct kvm *kvm = vcpu->kvm;

	if (!caretaker_host_ok())
		return caretaker_refuse(vcpu, -EOPNOTSUPP,
					"APICv/AVIC enabled, or no fastpath on this host");
	if (kvm->arch.vm_type != KVM_X86_DEFAULT_VM)
		return caretaker_refuse(vcpu, -EOPNOTSUPP,
					"a protected or confidential VM type");
	if (!lapic_in_kernel(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "no in-kernel local APIC");
	if (guest_cpu_cap_has(vcpu, X86_FEATURE_SVM) ||
	    guest_cpu_cap_has(vcpu, X86_FEATURE_VMX))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "nested virtualization");
	if (kvm_vcpu_has_mediated_pmu(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "the mediated PMU");
	if (kvm_xen_msr_enabled(kvm) || kvm_xen_hypercall_enabled(kvm) ||
	    kvm_xen_timer_enabled(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "Xen emulation");
	if (vcpu->arch.tsc_always_catchup)
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "TSC catch-up");
	return 0;
}

/*
 * args[0]: the CPU.  It must be online and isolated from the scheduler's
 * domains (isolcpus=domain, or an isolated cpuset partition), and no other
 * vCPU may have it.
 */
int kvm_caretaker_enable(struct kvm_vcpu *vcpu, struct kvm_enable_cap *cap)
{
	unsigned int cpu;
	bool isolated;
	int r;

	if (cap->args[0] >= nr_cpu_ids || !cpu_possible(cap->args[0]) ||
	    cap->args[1] || cap->args[2] || cap->args[3])
		return caretaker_refuse(vcpu, -EINVAL, "invalid arguments");
	cpu = cap->args[0];

	/* Giving a CPU away is the privilege to take it offline. */
	if (!capable(CAP_SYS_ADMIN))
		return caretaker_refuse(vcpu, -EPERM, "CAP_SYS_ADMIN is required");

	if (vcpu->arch.caretaker_cpu >= 0)
		return caretaker_refuse(vcpu, -EEXIST, "it already has one");
	/* The task is bound to the CPU when it is created. */
	if (READ_ONCE(vcpu->async.task))
		return caretaker_refuse(vcpu, -EBUSY, "its KVM_RUN_ASYNC task exists");

	r = caretaker_check_vcpu(vcpu);
	if (r)
		return r;

	if (!vcpu->arch.caretaker_ring) {
		struct kvm_caretaker_ring *ring = caretaker_ring_alloc();

		if (!ring)
			return -ENOMEM;
		/* Published for debugfs (acquire there), freed with the vCPU. */
		smp_store_release(&vcpu->arch.caretaker_ring, ring);
	}

	/* Against hotplug: the CPU stays online once the mask holds it. */
	cpus_read_lock();
	mutex_lock(&caretaker_lock);
	rcu_read_lock();
	isolated = !housekeeping_cpu(cpu, HK_TYPE_DOMAIN);
	rcu_read_unlock();
	if (!cpu_online(cpu)) {
		r = caretaker_refuse(vcpu, -ENODEV, "the CPU is offline");
	} else if (!isolated) {
		r = caretaker_refuse(vcpu, -EINVAL, "the CPU is not isolated");
	} else if (cpumask_test_cpu(cpu, &caretaker_cpus)) {
		r = caretaker_refuse(vcpu, -EBUSY, "another vCPU has the CPU");
	} else {
		caretaker_hold_cpu(cpu);
		WRITE_ONCE(vcpu->arch.caretaker_cpu, cpu);
		r = 0;
	}
	mutex_unlock(&caretaker_lock);
	cpus_read_unlock();
	return r;
}

/* The vCPU is being destroyed: its task is gone, give the CPU back. */
void kvm_caretaker_release(struct kvm_vcpu *vcpu)
{
	int cpu = vcpu->arch.caretaker_cpu;

	free_page((unsigned long)vcpu->arch.caretaker_ring);
	vcpu->arch.caretaker_ring = NULL;
	if (cpu < 0)
		return;
	mutex_lock(&caretaker_lock);
	caretaker_give_back_cpu(cpu);
	mutex_unlock(&caretaker_lock);
	vcpu->arch.caretaker_cpu = -1;
}

/*
 * Bind the vCPU's new KVM_RUN_ASYNC task to its CPU.  If the CPU went
 * offline meanwhile, the task is left unbound and runs the vCPU as KVM_RUN
 * would: kvm_caretaker_active() is false anywhere else.
 */
void kvm_caretaker_bind(struct kvm_vcpu *vcpu, struct task_struct *task)
{
	int cpu = vcpu->arch.caretaker_cpu;

	if (cpu < 0)
		return;
	cpus_read_lock();
	if (cpu_online(cpu))
		kthread_bind(task, cpu);
	cpus_read_unlock();
}

/* What ends a halt, as kvm_arch_vcpu_runnable() and vcpu_block() see it. */
static bool caretaker_wakes(struct kvm_vcpu *vcpu)
{
	return kvm_vcpu_has_events(vcpu) || vcpu->arch.pv.pv_unhalted;
}

/*
 * HLT with nothing to deliver: halt this CPU until an interrupt.  The vCPU
 * is marked IN_GUEST_MODE meanwhile, so that kvm_vcpu_kick() and
 * KVM_REQUEST_WAIT requests send this CPU an IPI, as they would for a vCPU
 * that runs the guest, and the IPI ends the HLT.  The APIC timer's hrtimer
 * ends it too; a timer on the VMX preemption timer, which only counts in
 * guest mode, moves to the hrtimer first, as in vcpu_block().  Other
 * requests wait, as they do for a vCPU blocked in kvm_vcpu_halt(): the guest
 * runs no instruction before they are served.
 */
static void caretaker_halt(struct kvm_vcpu *vcpu)
{
	bool hv_timer = kvm_lapic_hv_timer_in_use(vcpu);
	u64 t0;

	if (hv_timer)
		kvm_lapic_switch_to_sw_timer(vcpu);
	/*
	 * As in vcpu_enter_guest(): ->mode is set before the checks below, so
	 * that a kick either sees IN_GUEST_MODE and sends the IPI that ends
	 * the HLT, or made its request or event visible to the checks.
	 */
	smp_store_release(&vcpu->mode, IN_GUEST_MODE);
	/* Full barrier: ->mode is visible before the checks read anything. */
	smp_mb();
	if (!__xfer_to_guest_mode_work_pending() &&
	    !kvm_test_request(KVM_REQ_UNBLOCK, vcpu) && !caretaker_wakes(vcpu)) {
		t0 = rdtsc();
		++vcpu->stat.caretaker_halts;
		caretaker_record(vcpu, KVM_CARETAKER_REC_HALT, 0);
		safe_halt();
		local_irq_disable();
		caretaker_record(vcpu, KVM_CARETAKER_REC_WAKE, tsc_khz ?
				 min_t(u64, (rdtsc() - t0) * 1000 / tsc_khz, U32_MAX) : 0);
	}
	vcpu->mode = OUTSIDE_GUEST_MODE;
	/* As after a run of the guest: ->mode before what the vCPU does next. */
	smp_wmb();
	if (hv_timer)
		kvm_lapic_switch_to_hv_timer(vcpu);
}

/*
 * The work vcpu_run() and vcpu_enter_guest() would do between two runs of
 * the guest, where it can be done with IRQs off: deliver an expired APIC
 * timer, wake a halted vCPU, inject events.  Returns false if something
 * needs the slow path: a signal, the scheduler, a request other than
 * KVM_REQ_EVENT and KVM_REQ_UNBLOCK, a PV EOI or vAPIC page to sync, an
 * interrupt window for userspace.  *@injected says whether an event was
 * put in the VMCB/VMCS, to cancel if the guest is not entered.
 */
static bool caretaker_serve(struct kvm_vcpu *vcpu, bool *injected)
{
	for (;;) {
		if (__xfer_to_guest_mode_work_pending() ||
		    vcpu->arch.apic_attention || vcpu->run->request_interrupt_window)
			return false;

		kvm_clear_request(KVM_REQ_UNBLOCK, vcpu);
		/* The local APIC's timer only: a Xen timer is refused. */
		if (apic_has_pending_timer(vcpu)) {
			kvm_inject_apic_timer_irqs(vcpu);
			caretaker_record(vcpu, KVM_CARETAKER_REC_TIMER, 0);
		}

		if (vcpu->arch.mp_state == KVM_MP_STATE_HALTED) {
			if (!caretaker_wakes(vcpu)) {
				/* A kick for dirty logging wants the PML flush. */
				if (vcpu->kvm->arch.cpu_dirty_log_size &&
				    atomic_read(&vcpu->kvm->nr_memslots_dirty_logging))
					return false;
				caretaker_halt(vcpu);
				continue;
			}
			/* As vcpu_block() does when the vCPU wakes up. */
			kvm_set_mp_state(vcpu, KVM_MP_STATE_RUNNABLE);
		}
		if (vcpu->arch.mp_state != KVM_MP_STATE_RUNNABLE)
			return false;

		/*
		 * Any other request first, in the slow path: KVM_REQ_NMI or
		 * KVM_REQ_SMI, for one, must be processed before an interrupt
		 * is injected ahead of them.
		 */
		if (READ_ONCE(vcpu->requests) & ~BIT_ULL(KVM_REQ_EVENT & KVM_REQUEST_MASK))
			return false;
		if (kvm_test_request(KVM_REQ_EVENT, vcpu)) {
			if (!kvm_x86_inject_events_irqoff(vcpu))
				return false;
			*injected = true;
		}

		return !kvm_request_pending(vcpu);
	}
}

/* Back to guest mode, as vcpu_enter_guest() enters it. */
static bool caretaker_reenter(struct kvm_vcpu *vcpu)
{
	/*
	 * ->mode before the requests and the PIR, as in vcpu_enter_guest()
	 * (where smp_mb__after_srcu_read_unlock() is the full barrier).
	 */
	smp_store_release(&vcpu->mode, IN_GUEST_MODE);
	/* Full barrier: ->mode is visible before requests and PIR are read. */
	smp_mb();
	if (kvm_lapic_enabled(vcpu))
		kvm_x86_call(sync_pir_to_irr)(vcpu);
	if (!kvm_x86_vcpu_exit_request(vcpu))
		return true;
	vcpu->mode = OUTSIDE_GUEST_MODE;
	/* Pairs with kvm_vcpu_exiting_guest_mode(), as in vcpu_enter_guest(). */
	smp_wmb();
	return false;
}

/*
 * What was refused when the capability was enabled but may have changed
 * since (KVM_SET_CPUID2, KVM_SET_NESTED_STATE): then the vCPU runs as under
 * KVM_RUN.
 */
static bool caretaker_can_run(struct kvm_vcpu *vcpu)
{
	return !is_guest_mode(vcpu) && !kvm_vcpu_apicv_active(vcpu) &&
	       !guest_cpu_cap_has(vcpu, X86_FEATURE_SVM) &&
	       !guest_cpu_cap_has(vcpu, X86_FEATURE_VMX) &&
	       !vcpu->arch.tsc_always_catchup && !kvm_xen_timer_enabled(vcpu);
}

/*
 * Called by vcpu_enter_guest() in place of one run of the guest, with IRQs
 * and preemption disabled, SRCU unlocked and the vCPU IN_GUEST_MODE.  Returns
 * as that one run would: host state back, host IRQs served, the vCPU
 * OUTSIDE_GUEST_MODE, and the exit for the slow path to handle (or
 * EXIT_FASTPATH_EXIT_HANDLED if the last exit was served and only a request
 * or pending work remains).
 */
fastpath_t kvm_caretaker_run(struct kvm_vcpu *vcpu, u64 run_flags)
{
	fastpath_t exit_fastpath;
	bool injected;
	int tries;

	if (!caretaker_can_run(vcpu))
		return kvm_x86_run_guest_once(vcpu, run_flags);

	for (;;) {
		exit_fastpath = kvm_x86_run_guest_once(vcpu, run_flags);
		run_flags = 0;
		injected = false;

		if (exit_fastpath == EXIT_FASTPATH_EXIT_USERSPACE)
			break;
		/* An exit that needs its handler; a host interrupt needs none. */
		if (exit_fastpath == EXIT_FASTPATH_NONE) {
			if (!kvm_x86_call(exit_is_host_irq)(vcpu))
				break;
			++vcpu->stat.irq_exits;
			caretaker_record(vcpu, KVM_CARETAKER_REC_HOST_IRQ, 0);
		} else {
			caretaker_record(vcpu, KVM_CARETAKER_REC_SERVED, exit_fastpath);
		}

		/*
		 * A request that arrives between serving and entering is
		 * served too, a few times, before the slow path gets it.
		 */
		for (tries = 0; tries < 4; tries++) {
			if (!caretaker_serve(vcpu, &injected))
				goto slow;
			if (caretaker_reenter(vcpu)) {
				/* As vcpu_run() does before each entry. */
				vcpu->arch.at_instruction_boundary = false;
				break;
			}
		}
		if (tries == 4)
			goto slow;
		++vcpu->stat.caretaker_exits;
	}
	++vcpu->stat.caretaker_slow_exits;
	caretaker_record(vcpu, KVM_CARETAKER_REC_SLOW, KVM_CARETAKER_SLOW_EXIT);
	return exit_fastpath;

slow:
	/* As vcpu_enter_guest() when it does not enter: the slow path injects again. */
	if (injected)
		kvm_x86_call(cancel_injection)(vcpu);
	++vcpu->stat.caretaker_slow_exits;
	caretaker_record(vcpu, KVM_CARETAKER_REC_SLOW, KVM_CARETAKER_SLOW_WORK);
	return EXIT_FASTPATH_EXIT_HANDLED;
}
