// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory preserved for the next kernel.
//!
//! Memory allocated with [`PreservedMem::alloc`] survives a kexec in place:
//! the next kernel finds it by its physical address and takes it back with
//! [`RestoredMem::restore`].  A [`PreservedMem`] that is dropped stops being
//! preserved and is freed, unless it was handed over with
//! [`PreservedMem::into_phys`].
//!
//! C header: [`include/linux/kexec_handover.h`](srctree/include/linux/kexec_handover.h)

use crate::{
    bindings,
    prelude::*, //
};
use core::ptr::NonNull;

/// Zeroed memory preserved across kexec, from `kho_alloc_preserve()`.
///
/// # Invariants
///
/// `ptr` was returned by `kho_alloc_preserve(len)` and is still preserved;
/// it is valid for reads and writes of `len` bytes and owned by `self`.
pub struct PreservedMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The memory is owned by `PreservedMem`; nothing ties it to a thread.
unsafe impl Send for PreservedMem {}

// SAFETY: `&PreservedMem` only allows reads.
unsafe impl Sync for PreservedMem {}

impl PreservedMem {
    /// Allocates `len` zeroed bytes (at most `4 << MAX_PAGE_ORDER` pages)
    /// and preserves them for the next kernel.
    pub fn alloc(len: usize) -> Result<Self> {
        // SAFETY: `kho_alloc_preserve()` may be called with any size.
        let ptr = unsafe { bindings::kho_alloc_preserve(len) };
        let ptr = crate::error::from_err_ptr(ptr)?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `kho_alloc_preserve()` returned `len` preserved bytes.
        Ok(Self { ptr, len })
    }

    /// Takes back memory that [`Self::into_phys`] handed over, before kexec.
    ///
    /// # Safety
    ///
    /// `phys` must come from [`Self::into_phys`] in this kernel, and be
    /// taken back only once.
    pub unsafe fn from_phys(phys: u64) -> Self {
        // SAFETY: By the safety requirements, `phys` is the address of a
        // folio from `kho_alloc_preserve()`, in the direct map.
        let ptr = unsafe { bindings::phys_to_virt(phys) };
        // SAFETY: As above; the folio is ours until dropped.
        let len = unsafe { bindings::folio_size(bindings::virt_to_folio(ptr)) };
        // INVARIANT: By the safety requirements, the memory is preserved,
        // `len` bytes long (all of its folio), and now owned by the result.
        Self {
            // SAFETY: Memory of the direct map is never at address zero.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast::<u8>()) },
            len,
        }
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the size is zero (never, for an allocated area).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory, for writing what the next kernel reads.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: By the type invariant, `ptr` is valid for `len` bytes and
        // owned by `self`, which is borrowed mutably.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Hands the memory over: it stays preserved, and its physical address
    /// is what the next kernel passes to [`RestoredMem::restore`].
    pub fn into_phys(self) -> u64 {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `ptr` is in the direct map (`kho_alloc_preserve()` returns
        // folio addresses).
        unsafe { bindings::virt_to_phys(this.ptr.as_ptr().cast()) }
    }
}

impl Drop for PreservedMem {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `ptr` came from
        // `kho_alloc_preserve()` and is owned by `self`.
        unsafe { bindings::kho_unpreserve_free(self.ptr.as_ptr().cast()) };
    }
}

/// Memory that the previous kernel preserved, taken back in this kernel and
/// freed when dropped.
///
/// # Invariants
///
/// `folio` is a folio restored with `kho_restore_folio()`, with a reference
/// owned by `self`.
pub struct RestoredMem {
    folio: NonNull<bindings::folio>,
}

impl RestoredMem {
    /// Takes back the memory the previous kernel preserved at `phys`.
    ///
    /// Fails with `EINVAL` if nothing was preserved there.
    ///
    /// # Safety
    ///
    /// `phys` must be the address of memory that the previous kernel
    /// allocated with [`PreservedMem::alloc`] and handed over, and no other
    /// code of this kernel may restore it.
    pub unsafe fn restore(phys: u64) -> Result<Self> {
        // SAFETY: `kho_restore_folio()` checks that a folio was preserved at
        // `phys` and returns NULL otherwise.
        let folio = unsafe { bindings::kho_restore_folio(phys) };
        let folio = NonNull::new(folio).ok_or(EINVAL)?;
        // INVARIANT: The folio was restored and its reference is ours.
        Ok(Self { folio })
    }

    /// The restored bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: By the type invariant, the folio is ours and mapped in the
        // direct map for `folio_size()` bytes.
        unsafe {
            let folio = self.folio.as_ptr();
            core::slice::from_raw_parts(
                bindings::folio_address(folio).cast::<u8>(),
                bindings::folio_size(folio),
            )
        }
    }

    /// The restored bytes, to be changed in place (for example by tests that
    /// corrupt them on purpose).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: As in `as_slice()`, and `self` is borrowed mutably.
        unsafe {
            let folio = self.folio.as_ptr();
            core::slice::from_raw_parts_mut(
                bindings::folio_address(folio).cast::<u8>(),
                bindings::folio_size(folio),
            )
        }
    }
}

impl Drop for RestoredMem {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the reference is ours to drop.
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}
