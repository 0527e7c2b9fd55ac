// SPDX-License-Identifier: GPL-2.0

//! Live update of KVM VMs: LUO file handlers for VM and vCPU files.
//!
//! A VMM that enabled `KVM_CAP_VM_PRESERVE` puts its guest memory memfds,
//! then its VM file, then its vCPU files in a LUO session.  The state of the
//! VM and of each vCPU goes to KHO memory in the format of [`format`]; the
//! next kernel recreates both in the process that retrieves them.  See
//! Documentation/virt/kvm/live-update.rst.

use core::sync::atomic::{
    AtomicPtr,
    Ordering, //
};
use kernel::{
    liveupdate::Registration,
    prelude::*,
    ModuleMetadata,
    ThisModule, //
};

mod format;
mod state;

#[pin_data]
struct Handlers {
    #[pin]
    vm: Registration<state::VmHandler>,
    #[pin]
    vcpu: Registration<state::VcpuHandler>,
}

static HANDLERS: AtomicPtr<Handlers> = AtomicPtr::new(core::ptr::null_mut());

const __LOG_PREFIX: &[u8] = b"kvm\0";

/// The module this code is linked into: KVM, built in (KVM_LUO depends on
/// KVM=y).  The handlers are registered on behalf of the vendor module that
/// initializes KVM instead, see [`kvm_luo_init`].
struct LocalModule;

impl ModuleMetadata for LocalModule {
    const NAME: &'static CStr = c"kvm";

    // SAFETY: KVM_LUO is built in, and THIS_MODULE of built-in code is NULL.
    const THIS_MODULE: ThisModule = unsafe { ThisModule::from_ptr(core::ptr::null_mut()) };
}

/// Registers the handlers; called by `kvm_init()` with the vendor module
/// that initializes KVM (`NULL` when built in), which owns them: the LUO
/// core pins it while it holds a VM or vCPU file, so that the module, and
/// the handlers with it, cannot go while a preserved or deserialized VM
/// waits.  Live update being disabled is not an error: VMs are then not
/// preservable.
#[no_mangle]
pub extern "C" fn kvm_luo_init(module: *mut kernel::bindings::module) -> c_int {
    // SAFETY: `module` is NULL or the module that called `kvm_init()`, which
    // calls `kvm_exit()`, and so `kvm_luo_exit()`, before it unloads.
    let owner = unsafe { ThisModule::from_ptr(module) };
    // SAFETY: The registrations are dropped in `kvm_luo_exit()`, before the
    // owner unloads (see above).
    let vm = unsafe { Registration::register_for(&owner) };
    // SAFETY: As for `vm`.
    let vcpu = unsafe { Registration::register_for(&owner) };
    let handlers = KBox::try_pin_init(
        try_pin_init!(Handlers {
            vm <- vm,
            vcpu <- vcpu,
        }),
        GFP_KERNEL,
    );
    match handlers {
        Ok(h) => {
            // SAFETY: The handlers stay pinned until `kvm_luo_exit()` turns
            // the pointer back into the pinned box.
            let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(h) });
            HANDLERS.store(raw, Ordering::Release);
        }
        Err(e) if e == EOPNOTSUPP => {}
        Err(e) => pr_warn!("live update handlers not registered: {:?}\n", e),
    }
    0
}

/// Unregisters the handlers; called by `kvm_exit()`.
#[no_mangle]
pub extern "C" fn kvm_luo_exit() {
    let raw = HANDLERS.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !raw.is_null() {
        // SAFETY: `raw` came from `KBox::into_raw()` in `kvm_luo_init()` and
        // is dropped only here, once, in its place.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
    }
}
