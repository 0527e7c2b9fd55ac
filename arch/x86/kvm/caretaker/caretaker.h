/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __KVM_X86_CARETAKER_H
#define __KVM_X86_CARETAKER_H

#include <linux/kvm_host.h>

#ifdef CONFIG_KVM_CARETAKER
int kvm_caretaker_enable(struct kvm_vcpu *vcpu, struct kvm_enable_cap *cap);
void kvm_caretaker_release(struct kvm_vcpu *vcpu);
int kvm_caretaker_check_extension(void);
void kvm_caretaker_bind(struct kvm_vcpu *vcpu, struct task_struct *task);
fastpath_t kvm_caretaker_run(struct kvm_vcpu *vcpu, u64 run_flags);

/*
 * Whether vcpu_enter_guest() hands the guest to the caretaker: only in the
 * vCPU's KVM_RUN_ASYNC task, and only on the CPU given to it.  Preemption is
 * disabled by the caller.
 */
static inline bool kvm_caretaker_active(struct kvm_vcpu *vcpu)
{
	int cpu = vcpu->arch.caretaker_cpu;

	return unlikely(cpu >= 0) && current == READ_ONCE(vcpu->async.task) &&
	       smp_processor_id() == cpu;
}
#else
static inline int kvm_caretaker_enable(struct kvm_vcpu *vcpu,
				       struct kvm_enable_cap *cap)
{
	return -EINVAL;
}

static inline void kvm_caretaker_release(struct kvm_vcpu *vcpu) {}
static inline int kvm_caretaker_check_extension(void) { return 0; }
static inline void kvm_caretaker_bind(struct kvm_vcpu *vcpu,
				      struct task_struct *task) {}

static inline fastpath_t kvm_caretaker_run(struct kvm_vcpu *vcpu, u64 run_flags)
{
	return EXIT_FASTPATH_NONE;
}

static inline bool kvm_caretaker_active(struct kvm_vcpu *vcpu)
{
	return false;
}
#endif

#endif /* __KVM_X86_CARETAKER_H */
