/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __KVM_X86_CARETAKER_H
#define __KVM_X86_CARETAKER_H

#include <linux/kvm_host.h>

/*
 * The caretaker's trace ring: one page per vCPU, written only by the
 * caretaker (a record, then head), read by the host through debugfs
 * (vcpuN/caretaker_trace).  The layout is versioned, little-endian and free
 * of pointers because it is meant to outlive the kernel that wrote it (handed
 * over with KHO); a reader must check magic and version.  See
 * Documentation/virt/kvm/caretaker.rst.
 */
#define KVM_CARETAKER_RING_MAGIC	0x474e495254435b4bULL	/* "K[CTRING" */
#define KVM_CARETAKER_RING_VERSION	1

enum kvm_caretaker_rec_type {
	KVM_CARETAKER_REC_SERVED = 1,	/* data: the fastpath result */
	KVM_CARETAKER_REC_HOST_IRQ = 2,	/* an exit for a host interrupt or a kick */
	KVM_CARETAKER_REC_TIMER = 3,	/* an expired APIC timer, injected */
	KVM_CARETAKER_REC_HALT = 4,	/* the CPU halted for a halted vCPU */
	KVM_CARETAKER_REC_WAKE = 5,	/* data: microseconds halted */
	KVM_CARETAKER_REC_SLOW = 6,	/* data: KVM_CARETAKER_SLOW_* */
};

enum {
	KVM_CARETAKER_SLOW_EXIT = 1,	/* an exit that needs its handler */
	KVM_CARETAKER_SLOW_WORK = 2,	/* a request, a signal, the scheduler */
};

struct kvm_caretaker_record {
	__le64 tsc;
	__le16 type;
	__le16 reserved;
	__le32 data;
};

struct kvm_caretaker_ring {
	__le64 magic;
	__le32 version;
	__le32 nr_records;		/* records in rec[] */
	__le64 head;			/* records ever written */
	__le64 reserved[5];
	struct kvm_caretaker_record rec[];
};

static_assert(sizeof(struct kvm_caretaker_record) == 16);
static_assert(offsetof(struct kvm_caretaker_ring, head) == 16);
static_assert(offsetof(struct kvm_caretaker_ring, rec) == 64);

#define KVM_CARETAKER_RING_RECORDS \
	((PAGE_SIZE - sizeof(struct kvm_caretaker_ring)) / sizeof(struct kvm_caretaker_record))

#ifdef CONFIG_KVM_CARETAKER
void kvm_caretaker_init(void);
void kvm_caretaker_exit(void);
int kvm_caretaker_enable(struct kvm_vcpu *vcpu, struct kvm_enable_cap *cap);
void kvm_caretaker_release(struct kvm_vcpu *vcpu);
int kvm_caretaker_check_extension(void);
void kvm_caretaker_bind(struct kvm_vcpu *vcpu, struct task_struct *task);
fastpath_t kvm_caretaker_run(struct kvm_vcpu *vcpu, u64 run_flags);
extern const struct file_operations kvm_caretaker_trace_fops;

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

static inline void kvm_caretaker_init(void) {}
static inline void kvm_caretaker_exit(void) {}
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
