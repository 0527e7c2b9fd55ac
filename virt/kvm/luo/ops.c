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
 * Every call but three is made with a VM or vCPU in hand, from a file that
 * pins the module that registered the operations, or from a reference the
 * handlers took with kvm_luo_get_kvm(), which pins it too; the operations
 * cannot go away under such a call.  The three others (is this file KVM's,
 * create a VM, stop a gap runtime nobody adopted) find the operations under
 * RCU and pin their module for the call; if KVM is not loaded, they load it.
 */

#include <linux/fs.h>
#include <linux/kmod.h>
#include <linux/kvm_luo.h>
#include <linux/kvm_types.h>
#include <linux/liveupdate.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>

static const struct kvm_luo_ops __rcu *kvm_luo_ops;
static DEFINE_MUTEX(kvm_luo_ops_lock);

/*
 * Called by kvm_init(), with @ops->owner the module that initializes KVM.
 * -EBUSY if another KVM registered first.
 */
int kvm_luo_register(const struct kvm_luo_ops *ops)
{
	guard(mutex)(&kvm_luo_ops_lock);
	if (rcu_access_pointer(kvm_luo_ops))
		return -EBUSY;
	rcu_assign_pointer(kvm_luo_ops, ops);
	return 0;
}
EXPORT_SYMBOL_FOR_KVM(kvm_luo_register);

/* Called by kvm_exit(), when nothing holds the module any more. */
void kvm_luo_unregister(void)
{
	scoped_guard(mutex, &kvm_luo_ops_lock)
		RCU_INIT_POINTER(kvm_luo_ops, NULL);
	synchronize_rcu();
}
EXPORT_SYMBOL_FOR_KVM(kvm_luo_unregister);

/* Whether VMs can be preserved: live update is on in this kernel. */
bool kvm_luo_available(void)
{
	return liveupdate_enabled();
}
EXPORT_SYMBOL_FOR_KVM(kvm_luo_available);

/* The operations, for a call made with a VM or vCPU that pins them. */
static const struct kvm_luo_ops *ops(void)
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

/*
 * As kvm_luo_ops_get(), but loads KVM first if it is not loaded: a VMM may
 * retrieve its VM before anything else loaded KVM in this kernel.
 */
static const struct kvm_luo_ops *kvm_luo_ops_load(void)
{
	static const char * const modules[] = {
#ifdef CONFIG_X86
		"kvm-amd", "kvm-intel",
#endif
	};
	const struct kvm_luo_ops *o = kvm_luo_ops_get();
	unsigned int i;

	for (i = 0; !o && i < ARRAY_SIZE(modules); i++) {
		request_module("%s", modules[i]);
		o = kvm_luo_ops_get();
	}
	if (!o)
		pr_warn_ratelimited("kvm: live update: KVM is not loaded, and loading it failed\n");
	return o;
}

static void kvm_luo_ops_put(const struct kvm_luo_ops *o)
{
	module_put(o->owner);
}

/* @fops is KVM's, and @file pins it from here on. */
static void *kvm_luo_file_of(struct file *file, bool vcpu)
{
	const struct kvm_luo_ops *o;

	guard(rcu)();
	o = rcu_dereference(kvm_luo_ops);
	if (!o || file->f_op != (vcpu ? o->vcpu_fops : o->vm_fops))
		return NULL;
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
	const struct kvm_luo_ops *o = ops();

	__module_get(o->owner);
	o->get_kvm(kvm);
}

void kvm_luo_put_kvm(struct kvm *kvm)
{
	const struct kvm_luo_ops *o = ops();

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

void kvm_luo_release_gap(const void *buf, u32 size)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_load();

	if (!o)
		return;
	o->release_gap(buf, size);
	kvm_luo_ops_put(o);
}

void kvm_luo_release_gaps(void)
{
	const struct kvm_luo_ops *o = kvm_luo_ops_load();

	if (!o)
		return;
	o->release_gaps();
	kvm_luo_ops_put(o);
}

/* The calls made with a VM or vCPU in hand. */
bool kvm_luo_vm_enabled(struct kvm *kvm)
{
	return ops()->vm_enabled(kvm);
}

int kvm_luo_vm_check(struct kvm *kvm)
{
	return ops()->vm_check(kvm);
}

u32 kvm_luo_vm_type(struct kvm *kvm)
{
	return ops()->vm_type(kvm);
}

int kvm_luo_vm_save(struct kvm *kvm, u32 section, void *buf, u32 size)
{
	return ops()->vm_save(kvm, section, buf, size);
}

int kvm_luo_vm_restore(struct kvm *kvm, u32 section, const void *buf, u32 size)
{
	return ops()->vm_restore(kvm, section, buf, size);
}

int kvm_luo_vm_freeze(struct kvm *kvm)
{
	return ops()->vm_freeze(kvm);
}

void kvm_luo_vm_thaw(struct kvm *kvm)
{
	ops()->vm_thaw(kvm);
}

void kvm_luo_vm_kill(struct kvm *kvm)
{
	ops()->vm_kill(kvm);
}

bool kvm_luo_vm_gap_vcpus(struct kvm *kvm)
{
	return ops()->vm_gap_vcpus(kvm);
}

void kvm_luo_vm_gap_memory(struct kvm *kvm, bool preserved)
{
	ops()->vm_gap_memory(kvm, preserved);
}

int kvm_luo_vm_gap_file(struct kvm *kvm, u32 index, struct file **filep)
{
	return ops()->vm_gap_file(kvm, index, filep);
}

struct file *kvm_luo_create_vcpu_file(struct kvm *kvm, u32 id)
{
	return ops()->create_vcpu_file(kvm, id);
}

u32 kvm_luo_vcpu_id(struct kvm_vcpu *vcpu)
{
	return ops()->vcpu_id(vcpu);
}

struct kvm *kvm_luo_vcpu_kvm(struct kvm_vcpu *vcpu)
{
	return ops()->vcpu_kvm(vcpu);
}

int kvm_luo_vcpu_lock(struct kvm_vcpu *vcpu)
{
	return ops()->vcpu_lock(vcpu);
}

void kvm_luo_vcpu_unlock(struct kvm_vcpu *vcpu)
{
	ops()->vcpu_unlock(vcpu);
}

int kvm_luo_vcpu_lock_frozen(struct kvm_vcpu *vcpu)
{
	return ops()->vcpu_lock_frozen(vcpu);
}

int kvm_luo_vcpu_save(struct kvm_vcpu *vcpu, u32 section, void *buf, u32 size)
{
	return ops()->vcpu_save(vcpu, section, buf, size);
}

int kvm_luo_vcpu_restore(struct kvm_vcpu *vcpu, u32 section, const void *buf,
			 u32 size)
{
	return ops()->vcpu_restore(vcpu, section, buf, size);
}

static int __init kvm_luo_setup(void)
{
	return kvm_luo_register_handlers();
}
device_initcall(kvm_luo_setup);
