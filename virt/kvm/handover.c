// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_VM_DETACH and KVM_VM_ATTACH: hand a running VM over to a new VMM.
 *
 * A VMM detaches from its VM; vCPUs that run in their own tasks
 * (KVM_RUN_ASYNC) go on running, and exits that need userspace stay parked
 * until a VMM attaches.  The VM keeps its last VMM's address space alive
 * meanwhile, so the VMM may exit.  A new VMM, in another process and mm,
 * attaches with the addresses at which it maps the same guest memory: KVM
 * moves its MMU notifier and memslots to the new mm, and from then on the
 * VM's ioctls work from the new mm only.  Neither step reads or writes guest
 * state, so they work the same for confidential VMs.
 */

#include <linux/cred.h>
#include <linux/kvm_host.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "kvm_mm.h"

int kvm_vm_ioctl_detach(struct kvm *kvm)
{
	int nr = atomic_read(&kvm->online_vcpus);
	struct kvm_vcpu *vcpu;
	unsigned long *locked;
	unsigned long i;
	int r = 0;

	locked = bitmap_zalloc(nr, GFP_KERNEL_ACCOUNT);
	if (!locked)
		return -ENOMEM;

	mutex_lock(&kvm->lock);
	/*
	 * A VMM thread in KVM_RUN would go on running the vCPU in this mm
	 * after another VMM attached: refuse while one is in any vCPU ioctl.
	 * A vCPU with its own task runs without the VMM.
	 */
	kvm_for_each_vcpu(i, vcpu, kvm) {
		if (i >= nr)
			break;
		if (READ_ONCE(vcpu->async.task))
			continue;
		if (!mutex_trylock(&vcpu->mutex)) {
			r = -EBUSY;
			break;
		}
		__set_bit(i, locked);
	}
	if (!r) {
		/* Keep guest memory mapped when the VMM exits. */
		mmget(kvm->mm);
		kvm->detached_mm = kvm->mm;
		WRITE_ONCE(kvm->detached, true);
	}
	for_each_set_bit(i, locked, nr)
		mutex_unlock(&kvm_get_vcpu(kvm, i)->mutex);
	mutex_unlock(&kvm->lock);

	bitmap_free(locked);
	return r;
}

struct kvm_attach {
	struct kvm_vm_attach_slot *slots;
	u32 nr;
};

static int kvm_attach_slot_cmp(const void *a, const void *b)
{
	const struct kvm_vm_attach_slot *x = a, *y = b;

	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static struct kvm_vm_attach_slot *kvm_attach_find(struct kvm_attach *attach,
						  int as_id, int id)
{
	struct kvm_vm_attach_slot key = { .slot = (as_id << 16) | id };

	return bsearch(&key, attach->slots, attach->nr, sizeof(key),
		       kvm_attach_slot_cmp);
}

static unsigned long kvm_attach_hva(void *data, int as_id, int id)
{
	return kvm_attach_find(data, as_id, id)->userspace_addr;
}

/*
 * The file and page offset that map all of [hva, hva + size) in @mm, with a
 * reference on the file.  Only shared file mappings can be handed over:
 * anonymous memory belongs to one mm.
 */
static int kvm_attach_backing(struct mm_struct *mm, unsigned long hva,
			      unsigned long size, struct file **file,
			      pgoff_t *pgoff)
{
	unsigned long addr, end = hva + size;
	struct vm_area_struct *vma;
	pgoff_t off;
	int r = 0;

	*file = NULL;
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	for (addr = hva; addr < end; addr = vma->vm_end) {
		vma = vma_lookup(mm, addr);
		if (!vma) {
			r = -EFAULT;
			break;
		}
		if (!vma->vm_file || !(vma->vm_flags & VM_SHARED)) {
			r = -EXDEV;
			break;
		}
		off = vma->vm_pgoff + ((addr - vma->vm_start) >> PAGE_SHIFT);
		if (addr == hva) {
			*file = get_file(vma->vm_file);
			*pgoff = off;
		} else if (file_inode(vma->vm_file) != file_inode(*file) ||
			   off != *pgoff + ((addr - hva) >> PAGE_SHIFT)) {
			r = -EXDEV;
			break;
		}
	}
	mmap_read_unlock(mm);

	if (r && *file) {
		fput(*file);
		*file = NULL;
	}
	return r;
}

/* The new address of @slot maps the memory the old one maps. */
static int kvm_attach_check_slot(struct kvm_memory_slot *slot,
				 unsigned long new_hva, struct mm_struct *old,
				 struct mm_struct *new)
{
	unsigned long size = slot->npages << PAGE_SHIFT;
	struct file *old_file, *new_file;
	pgoff_t old_off, new_off;
	int r;

	r = kvm_attach_backing(old, slot->userspace_addr, size, &old_file, &old_off);
	/*
	 * A guest_memfd slot whose shared half was never mapped has nothing
	 * in the old mm; its new address only has to be a user address.
	 */
	if (r == -EFAULT && kvm_slot_has_gmem(slot))
		return access_ok((void __user *)new_hva, size) ? 0 : -EFAULT;
	if (r)
		return r;

	r = kvm_attach_backing(new, new_hva, size, &new_file, &new_off);
	if (!r) {
		if (file_inode(new_file) != file_inode(old_file) || new_off != old_off)
			r = -EXDEV;
		fput(new_file);
	}
	fput(old_file);
	return r;
}

/* Every user memslot is listed once, and maps the same memory in @new. */
static int kvm_attach_check_memory(struct kvm *kvm, struct kvm_attach *attach,
				   struct mm_struct *old, struct mm_struct *new)
{
	struct kvm_vm_attach_slot *s;
	struct kvm_memory_slot *slot;
	struct kvm_memslots *slots;
	u32 found = 0;
	int as_id, bkt, r;

	for (as_id = 0; as_id < kvm_arch_nr_memslot_as_ids(kvm); as_id++) {
		slots = __kvm_memslots(kvm, as_id);
		kvm_for_each_memslot(slot, bkt, slots) {
			if (slot->id >= KVM_USER_MEM_SLOTS) {
				pr_warn_ratelimited("kvm: VM with private memslot %d cannot be attached to a new mm yet\n",
						    slot->id);
				return -EOPNOTSUPP;
			}
			s = kvm_attach_find(attach, as_id, slot->id);
			if (!s)
				return -EINVAL;
			r = kvm_attach_check_slot(slot, s->userspace_addr, old, new);
			if (r)
				return r;
			found++;
		}
	}
	return found == attach->nr ? 0 : -EINVAL;
}

static int kvm_attach_copy_slots(struct kvm_attach *attach,
				 const struct kvm_vm_attach *arg)
{
	u32 i;

	if (arg->nr_slots > KVM_MAX_NR_ADDRESS_SPACES * KVM_USER_MEM_SLOTS)
		return -EINVAL;

	attach->nr = arg->nr_slots;
	attach->slots = vmemdup_array_user(u64_to_user_ptr(arg->slots), arg->nr_slots,
					   sizeof(*attach->slots));
	if (IS_ERR(attach->slots)) {
		int r = PTR_ERR(attach->slots);

		attach->slots = NULL;
		return r;
	}

	sort(attach->slots, attach->nr, sizeof(*attach->slots),
	     kvm_attach_slot_cmp, NULL);
	for (i = 0; i < attach->nr; i++) {
		struct kvm_vm_attach_slot *s = &attach->slots[i];

		if (s->pad || !PAGE_ALIGNED(s->userspace_addr) ||
		    (i && s->slot == attach->slots[i - 1].slot))
			return -EINVAL;
	}
	return 0;
}

/*
 * Holding the VM's file is what lets a process name the VM at all; in
 * addition the new VMM must run as the user of the last one, or be allowed
 * to act for any user.  A file that leaked to another user then cannot pull
 * the VM's memory into that user's address space.
 */
static bool kvm_attach_permitted(struct kvm *kvm)
{
	return uid_eq(current_euid(), kvm->owner_euid) || capable(CAP_SYS_ADMIN);
}

int kvm_vm_ioctl_attach(struct kvm *kvm, void __user *argp)
{
	struct kvm_attach attach = {};
	struct kvm_vm_attach arg;
	struct mm_struct *old;
	struct kvm_vcpu *vcpu;
	unsigned long i;
	int as_id, r;

	if (copy_from_user(&arg, argp, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.reserved[0] || arg.reserved[1])
		return -EINVAL;
	if (kvm->vm_dead)
		return -EIO;
	if (!kvm_attach_permitted(kvm)) {
		pr_warn_ratelimited("kvm: pid %d (euid %u) may not attach a VM of euid %u\n",
				    task_pid_nr(current),
				    from_kuid(&init_user_ns, current_euid()),
				    from_kuid(&init_user_ns, kvm->owner_euid));
		return -EPERM;
	}

	r = kvm_attach_copy_slots(&attach, &arg);
	if (r)
		goto out_free;

	mutex_lock(&kvm->lock);
	old = kvm->detached_mm;
	r = -EBUSY;
	if (!kvm->detached || WARN_ON_ONCE(!old))
		goto out_unlock_kvm;

	/* Nothing may use guest memory through the old addresses meanwhile. */
	kvm_for_each_vcpu(i, vcpu, kvm)
		kvm_vcpu_async_pause(vcpu);
	r = kvm_lock_all_vcpus(kvm);
	if (r)
		goto out_unpause;
	mutex_lock(&kvm->slots_lock);

	r = kvm_attach_check_memory(kvm, &attach, old, current->mm);
	if (r)
		goto out_unlock;
	r = kvm_mmu_notifier_move(kvm, old, current->mm);
	if (r)
		goto out_unlock;
	for (as_id = 0; as_id < kvm_arch_nr_memslot_as_ids(kvm); as_id++)
		kvm_rebase_user_memslots(kvm, as_id, kvm_attach_hva, &attach);

	mmgrab(current->mm);
	WRITE_ONCE(kvm->mm, current->mm);
	/* KVM's own reference; detached_mm still holds the old mm's users. */
	mmdrop(old);
	kvm->owner_euid = current_euid();
	kvm->detached_mm = NULL;
	WRITE_ONCE(kvm->detached, false);

out_unlock:
	mutex_unlock(&kvm->slots_lock);
	kvm_unlock_all_vcpus(kvm);
out_unpause:
	/* vCPU tasks move to the new mm when they resume. */
	kvm_for_each_vcpu(i, vcpu, kvm)
		kvm_vcpu_async_unpause(vcpu);
out_unlock_kvm:
	mutex_unlock(&kvm->lock);
	if (!r)
		mmput(old);
out_free:
	kvfree(attach.slots);
	return r;
}
