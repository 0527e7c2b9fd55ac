// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO) file handlers.
//!
//! A file handler lets the files of one type be preserved across a kexec
//! live update: userspace puts a file in a LUO session, the handler saves its
//! state when the file is preserved and frozen, and recreates the file when
//! userspace retrieves it in the next kernel.
//!
//! C header: [`include/linux/liveupdate.h`](srctree/include/linux/liveupdate.h)

use crate::{
    bindings,
    error::{
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::File,
    prelude::*,
    str::CStr,
    sync::aref::ARef,
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// The arguments of one operation on a preserved file.
///
/// # Invariants
///
/// `raw` points to the `struct liveupdate_file_op_args` the LUO core passed
/// to the operation, valid for the duration of the call.
pub struct FileOpArgs<'a> {
    raw: &'a mut bindings::liveupdate_file_op_args,
}

impl<'a> FileOpArgs<'a> {
    /// The file the operation is about; [`None`] in [`FileHandler::retrieve`],
    /// and for files that were never retrieved in [`FileHandler::finish`].
    pub fn file(&self) -> Option<&File> {
        if self.raw.file.is_null() {
            return None;
        }
        // SAFETY: The LUO core holds a reference to the file for the whole
        // operation, so it outlives the returned borrow of `self`.
        Some(unsafe { File::from_raw_file(self.raw.file) })
    }

    /// The handle to the serialized state, as set by the previous operation.
    pub fn serialized_data(&self) -> u64 {
        self.raw.serialized_data
    }

    /// Sets the handle to the serialized state that LUO hands to the next
    /// operation, and across kexec to [`FileHandler::retrieve`].
    pub fn set_serialized_data(&mut self, data: u64) {
        self.raw.serialized_data = data;
    }

    /// In [`FileHandler::can_finish`] and [`FileHandler::finish`]: whether
    /// the file was retrieved (`Some(Ok(()))`), its retrieve failed
    /// (`Some(Err(_))`), or it was never attempted (`None`).
    pub fn retrieve_status(&self) -> Option<Result> {
        match self.raw.retrieve_status {
            0 => None,
            s if s > 0 => Some(Ok(())),
            s => Some(Err(Error::from_errno(s))),
        }
    }

    /// In [`FileHandler::retrieve`]: hands the recreated file to LUO, which
    /// returns it to userspace.
    pub fn set_file(&mut self, file: ARef<File>) {
        self.raw.file = ARef::into_raw(file).as_ptr().cast();
    }

    /// In [`FileHandler::preserve`]: the token of the first file preserved
    /// earlier in the same session for which `pred` is true.
    ///
    /// Returns `ENOENT` if there is none.
    pub fn find_outgoing(&mut self, pred: impl Fn(&File) -> bool) -> Result<u64> {
        let mut index = 0;
        loop {
            let mut file: *mut bindings::file = core::ptr::null_mut();
            let mut token = 0u64;
            // SAFETY: `self.raw` is valid by the type invariant, and `file`
            // and `token` are valid places to store the results.
            to_result(unsafe {
                bindings::liveupdate_get_file_outgoing(self.raw, index, &mut file, &mut token)
            })?;
            // SAFETY: The session holds a reference to the preserved file,
            // and the session is locked for the whole operation.
            if !file.is_null() && pred(unsafe { File::from_raw_file(file) }) {
                return Ok(token);
            }
            index = index.checked_add(1).ok_or(ENOENT)?;
        }
    }

    /// In [`FileHandler::retrieve`]: retrieves the file preserved under
    /// `token` in the same session (or returns it again, if it was
    /// retrieved already).
    pub fn file_incoming(&mut self, token: u64) -> Result<ARef<File>> {
        let mut file: *mut bindings::file = core::ptr::null_mut();
        // SAFETY: `self.raw` is valid by the type invariant and `file` is a
        // valid place to store the result.
        to_result(unsafe { bindings::liveupdate_get_file_incoming(self.raw, token, &mut file) })?;
        let file = NonNull::new(file).ok_or(EINVAL)?;
        // SAFETY: On success, the LUO core stored a file with a reference
        // that is now ours; `File` is a transparent wrapper of `struct file`.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }
}

/// The operations of a LUO file handler.
///
/// LUO calls them with the session locked: [`Self::preserve`] when userspace
/// adds a file to a session, [`Self::freeze`] inside `reboot()` just before
/// kexec (in the order the files were preserved; an error fails the reboot
/// and [`Self::unfreeze`] rolls back the files frozen before), and
/// [`Self::unpreserve`] when the session is closed before kexec.  In the next
/// kernel, [`Self::retrieve`] recreates a file and [`Self::finish`] ends its
/// life as a preserved file.
#[vtable]
pub trait FileHandler: Sync + 'static {
    /// The compatible string that names the handler and its format, at most
    /// `LIVEUPDATE_HNDL_COMPAT_LENGTH - 1` bytes.
    const COMPATIBLE: &'static CStr;

    /// Whether this handler preserves `file`.
    fn can_preserve(file: &File) -> bool;

    /// Saves what the next kernel needs; sets the serialized data handle.
    fn preserve(args: &mut FileOpArgs<'_>) -> Result;

    /// Undoes [`Self::preserve`].
    fn unpreserve(args: &mut FileOpArgs<'_>);

    /// Saves the final state just before kexec.
    fn freeze(_args: &mut FileOpArgs<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Undoes [`Self::freeze`] when the reboot fails.
    fn unfreeze(_args: &mut FileOpArgs<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Recreates the file in the next kernel with [`FileOpArgs::set_file`].
    fn retrieve(args: &mut FileOpArgs<'_>) -> Result;

    /// Whether the file may finish now.
    fn can_finish(_args: &mut FileOpArgs<'_>) -> bool {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Releases what the previous kernel preserved for the file.
    fn finish(args: &mut FileOpArgs<'_>);
}

struct Adapter<T>(PhantomData<T>);

impl<T: FileHandler> Adapter<T> {
    /// # Safety
    ///
    /// `args` must point to valid operation arguments for the whole call.
    unsafe fn args<'a>(args: *mut bindings::liveupdate_file_op_args) -> FileOpArgs<'a> {
        // SAFETY: The caller guarantees that `args` is valid and not aliased
        // for the duration of the call.
        let raw = unsafe { &mut *args };
        // INVARIANT: The caller guarantees that `args` is valid for the call.
        FileOpArgs { raw }
    }

    /// # Safety
    ///
    /// `file` must be a valid file for the whole call, as LUO passes it.
    unsafe extern "C" fn can_preserve(
        _handler: *mut bindings::liveupdate_file_handler,
        file: *mut bindings::file,
    ) -> bool {
        // SAFETY: LUO holds a reference to `file` for the whole call.
        T::can_preserve(unsafe { File::from_raw_file(file) })
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes valid arguments for the whole call.
        let mut args = unsafe { Self::args(args) };
        from_result(|| T::preserve(&mut args).map(|()| 0))
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes valid arguments for the whole call.
        T::unpreserve(&mut unsafe { Self::args(args) })
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn freeze(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes valid arguments for the whole call.
        let mut args = unsafe { Self::args(args) };
        from_result(|| T::freeze(&mut args).map(|()| 0))
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn unfreeze(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes valid arguments for the whole call.
        T::unfreeze(&mut unsafe { Self::args(args) })
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes valid arguments for the whole call.
        let mut args = unsafe { Self::args(args) };
        from_result(|| T::retrieve(&mut args).map(|()| 0))
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn can_finish(args: *mut bindings::liveupdate_file_op_args) -> bool {
        // SAFETY: LUO passes valid arguments for the whole call.
        T::can_finish(&mut unsafe { Self::args(args) })
    }

    /// # Safety
    ///
    /// `args` must be valid operation arguments for the whole call, as LUO
    /// passes them.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes valid arguments for the whole call.
        T::finish(&mut unsafe { Self::args(args) })
    }

    fn ops(owner: *mut bindings::module) -> bindings::liveupdate_file_ops {
        bindings::liveupdate_file_ops {
            can_preserve: Some(Self::can_preserve),
            preserve: Some(Self::preserve),
            unpreserve: Some(Self::unpreserve),
            freeze: if T::HAS_FREEZE {
                Some(Self::freeze)
            } else {
                None
            },
            unfreeze: if T::HAS_UNFREEZE {
                Some(Self::unfreeze)
            } else {
                None
            },
            retrieve: Some(Self::retrieve),
            can_finish: if T::HAS_CAN_FINISH {
                Some(Self::can_finish)
            } else {
                None
            },
            finish: Some(Self::finish),
            get_id: None,
            owner,
        }
    }
}

/// A registered LUO file handler; unregistered when dropped.
///
/// # Invariants
///
/// `handler` is registered with the LUO core and its `ops` points to `ops`.
#[pin_data(PinnedDrop)]
pub struct Registration<T: FileHandler> {
    #[pin]
    ops: Opaque<bindings::liveupdate_file_ops>,
    #[pin]
    handler: Opaque<bindings::liveupdate_file_handler>,
    _t: PhantomData<T>,
}

// SAFETY: The registration only hands its fields to the LUO core, which
// serializes access to them; `T` is `Sync`.
unsafe impl<T: FileHandler> Send for Registration<T> {}

// SAFETY: `&Registration` allows no access to the fields.
unsafe impl<T: FileHandler> Sync for Registration<T> {}

impl<T: FileHandler> Registration<T> {
    /// Registers the file handler `T` with the LUO core.
    ///
    /// Fails with `EOPNOTSUPP` if live update is disabled, and with `EEXIST`
    /// if a handler with the same compatible string is registered.
    pub fn register() -> impl PinInit<Self, Error> {
        // SAFETY: The module that defines `T` is loaded for as long as
        // anything it registers lives.
        unsafe { Self::register_for(crate::module::this_module::<T::OwnerModule>()) }
    }

    /// Registers the file handler `T` with the LUO core on behalf of
    /// `owner`, which the LUO core pins while it holds a file of `T`: from
    /// preserve to unpreserve or finish, and from the file's deserialization
    /// in the next kernel to its finish.  For code linked into a module other
    /// than the one that calls it, such as KVM's handlers, which live as long
    /// as the vendor module that initialized KVM.
    ///
    /// # Safety
    ///
    /// `owner` must stay loaded for as long as the registration lives.
    pub unsafe fn register_for(owner: &ThisModule) -> impl PinInit<Self, Error> {
        let owner = owner.as_ptr();
        try_pin_init!(Self {
            ops: Opaque::new(Adapter::<T>::ops(owner)),
            handler <- Opaque::try_ffi_init(move |slot: *mut bindings::liveupdate_file_handler| {
                let compat = T::COMPATIBLE.to_bytes_with_nul();
                if compat.len() > bindings::LIVEUPDATE_HNDL_COMPAT_LENGTH as usize {
                    return Err(EINVAL);
                }
                // SAFETY: `slot` is valid for writes of a whole handler, and
                // all-zeroes is a valid (unregistered) handler.
                unsafe { slot.write_bytes(0, 1) };
                // SAFETY: `slot` is valid, and the compatible field has room
                // for `compat`, checked above.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        compat.as_ptr(),
                        (&raw mut (*slot).compatible).cast::<u8>(),
                        compat.len(),
                    )
                };
                // SAFETY: `slot` is the `handler` field of the `Self` being
                // initialized, so stepping back to the start of `Self` and on to
                // its `ops` field (initialized first) stays within `Self`.
                let ops = unsafe {
                    slot.cast::<u8>()
                        .sub(core::mem::offset_of!(Self, handler))
                        .add(core::mem::offset_of!(Self, ops))
                        .cast::<bindings::liveupdate_file_ops>()
                };
                // SAFETY: `slot` is valid for writes.
                unsafe { (*slot).ops = ops };
                // SAFETY: `slot` is a fully initialized handler that stays
                // pinned until `PinnedDrop` unregisters it.
                to_result(unsafe { bindings::liveupdate_register_file_handler(slot) })
            }),
            _t: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: FileHandler> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant, `handler` is registered.
        unsafe { bindings::liveupdate_unregister_file_handler(self.handler.get()) };
    }
}
