// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_RUN_ASYNC: run a vCPU in a kernel task of its own.
 *
 * The task runs the same loop as KVM_RUN (kvm_vcpu_run()) in the VM's mm.
 * When the vCPU needs userspace, the task parks it: the exit is in kvm_run
 * exactly as after KVM_RUN, the vCPU file polls readable, and the VMM
 * completes the exit and resumes the task with KVM_RUN_ASYNC.  While the
 * task runs the vCPU, every other vCPU ioctl fails with -EBUSY; the VMM
 * stops the task (KVM_RUN_ASYNC_STOP) to get the vCPU back.
 *
 * The task holds the VM's mm (mm_users), as anything that faults in user
 * memory must, and charges that mm's memory cgroup, but holds no reference
 * to the VM.  The VMM maps its vCPU files, so
 * that mm holds the VM: the tasks are stopped when the VM's file is released
 * (kvm_vm_async_release()), which breaks the cycle, and no task can start
 * after that.
 */

#include <linux/cgroup.h>
#include <linux/kthread.h>
#include <linux/kvm_host.h>
#include <linux/memcontrol.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>

void kvm_vcpu_async_init(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_async *async = &vcpu->async;

	mutex_init(&async->lock);
	init_waitqueue_head(&async->wq);
	async->state = KVM_RUN_ASYNC_STATE_SYNC;
}

static bool kvm_vcpu_async_runnable(struct kvm_vcpu_async *async)
{
	return READ_ONCE(async->state) == KVM_RUN_ASYNC_STATE_RUNNING;
}

/*
 * Work in @mm, for its memory cgroup.  A kernel thread charges its kernel
 * memory (KVM's MMU caches and page tables among it) to no memory cgroup,
 * even after cgroup_attach_task_all(): make the mm's the active one.
 */
static void kvm_vcpu_async_use_mm(struct kvm_vcpu_async *async)
{
	kthread_use_mm(async->mm);
	async->memcg = get_mem_cgroup_from_mm(async->mm);
	set_active_memcg(async->memcg);
}

static void kvm_vcpu_async_unuse_mm(struct kvm_vcpu_async *async)
{
	set_active_memcg(NULL);
	mem_cgroup_put(async->memcg);
	async->memcg = NULL;
	kthread_unuse_mm(async->mm);
}

/*
 * The VMM may have moved to another memory cgroup since: follow it.  A VMM
 * that exited leaves an mm with no owner, whose memcg reads as the root's:
 * keep the last one then.
 */
static void kvm_vcpu_async_refresh_memcg(struct kvm_vcpu_async *async)
{
	struct mem_cgroup *memcg;

	if (!rcu_access_pointer(async->mm->owner))
		return;
	memcg = get_mem_cgroup_from_mm(async->mm);
	if (memcg == async->memcg) {
		mem_cgroup_put(memcg);
		return;
	}
	set_active_memcg(memcg);
	mem_cgroup_put(async->memcg);
	async->memcg = memcg;
}

static int kvm_vcpu_async_fn(void *data)
{
	struct kvm_vcpu *vcpu = data;
	struct kvm_vcpu_async *async = &vcpu->async;
	int r;

	kvm_vcpu_async_use_mm(async);
	for (;;) {
		/*
		 * A resumed vCPU always runs, even when a stop is already
		 * pending: it completes the exit userspace handled and then
		 * exits with KVM_EXIT_INTR, as KVM_RUN does for a signal.
		 */
		wait_event_idle(async->wq,
				kvm_vcpu_async_runnable(async) || kthread_should_stop());
		if (!kvm_vcpu_async_runnable(async))
			break;
		kvm_vcpu_async_refresh_memcg(async);

		mutex_lock(&vcpu->mutex);
		r = kvm_vcpu_run(vcpu);
		/* A stop request is consumed by the exit it caused. */
		clear_notify_signal();
		async->result = r;
		WRITE_ONCE(async->state, KVM_RUN_ASYNC_STATE_PARKED);
		mutex_unlock(&vcpu->mutex);

		wake_up_poll(&async->wq, EPOLLIN | EPOLLRDNORM);
	}
	kvm_vcpu_async_unuse_mm(async);
	return 0;
}

static int kvm_vcpu_async_start(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_async *async = &vcpu->async;
	struct task_struct *task;
	int r;

	/* The VM's file is gone: nothing would stop the task. */
	if (READ_ONCE(vcpu->kvm->async_released))
		return -EIO;

	r = kvm_arch_vcpu_async_prepare(vcpu);
	if (r)
		return r;

	/* Wait for a KVM_RUN or another ioctl in progress to end. */
	if (mutex_lock_killable(&vcpu->mutex))
		return -EINTR;

	task = kthread_create(kvm_vcpu_async_fn, vcpu, "kvm-vcpu-%d/%d",
			      task_pid_nr(current), vcpu->vcpu_id);
	if (IS_ERR(task)) {
		r = PTR_ERR(task);
		goto out_unlock;
	}

	/*
	 * The task works for the VMM: charge its CPU time and memory to the
	 * VMM's cgroups, as the VMM's own vCPU threads would be.
	 */
	r = cgroup_attach_task_all(current, task);
	if (r) {
		kthread_stop(task);
		goto out_unlock;
	}

	/* kvm_vcpu_ioctl() checked that current->mm is the VM's mm. */
	mmget(current->mm);
	async->mm = current->mm;
	WRITE_ONCE(async->task, task);
	async->result = 0;
	WRITE_ONCE(async->state, KVM_RUN_ASYNC_STATE_RUNNING);
	wake_up_process(task);
out_unlock:
	mutex_unlock(&vcpu->mutex);
	return r;
}

static int kvm_vcpu_async_resume(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_async *async = &vcpu->async;

	/*
	 * Only the task leaves RUNNING, and only with async->lock held does
	 * anything enter it: a running vCPU is refused without waiting for
	 * the mutex that its task holds.
	 */
	if (kvm_vcpu_async_runnable(async))
		return -EBUSY;

	if (mutex_lock_killable(&vcpu->mutex))
		return -EINTR;
	WRITE_ONCE(async->state, KVM_RUN_ASYNC_STATE_RUNNING);
	mutex_unlock(&vcpu->mutex);

	wake_up(&async->wq);
	return 0;
}

/*
 * Make a running vCPU exit as it would for a signal: TIF_NOTIFY_SIGNAL ends a
 * blocked or polling halt and the loop in vcpu_run(), and the kick takes the
 * vCPU out of guest mode.  The task consumes the flag when it parks.
 */
static void kvm_vcpu_async_interrupt(struct kvm_vcpu *vcpu)
{
	set_notify_signal(vcpu->async.task);
	kvm_vcpu_kick(vcpu);
}

/* Called with async->lock held. */
static void __kvm_vcpu_async_stop(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_async *async = &vcpu->async;

	if (!async->task)
		return;

	kvm_vcpu_async_interrupt(vcpu);
	kthread_stop(async->task);
	WRITE_ONCE(async->task, NULL);

	mmput(async->mm);
	async->mm = NULL;
	WRITE_ONCE(async->state, KVM_RUN_ASYNC_STATE_SYNC);
	wake_up_poll(&async->wq, EPOLLIN | EPOLLRDNORM);
}

void kvm_vcpu_async_stop(struct kvm_vcpu *vcpu)
{
	mutex_lock(&vcpu->async.lock);
	__kvm_vcpu_async_stop(vcpu);
	mutex_unlock(&vcpu->async.lock);
}

/*
 * The last reference to the VM's file is gone.  The VMM's mappings of its
 * vCPU files hold the VM, and the vCPU tasks hold the VMM's mm: stop the
 * tasks, or neither the mm nor the VM would ever go away.  A task started
 * concurrently is stopped here too, since the flag is set before any
 * async->lock is taken.
 */
void kvm_vm_async_release(struct kvm *kvm)
{
	struct kvm_vcpu *vcpu;
	unsigned long i;

	WRITE_ONCE(kvm->async_released, true);
	kvm_for_each_vcpu(i, vcpu, kvm)
		kvm_vcpu_async_stop(vcpu);
}

/*
 * Whether the vCPU's task owns the vCPU as far as @ioctl is concerned: while
 * it runs the vCPU, for every ioctl; while it exists, for KVM_RUN.
 */
bool kvm_vcpu_async_owns(struct kvm_vcpu *vcpu, unsigned int ioctl)
{
	struct kvm_vcpu_async *async = &vcpu->async;

	if (kvm_vcpu_async_runnable(async))
		return true;

	return ioctl == KVM_RUN && READ_ONCE(async->task);
}

long kvm_vcpu_ioctl_run_async(struct kvm_vcpu *vcpu, void __user *argp)
{
	struct kvm_vcpu_async *async = &vcpu->async;
	struct kvm_run_async ra;
	int r, i;

	if (copy_from_user(&ra, argp, sizeof(ra)))
		return -EFAULT;

	if (ra.flags & ~KVM_RUN_ASYNC_VALID_FLAGS)
		return -EINVAL;
	if ((ra.flags & KVM_RUN_ASYNC_STOP) && (ra.flags & KVM_RUN_ASYNC_QUERY))
		return -EINVAL;
	if (ra.pad)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(ra.reserved); i++)
		if (ra.reserved[i])
			return -EINVAL;

	if (mutex_lock_killable(&async->lock))
		return -EINTR;

	if (ra.flags & KVM_RUN_ASYNC_STOP) {
		__kvm_vcpu_async_stop(vcpu);
		r = 0;
	} else if (ra.flags & KVM_RUN_ASYNC_QUERY) {
		r = 0;
	} else if (!async->task) {
		r = kvm_vcpu_async_start(vcpu);
	} else {
		r = kvm_vcpu_async_resume(vcpu);
	}

	/*
	 * Report the state this call left, and the result of the vCPU's last
	 * run, which is meaningful once it parked or stopped.
	 */
	ra.state = READ_ONCE(async->state);
	ra.result = READ_ONCE(async->result);
	mutex_unlock(&async->lock);

	if (!r && copy_to_user(argp, &ra, sizeof(ra)))
		r = -EFAULT;
	return r;
}

__poll_t kvm_vcpu_async_poll(struct kvm_vcpu *vcpu, struct file *file,
			     poll_table *wait)
{
	struct kvm_vcpu_async *async = &vcpu->async;

	poll_wait(file, &async->wq, wait);

	/* Readable whenever the VMM can use the vCPU: parked or synchronous. */
	if (kvm_vcpu_async_runnable(async))
		return 0;
	return EPOLLIN | EPOLLRDNORM;
}
