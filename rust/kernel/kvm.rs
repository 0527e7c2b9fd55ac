// SPDX-License-Identifier: GPL-2.0

//! KVM virtual machines and vCPUs, as much of them as live update needs.
//!
//! The state of a VM or vCPU is saved and restored one section of
//! `enum kvm_luo_vm_section` or `enum kvm_luo_vcpu_section` at a time,
//! through the same code as the ioctls that get and set it.
//!
//! C header: [`include/linux/kvm_luo.h`](srctree/include/linux/kvm_luo.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    prelude::*,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::Opaque, //
};
use core::ptr::NonNull;

/// A KVM virtual machine (`struct kvm`).
///
/// # Invariants
///
/// A `&Kvm` always points to a live `struct kvm` with a nonzero users count.
#[repr(transparent)]
pub struct Kvm(Opaque<bindings::kvm>);

// SAFETY: `kvm_get_kvm()` keeps the VM alive until the matching
// `kvm_put_kvm()`, and both may be called from any thread.
unsafe impl AlwaysRefCounted for Kvm {
    fn inc_ref(&self) {
        // SAFETY: By the type invariant, the users count is nonzero.
        unsafe { bindings::kvm_get_kvm(self.0.get()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns an increment; `Kvm` is transparent.
        unsafe { bindings::kvm_put_kvm(obj.cast().as_ptr()) };
    }
}

// SAFETY: KVM serializes its own state with its locks; a `Kvm` may be used
// and dropped from any thread.
unsafe impl Send for Kvm {}

// SAFETY: As for `Send`: every method may be called concurrently.
unsafe impl Sync for Kvm {}

/// Converts the return value of a save hook: a size or a negative errno.
fn to_size(r: c_int) -> Result<usize> {
    to_result(r)?;
    usize::try_from(r).map_err(|_| EINVAL)
}

/// Converts a buffer length to the `u32` the hooks take.
fn hook_len(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| E2BIG)
}

impl Kvm {
    /// The VM behind `file`, if `file` is a VM file.
    pub fn from_file(file: &File) -> Option<&Kvm> {
        // SAFETY: `file` is a valid file.
        let kvm = unsafe { bindings::kvm_vm_from_file(file.as_ptr()) };
        if kvm.is_null() {
            return None;
        }
        // SAFETY: The VM file holds a reference to the VM for as long as the
        // file lives, which is at least as long as `file` is borrowed.
        Some(unsafe { &*kvm.cast::<Kvm>() })
    }

    /// Creates a VM of `vm_type` owned by the calling process, opted in to
    /// live update, and returns its file.
    pub fn create_file(vm_type: u32) -> Result<ARef<File>> {
        // SAFETY: The hook may be called from any process context.
        let file = from_err_ptr(unsafe { bindings::kvm_vm_luo_create_file(vm_type) })?;
        let file = NonNull::new(file).ok_or(ENOMEM)?;
        // SAFETY: The hook returned a new file whose reference is ours.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    /// Creates the vCPU `id` in this VM and returns its file.
    pub fn create_vcpu_file(&self, id: u32) -> Result<ARef<File>> {
        // SAFETY: By the type invariant, the VM is live.
        let file = from_err_ptr(unsafe { bindings::kvm_vcpu_luo_create_file(self.0.get(), id) })?;
        let file = NonNull::new(file).ok_or(ENOMEM)?;
        // SAFETY: The hook returned a new file whose reference is ours.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    /// Whether the VMM opted in to live update (`KVM_CAP_VM_PRESERVE`).
    pub fn preserve_enabled(&self) -> bool {
        // SAFETY: By the type invariant, the VM is live.
        unsafe { bindings::kvm_vm_luo_enabled(self.0.get()) }
    }

    /// Whether this kind of VM can be preserved.
    pub fn check_preservable(&self) -> Result {
        // SAFETY: By the type invariant, the VM is live.
        to_result(unsafe { bindings::kvm_arch_vm_luo_check(self.0.get()) })
    }

    /// The type the VM was created with (`KVM_CREATE_VM`).
    pub fn vm_type(&self) -> u32 {
        // SAFETY: By the type invariant, the VM is live.
        unsafe { bindings::kvm_arch_vm_luo_type(self.0.get()) }
    }

    /// Saves VM state section `section` into `buf`, or with `None` returns
    /// the size it needs.  Returns the bytes written; 0 if the VM has no
    /// such state; `ENOENT` if `section` is unknown.
    pub fn save_section(&self, section: u32, buf: Option<&mut [u8]>) -> Result<usize> {
        let (ptr, len) = match buf {
            Some(b) => (b.as_mut_ptr().cast(), hook_len(b.len())?),
            None => (core::ptr::null_mut(), 0),
        };
        // SAFETY: The VM is live, and `ptr` is NULL or valid for `len` bytes.
        to_size(unsafe { bindings::kvm_arch_vm_luo_save(self.0.get(), section, ptr, len) })
    }

    /// Freezes the VM for a live update: its VM, device and vCPU ioctls
    /// fail with `EBUSY` and no vCPU runs, until the kexec or
    /// [`Kvm::thaw`].
    ///
    /// Fails with `EBUSY` if a vCPU is running, in `KVM_RUN` or in a
    /// `KVM_RUN_ASYNC` task that is not stopped.
    pub fn freeze(&self) -> Result {
        // SAFETY: By the type invariant, the VM is live.
        to_result(unsafe { bindings::kvm_vm_luo_freeze(self.0.get()) })
    }

    /// Undoes [`Kvm::freeze`].
    pub fn thaw(&self) {
        // SAFETY: By the type invariant, the VM is live.
        unsafe { bindings::kvm_vm_luo_thaw(self.0.get()) };
    }

    /// Marks the VM dead: every ioctl on it, its vCPUs and its devices fails
    /// with `EIO` from now on.  For a VM left in a state no VMM may use.
    pub fn kill(&self) {
        // SAFETY: By the type invariant, the VM is live.
        unsafe { bindings::kvm_vm_luo_kill(self.0.get()) };
    }

    /// Restores VM state section `section` from `buf`.
    pub fn restore_section(&self, section: u32, buf: &[u8]) -> Result {
        let len = hook_len(buf.len())?;
        // SAFETY: The VM is live and `buf` is valid for `len` bytes.
        to_result(unsafe {
            bindings::kvm_arch_vm_luo_restore(self.0.get(), section, buf.as_ptr().cast(), len)
        })
    }
}

/// A vCPU of a KVM virtual machine (`struct kvm_vcpu`).
///
/// A vCPU lives as long as its VM, so its references are references to the
/// VM.
///
/// # Invariants
///
/// A `&KvmVcpu` always points to a live `struct kvm_vcpu`, whose VM has a
/// nonzero users count.
#[repr(transparent)]
pub struct KvmVcpu(Opaque<bindings::kvm_vcpu>);

// SAFETY: A vCPU is freed only when its VM is destroyed, so a reference to
// the VM keeps the vCPU alive; `Kvm`'s refcount is thread safe.
unsafe impl AlwaysRefCounted for KvmVcpu {
    fn inc_ref(&self) {
        self.kvm().inc_ref();
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns an increment of the VM's users count, and
        // the vCPU (and so its VM pointer) is live until it is dropped.
        unsafe {
            let kvm = bindings::kvm_vcpu_luo_kvm(obj.cast().as_ptr());
            bindings::kvm_put_kvm(kvm);
        }
    }
}

// SAFETY: The vCPU's state is reached only under `vcpu->mutex`
// (`KvmVcpu::lock`); the vCPU may be used and dropped from any thread.
unsafe impl Send for KvmVcpu {}

// SAFETY: As for `Send`.
unsafe impl Sync for KvmVcpu {}

impl KvmVcpu {
    /// The vCPU behind `file`, if `file` is a vCPU file.
    pub fn from_file(file: &File) -> Option<&KvmVcpu> {
        // SAFETY: `file` is a valid file.
        let vcpu = unsafe { bindings::kvm_vcpu_from_file(file.as_ptr()) };
        if vcpu.is_null() {
            return None;
        }
        // SAFETY: The vCPU file holds a reference to the VM, which keeps the
        // vCPU alive, for as long as `file` is borrowed.
        Some(unsafe { &*vcpu.cast::<KvmVcpu>() })
    }

    /// The vCPU's VM.
    pub fn kvm(&self) -> &Kvm {
        // SAFETY: By the type invariant, the vCPU is live; its VM outlives it.
        unsafe { &*bindings::kvm_vcpu_luo_kvm(self.0.get()).cast::<Kvm>() }
    }

    /// The vCPU's id (`KVM_CREATE_VCPU`).
    pub fn id(&self) -> u32 {
        // SAFETY: By the type invariant, the vCPU is live.
        unsafe { bindings::kvm_vcpu_luo_id(self.0.get()) }
    }

    /// Holds the vCPU still for its state to be saved or restored.
    ///
    /// Fails with `EBUSY` if the vCPU is running, in `KVM_RUN` or in a
    /// `KVM_RUN_ASYNC` task that is not stopped.
    pub fn lock(&self) -> Result<VcpuGuard<'_>> {
        // SAFETY: By the type invariant, the vCPU is live.
        to_result(unsafe { bindings::kvm_vcpu_luo_lock(self.0.get()) })?;
        // INVARIANT: `kvm_vcpu_luo_lock()` succeeded.
        Ok(VcpuGuard { vcpu: self })
    }

    /// Holds the vCPU of a VM frozen by [`Kvm::freeze`] for its state to be
    /// saved, waiting for a vCPU ioctl that is about to fail.
    ///
    /// Fails with `EBUSY` if the VM is not frozen, `EINTR` on a fatal
    /// signal.
    pub fn lock_frozen(&self) -> Result<VcpuGuard<'_>> {
        // SAFETY: By the type invariant, the vCPU is live.
        to_result(unsafe { bindings::kvm_vcpu_luo_lock_frozen(self.0.get()) })?;
        // INVARIANT: `kvm_vcpu_luo_lock_frozen()` succeeded, which takes the
        // same lock as `kvm_vcpu_luo_lock()`.
        Ok(VcpuGuard { vcpu: self })
    }
}

/// A vCPU held still by [`KvmVcpu::lock`] or [`KvmVcpu::lock_frozen`];
/// released when dropped.
///
/// # Invariants
///
/// `vcpu` is locked with `kvm_vcpu_luo_lock()` or
/// `kvm_vcpu_luo_lock_frozen()`.
pub struct VcpuGuard<'a> {
    vcpu: &'a KvmVcpu,
}

impl VcpuGuard<'_> {
    /// Saves vCPU state section `section` into `buf`, or with `None` returns
    /// the size it needs.  Returns the bytes written; 0 if the vCPU has no
    /// such state; `ENOENT` if `section` is unknown.
    pub fn save_section(&self, section: u32, buf: Option<&mut [u8]>) -> Result<usize> {
        let (ptr, len) = match buf {
            Some(b) => (b.as_mut_ptr().cast(), hook_len(b.len())?),
            None => (core::ptr::null_mut(), 0),
        };
        // SAFETY: The vCPU is live and locked, and `ptr` is NULL or valid for
        // `len` bytes.
        to_size(unsafe { bindings::kvm_arch_vcpu_luo_save(self.vcpu.0.get(), section, ptr, len) })
    }

    /// Restores vCPU state section `section` from `buf`.
    pub fn restore_section(&self, section: u32, buf: &[u8]) -> Result {
        let len = hook_len(buf.len())?;
        // SAFETY: The vCPU is live and locked, and `buf` is valid for `len`
        // bytes.
        to_result(unsafe {
            bindings::kvm_arch_vcpu_luo_restore(
                self.vcpu.0.get(),
                section,
                buf.as_ptr().cast(),
                len,
            )
        })
    }
}

impl Drop for VcpuGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the vCPU is locked.
        unsafe { bindings::kvm_vcpu_luo_unlock(self.vcpu.0.get()) };
    }
}

/// A test-only fault to apply to the next retrieved VM or vCPU
/// (`kvm.luo_fault`, with `CONFIG_KVM_LUO_FAULT_INJECT`): 0 for none.
pub fn take_test_fault() -> i32 {
    // SAFETY: The hook may be called from any context.
    unsafe { bindings::kvm_luo_take_fault() }
}

/// The VM state sections of this architecture, in restore order.
pub fn vm_sections() -> core::ops::Range<u32> {
    1..bindings::kvm_luo_vm_section_KVM_LUO_VM_NR_SECTIONS
}

/// The vCPU section that records which CPU features the saving KVM could
/// give a guest (`struct kvm_luo_cpu_cap[]`).
pub const VCPU_SECTION_CPU_CAPS: u32 = bindings::kvm_luo_vcpu_section_KVM_LUO_VCPU_CPU_CAPS;

/// The vCPU section of the CPUID entries (`struct kvm_cpuid_entry2[]`).
pub const VCPU_SECTION_CPUID: u32 = bindings::kvm_luo_vcpu_section_KVM_LUO_VCPU_CPUID;

/// The vCPU section of the events (`struct kvm_vcpu_events`).
pub const VCPU_SECTION_EVENTS: u32 = bindings::kvm_luo_vcpu_section_KVM_LUO_VCPU_EVENTS;

/// The vCPU section of the nested state (`struct kvm_nested_state`).
pub const VCPU_SECTION_NESTED: u32 = bindings::kvm_luo_vcpu_section_KVM_LUO_VCPU_NESTED;

/// The VM section of the capabilities (`struct kvm_enable_cap[]`).
pub const VM_SECTION_CAPS: u32 = bindings::kvm_luo_vm_section_KVM_LUO_VM_CAPS;

/// The CPUID leaf of KVM's paravirtual features, at its default base.
pub const CPUID_KVM_FEATURES: u32 = 0x4000_0001;

/// The vCPU state sections of this architecture, in restore order.
pub fn vcpu_sections() -> core::ops::Range<u32> {
    1..bindings::kvm_luo_vcpu_section_KVM_LUO_VCPU_NR_SECTIONS
}
