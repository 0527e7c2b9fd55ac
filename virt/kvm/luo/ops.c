// SPDX-License-Identifier: GPL-2.0-only
/*
 * The calls from KVM's live update handlers (virt/kvm/luo/, in Rust) into
 * KVM, through the operations KVM registers when it loads.
 *
 * The handlers are built into the kernel even when KVM is a module: the
 * Rust abstractions they use live in the kernel crate, which cannot call
 * into a module, and the LUO core must find their handlers when it
 * deserializes a session, which happens at the first open of
 * /dev/liveupdate, before or after KVM loads.  A session holding VMs is then
 * always deserialized, and its other files stay retrievable whether or not
 * KVM is loaded.
 *
 * Most calls are made with a VM or vCPU in hand, from a file that pins the
 * module that registered the operations, or from a reference the handlers
 * took with kvm_luo_get_kvm(), which pins it too: the operations cannot go
 * away under such a call.  The others find the operations under RCU:
 * whether a file is KVM's (which needs no call into KVM), and, with the
 * module pinned for the call, creating a retrieved VM, the test fault hook,
 * and stopping the gap runtime of a vCPU that will not be adopted.
 */

#define pr_fmt(fmt) "kvm: live update: " fmt

#include <linux/fs.h>
#include <linux/kmod.h>
#include <linux/kvm_luo.h>
#include <linux/liveupdate.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/smp.h>

#ifdef CONFIG_X86
#include <asm/apic.h>
#endif

static const struct kvm_luo_ops __rcu *kvm_luo_ops;
static DEFINE_MUTEX(kvm_luo_ops_lock);
static bool kvm_luo_handlers;

/*
 * Called by kvm_init(), as its last step, with @ops->owner the module that
 * initializes KVM; only one does.
 */
void kvm_luo_register(const struct kvm_luo_ops *ops)
{
	guard(mutex)(&kvm_luo_ops_lock);
	WARN_ON_ONCE(rcu_access_pointer(kvm_luo_ops));
	rcu_assign_pointer(kvm_luo_ops, ops);
}
EXPORT_SYMBOL_FOR_MODULES(kvm_luo_register, "kvm");

/*
 * Called by kvm_exit(), first: no file holds the module any more, and the
 * calls that found the operations under RCU are over when this returns.
 */
void kvm_luo_unregister(void)
{
	scoped_guard(mutex, &kvm_luo_ops_lock)
		RCU_INIT_POINTER(kvm_luo_ops, NULL);
	synchronize_rcu();
}
EXPORT_SYMBOL_FOR_MODULES(kvm_luo_unregister, "kvm");

/* Whether VMs can be preserved: the handlers are registered with LUO. */
bool kvm_luo_available(void)
{
	return READ_ONCE(kvm_luo_handlers);
}
EXPORT_SYMBOL_FOR_MODULES(kvm_luo_available, "kvm");

/* The operations, for a call made with a VM or vCPU that pins them. */
static const struct kvm_luo_ops *kvm_luo_ops_held(void)
{
	return rcu_dereference_protected(kvm_luo_ops, true);
}

/* The operations with their module pinned, or NULL if KVM is not loaded. */
static const struct kvm_luo_ops *kvm_luo_ops_get(void)
{
	const struct kvm_luo_ops *o;

	guard(rcu)();
	o = rcu_dereference(kvm_luo_ops);
	return o && try_module_get(o->owner) ? o : NULL;
}

static void kvm_luo_ops_put(const struct kvm_luo_ops *o)
{
	module_put(o->owner);
}

/* The module of KVM for this machine's CPUs, which may be loaded by name. */
static const char *kvm_luo_module(void)
{
#ifdef CONFIG_X86
	if (boot_cpu_has(X86_FEATURE_SVM))
		return "kvm-amd";
	if (boot_cpu_has(X86_FEATURE_VMX))
		return "kvm-intel";
#endif
	return NULL;
}

/*
 * As kvm_luo_ops_get(), but loads KVM first if it is not loaded: a VMM may
 * retrieve its VM before anything else loaded KVM in this kernel.
 */
static const struct kvm_luo_ops *kvm_luo_ops_load(void)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_get();
	const char *name = kvm_luo_module();

	if (!o && name && !fatal_signal_pending(current)) {
		request_module("%s", name);
		o = kvm_luo_ops_get();
	}
	if (!o)
		pr_warn_ratelimited("KVM is not loaded, and loading %s failed\n",
				    name ?: "it");
	return o;
}

static void *kvm_luo_file_of(struct file *file, bool vcpu)
{
	const struct kvm_luo_ops *o;

	guard(rcu)();
	o = rcu_dereference(kvm_luo_ops);
	if (!o || file->f_op != (vcpu ? o->vcpu_fops : o->vm_fops))
		return NULL;
	/* A file of KVM's pins its module from here on. */
	return file->private_data;
}

struct kvm *kvm_luo_vm_from_file(struct file *file)
{
	return kvm_luo_file_of(file, false);
}

struct kvm_vcpu *kvm_luo_vcpu_from_file(struct file *file)
{
	return kvm_luo_file_of(file, true);
}

/* A reference to a VM pins KVM too, for as long as the handlers hold it. */
void kvm_luo_get_kvm(struct kvm *kvm)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_held();

	__module_get(o->owner);
	o->get_kvm(kvm);
}

void kvm_luo_put_kvm(struct kvm *kvm)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_held();

	o->put_kvm(kvm);
	module_put(o->owner);
}

struct file *kvm_luo_create_vm_file(u32 type)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_load();
	struct file *file;

	if (!o)
		return ERR_PTR(-ENODEV);
	/* The VM file pins KVM from here on. */
	file = o->create_vm_file(type);
	kvm_luo_ops_put(o);
	return file;
}

int kvm_luo_next_fault(void)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_get();
	int fault;

	if (!o)
		return 0;
	fault = o->take_fault();
	kvm_luo_ops_put(o);
	return fault;
}

/*
 * KVM, which alone knows which vCPU a gap runtime of the previous kernel
 * runs, cannot be loaded, and the memory that runtime runs the guest on is
 * about to go: stop the CPU that runs it, with INIT, as the kexec path does
 * for a runtime it cannot hand over.  @apic_id is the runtime's CPU, or
 * U32_MAX for every CPU still held from the previous kernel.
 */
static void kvm_luo_reset_held_cpus(u32 apic_id)
{
#ifdef CONFIG_X86
	unsigned int cpu;

	for_each_possible_cpu(cpu) {
		if (apic_id != U32_MAX && apic->cpu_present_to_apicid(cpu) != apic_id)
			continue;
		if (!smp_claim_held_cpu(cpu))
			continue;
		if (smp_reset_held_cpu(cpu))
			pr_warn("CPU %u, which ran a vCPU through the kexec, reset: KVM is not loaded\n",
				cpu);
		smp_release_held_cpu(cpu);
	}
#endif
}

void kvm_luo_release_gap(const void *buf, u32 size)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_load();

	if (!o) {
#ifdef CONFIG_X86
		if (size == sizeof(struct kvm_luo_x86_gap))
			kvm_luo_reset_held_cpus(((const struct kvm_luo_x86_gap *)buf)->apic_id);
#endif
		return;
	}
	o->release_gap(buf, size);
	kvm_luo_ops_put(o);
}

void kvm_luo_release_gaps(void)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_load();

	if (!o) {
		kvm_luo_reset_held_cpus(U32_MAX);
		return;
	}
	o->release_gaps();
	kvm_luo_ops_put(o);
}

/* The calls made with a VM or vCPU in hand. */
bool kvm_luo_vm_enabled(struct kvm *kvm)
{
	return kvm_luo_ops_held()->vm_enabled(kvm);
}

int kvm_luo_vm_check(struct kvm *kvm)
{
	return kvm_luo_ops_held()->vm_check(kvm);
}

u32 kvm_luo_vm_type(struct kvm *kvm)
{
	return kvm_luo_ops_held()->vm_type(kvm);
}

int kvm_luo_vm_save(struct kvm *kvm, u32 section, void *buf, u32 size)
{
	return kvm_luo_ops_held()->vm_save(kvm, section, buf, size);
}

int kvm_luo_vm_restore(struct kvm *kvm, u32 section, const void *buf, u32 size)
{
	return kvm_luo_ops_held()->vm_restore(kvm, section, buf, size);
}

int kvm_luo_vm_freeze(struct kvm *kvm)
{
	return kvm_luo_ops_held()->vm_freeze(kvm);
}

void kvm_luo_vm_thaw(struct kvm *kvm)
{
	kvm_luo_ops_held()->vm_thaw(kvm);
}

void kvm_luo_vm_kill(struct kvm *kvm)
{
	kvm_luo_ops_held()->vm_kill(kvm);
}

bool kvm_luo_vm_gap_vcpus(struct kvm *kvm)
{
	return kvm_luo_ops_held()->vm_gap_vcpus(kvm);
}

void kvm_luo_vm_gap_memory(struct kvm *kvm, bool preserved)
{
	kvm_luo_ops_held()->vm_gap_memory(kvm, preserved);
}

int kvm_luo_vm_gap_file(struct kvm *kvm, u32 index, struct file **filep)
{
	return kvm_luo_ops_held()->vm_gap_file(kvm, index, filep);
}

struct file *kvm_luo_create_vcpu_file(struct kvm *kvm, u32 id)
{
	return kvm_luo_ops_held()->create_vcpu_file(kvm, id);
}

u32 kvm_luo_vcpu_id(struct kvm_vcpu *vcpu)
{
	return kvm_luo_ops_held()->vcpu_id(vcpu);
}

struct kvm *kvm_luo_vcpu_kvm(struct kvm_vcpu *vcpu)
{
	return kvm_luo_ops_held()->vcpu_kvm(vcpu);
}

int kvm_luo_vcpu_lock(struct kvm_vcpu *vcpu)
{
	return kvm_luo_ops_held()->vcpu_lock(vcpu);
}

void kvm_luo_vcpu_unlock(struct kvm_vcpu *vcpu)
{
	kvm_luo_ops_held()->vcpu_unlock(vcpu);
}

int kvm_luo_vcpu_lock_frozen(struct kvm_vcpu *vcpu)
{
	return kvm_luo_ops_held()->vcpu_lock_frozen(vcpu);
}

int kvm_luo_vcpu_save(struct kvm_vcpu *vcpu, u32 section, void *buf, u32 size)
{
	return kvm_luo_ops_held()->vcpu_save(vcpu, section, buf, size);
}

int kvm_luo_vcpu_restore(struct kvm_vcpu *vcpu, u32 section, const void *buf,
			 u32 size)
{
	return kvm_luo_ops_held()->vcpu_restore(vcpu, section, buf, size);
}

static int __init kvm_luo_setup(void)
{
	WRITE_ONCE(kvm_luo_handlers, !kvm_luo_register_handlers());
	return 0;
}
device_initcall(kvm_luo_setup);
