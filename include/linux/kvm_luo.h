/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What KVM's live update handlers (virt/kvm/luo/, in Rust) need from KVM:
 * the files of VMs and vCPUs, and the state of both, one section at a time,
 * through KVM's own get/set paths.
 */
#ifndef __LINUX_KVM_LUO_H
#define __LINUX_KVM_LUO_H

#include <linux/kvm.h>
#include <linux/types.h>

struct file;
struct module;
struct kvm;
struct kvm_vcpu;

/*
 * The sections of a preserved vCPU and VM, in the order they are restored.
 * Their numbers are part of the preserved format: never renumber one, only
 * append.  The payload of each is the KVM UAPI structure of its ioctl.
 */
enum kvm_luo_vcpu_section {
	KVM_LUO_VCPU_CPUID = 1,		/* struct kvm_cpuid_entry2[] */
	KVM_LUO_VCPU_CPU_CAPS,		/* struct kvm_luo_cpu_cap[] */
	KVM_LUO_VCPU_TSC_KHZ,		/* u32, KVM_GET_TSC_KHZ */
	KVM_LUO_VCPU_SREGS,		/* struct kvm_sregs */
	KVM_LUO_VCPU_MSRS,		/* struct kvm_msr_entry[] */
	KVM_LUO_VCPU_XSAVE,		/* KVM_GET_XSAVE2 */
	KVM_LUO_VCPU_XCRS,		/* struct kvm_xcrs */
	KVM_LUO_VCPU_LAPIC,		/* struct kvm_lapic_state */
	KVM_LUO_VCPU_EVENTS,		/* struct kvm_vcpu_events */
	KVM_LUO_VCPU_MP_STATE,		/* struct kvm_mp_state */
	KVM_LUO_VCPU_DEBUGREGS,		/* struct kvm_debugregs */
	KVM_LUO_VCPU_REGS,		/* struct kvm_regs */
	KVM_LUO_VCPU_NESTED,		/* KVM_GET_NESTED_STATE */
	KVM_LUO_VCPU_NR_SECTIONS,
};

enum kvm_luo_vm_section {
	KVM_LUO_VM_CONFIG = 1,		/* struct kvm_luo_x86_vm_config */
	KVM_LUO_VM_PIC_MASTER,		/* struct kvm_irqchip */
	KVM_LUO_VM_PIC_SLAVE,		/* struct kvm_irqchip */
	KVM_LUO_VM_IOAPIC,		/* struct kvm_irqchip */
	KVM_LUO_VM_CLOCK,		/* struct kvm_clock_data */
	KVM_LUO_VM_MEMSLOTS,		/* struct kvm_luo_memslot[] */
	KVM_LUO_VM_PIT,			/* struct kvm_luo_x86_pit */
	KVM_LUO_VM_CAPS,		/* struct kvm_enable_cap[] */
	KVM_LUO_VM_NR_SECTIONS,
};

/* The VM-wide settings of an x86 VM that live update carries over. */
struct kvm_luo_x86_vm_config {
	__u32 irqchip_mode;		/* 0: none, 1: in kernel, 2: split */
	__u32 nr_reserved_ioapic_pins;
	__u64 x2apic_api;		/* KVM_X2APIC_API_* */
	__u64 disabled_quirks;
	__u64 tss_addr;
	__u64 identity_map_addr;
	__u32 default_tsc_khz;
	__u32 pad;
};

/* The in-kernel PIT: how KVM_CREATE_PIT2 made it, and its state. */
struct kvm_luo_x86_pit {
	__u32 flags;			/* KVM_PIT_SPEAKER_DUMMY */
	__u32 reinject;			/* KVM_REINJECT_CONTROL */
	struct kvm_pit_state2 state;
};

/*
 * One CPUID register of features the saving KVM could give a guest: the
 * restoring KVM refuses a vCPU that uses one it cannot give.  @reg is 0-3
 * for EAX, EBX, ECX, EDX.
 */
struct kvm_luo_cpu_cap {
	__u32 function;
	__u32 index;
	__u32 reg;
	__u32 bits;
};

/* The layout of one memslot, which the retrieving VMM re-creates. */
struct kvm_luo_memslot {
	__u32 slot;			/* as_id << 16 | id */
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
};

#ifdef CONFIG_KVM_LUO
/* Declared in kvm_host.h too: Rust's bindings include only this header. */
void kvm_get_kvm(struct kvm *kvm);
void kvm_put_kvm(struct kvm *kvm);

struct kvm *kvm_vm_from_file(struct file *file);
struct kvm_vcpu *kvm_vcpu_from_file(struct file *file);
bool kvm_vm_luo_enabled(struct kvm *kvm);
u32 kvm_vcpu_luo_id(struct kvm_vcpu *vcpu);
struct kvm *kvm_vcpu_luo_kvm(struct kvm_vcpu *vcpu);
struct file *kvm_vm_luo_create_file(u32 type);
struct file *kvm_vcpu_luo_create_file(struct kvm *kvm, u32 id);
int kvm_vcpu_luo_lock(struct kvm_vcpu *vcpu);
void kvm_vcpu_luo_unlock(struct kvm_vcpu *vcpu);
int kvm_vm_luo_freeze(struct kvm *kvm);
void kvm_vm_luo_thaw(struct kvm *kvm);
int kvm_vcpu_luo_lock_frozen(struct kvm_vcpu *vcpu);
void kvm_vm_luo_kill(struct kvm *kvm);
int kvm_luo_take_fault(void);

int kvm_arch_vm_luo_check(struct kvm *kvm);
u32 kvm_arch_vm_luo_type(struct kvm *kvm);
int kvm_arch_vm_luo_save(struct kvm *kvm, u32 section, void *buf, u32 size);
int kvm_arch_vm_luo_restore(struct kvm *kvm, u32 section, const void *buf,
			    u32 size);
int kvm_arch_vcpu_luo_save(struct kvm_vcpu *vcpu, u32 section, void *buf,
			   u32 size);
int kvm_arch_vcpu_luo_restore(struct kvm_vcpu *vcpu, u32 section,
			      const void *buf, u32 size);

/* Implemented in Rust, virt/kvm/luo/. */
int kvm_luo_init(struct module *module);
void kvm_luo_exit(void);
#else
static inline int kvm_luo_init(struct module *module)
{
	return 0;
}

static inline void kvm_luo_exit(void)
{
}
#endif

#endif /* __LINUX_KVM_LUO_H */
