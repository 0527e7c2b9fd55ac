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

#include <linux/cgroup.h>
#include <linux/cred.h>
#include <linux/kvm_host.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/user_namespace.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "kvm_mm.h"

int kvm_vm_ioctl_detach(struct kvm *kvm, void __user *argp)
{
	struct pid *successor = NULL;
	unsigned long *locked = NULL;
	struct ucounts *ucounts;
	unsigned int pidfd_flags;
	struct kvm_vm_detach arg;
	struct kvm_vcpu *vcpu;
	unsigned long i;
	int nr, r;

	if (copy_from_user(&arg, argp, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~KVM_VM_DETACH_SUCCESSOR) ||
	    memchr_inv(arg.reserved, 0, sizeof(arg.reserved)))
		return -EINVAL;
	if (arg.flags & KVM_VM_DETACH_SUCCESSOR) {
		if (arg.successor_pidfd < 0)
			return -EBADF;
		successor = pidfd_get_pid(arg.successor_pidfd, &pidfd_flags);
		if (IS_ERR(successor))
			return PTR_ERR(successor);
	} else if (arg.successor_pidfd) {
		return -EINVAL;
	}

	/*
	 * A detached VM keeps its VMM's address space, and the memory charged
	 * to it, alive after the VMM exits: count detached VMs per user, as
	 * namespaces are, against user.max_kvm_detached_vms.
	 */
	ucounts = inc_ucount(current_user_ns(), current_euid(), UCOUNT_KVM_DETACHED_VMS);
	if (!ucounts) {
		put_pid(successor);
		pr_warn_ratelimited("kvm: pid %d: too many detached VMs (user.max_kvm_detached_vms)\n",
				    task_pid_nr(current));
		return -ENOSPC;
	}

	mutex_lock(&kvm->lock);
	/*
	 * The caller was the VMM when the ioctl began; it may have waited
	 * since, and another thread detached, or another VMM attached.
	 */
	r = -EIO;
	if (kvm->detached || kvm->mm != current->mm)
		goto out_unlock;

	nr = atomic_read(&kvm->online_vcpus);
	r = -ENOMEM;
	locked = bitmap_zalloc(nr, GFP_KERNEL_ACCOUNT);
	if (!locked)
		goto out_unlock;

	/*
	 * A VMM thread in KVM_RUN would go on running the vCPU in this mm
	 * after another VMM attached: refuse while one is in any vCPU ioctl.
	 * A vCPU with its own task runs without the VMM.
	 */
	r = 0;
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
		/* Who may attach, decided now by the VMM that lets go. */
		kvm->successor = successor;
		successor = NULL;
		kvm->detach_euid = current_euid();
		kvm->detached_ucounts = ucounts;
		ucounts = NULL;
		WRITE_ONCE(kvm->detached, true);
	}
	for_each_set_bit(i, locked, nr)
		mutex_unlock(&kvm_get_vcpu(kvm, i)->mutex);
out_unlock:
	mutex_unlock(&kvm->lock);
	if (r)
		goto out;

	/*
	 * VM and device ioctls that passed the owner check before must be
	 * done before anyone attaches, and none starts after this: wait for
	 * them outside kvm->lock, which they may take.  vCPU ioctls waiting
	 * for a vCPU's mutex see the VM detached when they get it.  Attach
	 * refuses with EAGAIN until the old mm is published, below.
	 */
	synchronize_srcu(&kvm->owner_srcu);

	/* Keep guest memory mapped when the VMM exits. */
	mutex_lock(&kvm->lock);
	mmget(kvm->mm);
	kvm->detached_mm = kvm->mm;
	mutex_unlock(&kvm->lock);

out:
	if (ucounts)
		dec_ucount(ucounts, UCOUNT_KVM_DETACHED_VMS);
	put_pid(successor);
	bitmap_free(locked);
	return r;
}

/* The VM is attached again, or its file is gone. */
void kvm_vm_detached_uncount(struct kvm *kvm)
{
	if (kvm->detached_ucounts) {
		dec_ucount(kvm->detached_ucounts, UCOUNT_KVM_DETACHED_VMS);
		kvm->detached_ucounts = NULL;
	}
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

/*
 * KVM maps guest memory with a huge page only where the slot's guest and
 * host addresses agree modulo the huge page size, which it records per slot
 * when the slot is created (x86: lpage_info).  The slots keep those
 * records, so where the old address agreed modulo a huge page size the new
 * one must agree with the old one modulo that size, or KVM could map a huge
 * page that is not the guest's.  Where the old address did not agree, or
 * the slot holds no whole huge page, KVM maps no huge page of that size in
 * the slot and any address will do.  Shared mappings of the same file get
 * the same THP placement from mmap(), so they usually agree.
 */
static bool kvm_attach_slot_may_be_huge(struct kvm_memory_slot *slot,
					unsigned long diff, unsigned long size)
{
	gfn_t n = size >> PAGE_SHIFT;

	/* Aligned alike, and at least one whole huge page in the slot. */
	return !(diff & (size - 1)) &&
	       ALIGN(slot->base_gfn, n) + n <= slot->base_gfn + slot->npages;
}

static bool kvm_attach_hva_congruent(struct kvm_memory_slot *slot,
				     unsigned long new_hva)
{
	unsigned long diff = (slot->base_gfn << PAGE_SHIFT) ^ slot->userspace_addr;
	unsigned long size;

	if (kvm_attach_slot_may_be_huge(slot, diff, PUD_SIZE))
		size = PUD_SIZE;
	else if (kvm_attach_slot_may_be_huge(slot, diff, PMD_SIZE))
		size = PMD_SIZE;
	else
		return true;

	return !((new_hva ^ slot->userspace_addr) & (size - 1));
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

	/* A range that wraps or leaves the user address space. */
	if (new_hva + size < new_hva || !access_ok((void __user *)new_hva, size))
		return -EINVAL;
	if (!kvm_attach_hva_congruent(slot, new_hva))
		return -EINVAL;

	r = kvm_attach_backing(old, slot->userspace_addr, size, &old_file, &old_off);
	/*
	 * A guest_memfd slot whose shared half was never mapped has nothing
	 * in the old mm; its new address only has to be a user address.
	 */
	if (r == -EFAULT && kvm_slot_has_gmem(slot))
		return 0;
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
 * Holding the VM's file is what lets a process name the VM at all.  What
 * attach grants on top is control of the vCPUs (the memory is already
 * mapped by whoever holds the memfds), so the VMM that lets go says who may
 * take over: the process it named at detach, and nobody else; or, if it
 * named none, a process with the euid it had when it detached, or one that
 * may act for any user.  A file that leaked to another user then gives no
 * control of the guest.
 */
static bool kvm_attach_permitted(struct kvm *kvm)
{
	if (kvm->successor)
		return task_tgid(current) == kvm->successor ||
		       task_pid(current) == kvm->successor;
	return uid_eq(current_euid(), kvm->detach_euid) || capable(CAP_SYS_ADMIN);
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

	r = kvm_attach_copy_slots(&attach, &arg);
	if (r)
		goto out_free;

	r = -EINTR;
	if (mutex_lock_killable(&kvm->lock))
		goto out_free;
	old = kvm->detached_mm;
	r = -EBUSY;
	if (!kvm->detached)
		goto out_unlock_kvm;
	/* Detach still waits for the ioctls the old VMM had in flight. */
	r = -EAGAIN;
	if (!old)
		goto out_unlock_kvm;
	/* Detach sets who may attach under kvm->lock. */
	r = -EPERM;
	if (!kvm_attach_permitted(kvm)) {
		if (kvm->successor)
			pr_warn_ratelimited("kvm: pid %d may not attach a VM handed to pid %d\n",
					    task_pid_nr(current), pid_nr(kvm->successor));
		else
			pr_warn_ratelimited("kvm: pid %d (euid %u) may not attach a VM detached by euid %u\n",
					    task_pid_nr(current),
					    from_kuid(&init_user_ns, current_euid()),
					    from_kuid(&init_user_ns, kvm->detach_euid));
		goto out_unlock_kvm;
	}

	/* Nothing may use guest memory through the old addresses meanwhile. */
	kvm_for_each_vcpu(i, vcpu, kvm) {
		r = kvm_vcpu_async_pause(vcpu);
		if (r)
			goto out_unpause;
	}
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
	put_pid(kvm->successor);
	kvm->successor = NULL;
	kvm_vm_detached_uncount(kvm);
	kvm->detached_mm = NULL;
	/*
	 * The vCPU tasks work for the new VMM now: charge its cgroups.  No
	 * ioctl can stop a task meanwhile: the VM stays detached until the
	 * end, and every vCPU is held.
	 */
	kvm_for_each_vcpu(i, vcpu, kvm) {
		struct task_struct *task = vcpu->async.task;

		kvm_vcpu_async_set_mm(vcpu, current->mm);
		if (task && cgroup_attach_task_all(current, task))
			pr_warn_ratelimited("kvm: vCPU %d's task stays in the cgroups of the last VMM\n",
					    vcpu->vcpu_id);
	}

out_unlock:
	mutex_unlock(&kvm->slots_lock);
	kvm_unlock_all_vcpus(kvm);
out_unpause:
	/* vCPU tasks move to the new mm, pinned above, when they resume. */
	kvm_for_each_vcpu(i, vcpu, kvm)
		kvm_vcpu_async_unpause(vcpu);
	/*
	 * Open the VM to its new VMM last, once nothing of the attach is left
	 * to undo.
	 */
	if (!r) {
		/* Pairs with kvm_is_owner(): attached, then the new mm. */
		smp_store_release(&kvm->detached, false);
	}
out_unlock_kvm:
	mutex_unlock(&kvm->lock);
	if (!r)
		mmput(old);
out_free:
	kvfree(attach.slots);
	return r;
}
