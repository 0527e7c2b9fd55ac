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

#include "../irq.h"
#include "../lapic.h"
#include "../pmu.h"
#include "../x86.h"
#include "caretaker.h"

/*
 * The CPUs given to a caretaker, one vCPU each, and whether their CPU
 * device could be taken offline before (restored when the CPU is given
 * back).  While a caretaker holds a CPU, the CPU stays online: offlining it
 * fails with EPERM.
 */
static DEFINE_MUTEX(caretaker_lock);
static struct cpumask caretaker_cpus;
static struct cpumask caretaker_offline_disabled;

static void caretaker_hold_cpu(unsigned int cpu)
{
	struct device *dev = get_cpu_device(cpu);

	cpumask_set_cpu(cpu, &caretaker_cpus);
	if (dev) {
		if (dev_test_and_set_offline_disabled(dev))
			cpumask_set_cpu(cpu, &caretaker_offline_disabled);
		else
			cpumask_clear_cpu(cpu, &caretaker_offline_disabled);
	}
}

static void caretaker_give_back_cpu(unsigned int cpu)
{
	struct device *dev = get_cpu_device(cpu);

	if (dev)
		dev_assign_offline_disabled(dev, cpumask_test_cpu(cpu, &caretaker_offline_disabled));
	cpumask_clear_cpu(cpu, &caretaker_cpus);
}

int kvm_caretaker_check_extension(void)
{
	return kvm_x86_call(caretaker_supported)() ? 1 : 0;
}

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

	if (!kvm_x86_call(caretaker_supported)())
		return caretaker_refuse(vcpu, -EOPNOTSUPP,
					"the host cannot serve exits with IRQs disabled");
	if (kvm->arch.vm_type != KVM_X86_DEFAULT_VM)
		return caretaker_refuse(vcpu, -EOPNOTSUPP,
					"a protected or confidential VM type");
	if (!lapic_in_kernel(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "no in-kernel local APIC");
	if (guest_cpu_cap_has(vcpu, X86_FEATURE_SVM) ||
	    guest_cpu_cap_has(vcpu, X86_FEATURE_VMX))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "nested virtualization");
	if (kvm_vcpu_apicv_active(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "AVIC or APICv");
	if (kvm_vcpu_has_mediated_pmu(vcpu))
		return caretaker_refuse(vcpu, -EOPNOTSUPP, "the mediated PMU");
	return 0;
}

/*
 * args[0]: the CPU.  It must be online and isolated from the scheduler's
 * domains (isolcpus=domain, or an isolated cpuset partition), no other vCPU
 * may have it, and some other CPU of the housekeeping set must stay online.
 */
int kvm_caretaker_enable(struct kvm_vcpu *vcpu, struct kvm_enable_cap *cap)
{
	unsigned int cpu, other;
	int r;

	if (cap->args[0] >= nr_cpu_ids || cap->args[1] || cap->args[2] ||
	    cap->args[3])
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

	/* Orders against offlining through the CPU device, then hotplug. */
	lock_device_hotplug();
	cpus_read_lock();
	mutex_lock(&caretaker_lock);
	if (!cpu_online(cpu)) {
		r = caretaker_refuse(vcpu, -ENODEV, "the CPU is offline");
	} else if (housekeeping_cpu(cpu, HK_TYPE_DOMAIN)) {
		r = caretaker_refuse(vcpu, -EINVAL, "the CPU is not isolated");
	} else if (cpumask_test_cpu(cpu, &caretaker_cpus)) {
		r = caretaker_refuse(vcpu, -EBUSY, "another vCPU has the CPU");
	} else {
		other = cpumask_first_and(housekeeping_cpumask(HK_TYPE_DOMAIN),
					  cpu_online_mask);
		if (other >= nr_cpu_ids) {
			r = caretaker_refuse(vcpu, -EBUSY,
					     "no housekeeping CPU would stay online");
		} else {
			caretaker_hold_cpu(cpu);
			WRITE_ONCE(vcpu->arch.caretaker_cpu, cpu);
			r = 0;
		}
	}
	mutex_unlock(&caretaker_lock);
	cpus_read_unlock();
	unlock_device_hotplug();
	return r;
}

/* The vCPU is being destroyed: its task is gone, give the CPU back. */
void kvm_caretaker_release(struct kvm_vcpu *vcpu)
{
	int cpu = vcpu->arch.caretaker_cpu;

	if (cpu < 0)
		return;
	lock_device_hotplug();
	mutex_lock(&caretaker_lock);
	caretaker_give_back_cpu(cpu);
	mutex_unlock(&caretaker_lock);
	unlock_device_hotplug();
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

	if (cpu >= 0 && cpu_online(cpu))
		kthread_bind(task, cpu);
}

/*
 * HLT with nothing to deliver: halt this CPU until an interrupt.  The vCPU
 * is marked IN_GUEST_MODE meanwhile, so that kvm_vcpu_kick() and
 * KVM_REQUEST_WAIT requests send this CPU an IPI, as they would for a vCPU
 * that runs the guest, and the IPI ends the HLT.  The APIC timer's hrtimer
 * ends it too.  Other requests wait, as they do for a vCPU blocked in
 * kvm_vcpu_halt(): the guest runs no instruction before they are served.
 */
static void caretaker_halt(struct kvm_vcpu *vcpu)
{
	smp_store_release(&vcpu->mode, IN_GUEST_MODE);
	/* Orders ->mode against the checks, as in vcpu_enter_guest(). */
	smp_mb();
	if (!__xfer_to_guest_mode_work_pending() &&
	    !kvm_test_request(KVM_REQ_UNBLOCK, vcpu) &&
	    !kvm_vcpu_has_events(vcpu)) {
		++vcpu->stat.caretaker_halts;
		native_safe_halt();
		local_irq_disable();
	}
	vcpu->mode = OUTSIDE_GUEST_MODE;
	smp_wmb();
}

/*
 * The work vcpu_run() and vcpu_enter_guest() would do between two runs of
 * the guest, where it can be done with IRQs off: deliver an expired APIC
 * timer, wake a halted vCPU, inject events.  Returns false if something
 * needs the slow path: a signal, the scheduler, or a request other than
 * KVM_REQ_EVENT and KVM_REQ_UNBLOCK.
 */
static bool caretaker_serve(struct kvm_vcpu *vcpu)
{
	for (;;) {
		if (__xfer_to_guest_mode_work_pending())
			return false;

		kvm_clear_request(KVM_REQ_UNBLOCK, vcpu);
		if (kvm_cpu_has_pending_timer(vcpu))
			kvm_inject_pending_timer_irqs(vcpu);

		if (vcpu->arch.mp_state == KVM_MP_STATE_HALTED) {
			if (!kvm_vcpu_has_events(vcpu)) {
				caretaker_halt(vcpu);
				continue;
			}
			/* As vcpu_block() does when the vCPU wakes up. */
			vcpu->arch.pv.pv_unhalted = false;
			kvm_set_mp_state(vcpu, KVM_MP_STATE_RUNNABLE);
		}
		if (vcpu->arch.mp_state != KVM_MP_STATE_RUNNABLE)
			return false;

		if (kvm_test_request(KVM_REQ_EVENT, vcpu) &&
		    !kvm_x86_inject_events_irqoff(vcpu))
			return false;

		return !kvm_request_pending(vcpu);
	}
}

/* Back to guest mode, as vcpu_enter_guest() enters it. */
static bool caretaker_reenter(struct kvm_vcpu *vcpu)
{
	smp_store_release(&vcpu->mode, IN_GUEST_MODE);
	smp_mb();
	if (kvm_lapic_enabled(vcpu))
		kvm_x86_call(sync_pir_to_irr)(vcpu);
	if (!kvm_x86_vcpu_exit_request(vcpu))
		return true;
	vcpu->mode = OUTSIDE_GUEST_MODE;
	smp_wmb();
	return false;
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
	int tries;

	for (;;) {
		exit_fastpath = kvm_x86_run_guest_once(vcpu, run_flags);
		run_flags = 0;

		if (exit_fastpath == EXIT_FASTPATH_EXIT_USERSPACE)
			break;
		/* An exit that needs its handler; a host interrupt needs none. */
		if (exit_fastpath == EXIT_FASTPATH_NONE &&
		    !kvm_x86_call(exit_is_host_irq)(vcpu))
			break;

		/*
		 * A request that arrives between serving and entering is
		 * served too, a few times, before the slow path gets it.
		 */
		for (tries = 0; tries < 4; tries++) {
			if (!caretaker_serve(vcpu))
				goto slow;
			if (caretaker_reenter(vcpu))
				break;
		}
		if (tries == 4)
			goto slow;
		++vcpu->stat.caretaker_exits;
	}
	++vcpu->stat.caretaker_slow_exits;
	return exit_fastpath;

slow:
	++vcpu->stat.caretaker_slow_exits;
	return EXIT_FASTPATH_EXIT_HANDLED;
}
