// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory preserved for the next kernel.
//!
//! Memory allocated with [`PreservedMem::alloc`] survives a kexec in place:
//! the next kernel finds it by its physical address and takes it back with
//! [`RestoredMem::restore`].  A [`PreservedMem`] that is dropped stops being
//! preserved and is freed, unless it was handed over with
//! [`PreservedMem::into_phys`].
//!
//! An area that need not be physically contiguous is a vmalloc area:
//! [`PreservedVmalloc`], handed over as the physical address of a small
//! [`PreservedMem`] that describes it, and taken back with
//! [`RestoredVmalloc::restore`].
//!
//! C header: [`include/linux/kexec_handover.h`](srctree/include/linux/kexec_handover.h)

use crate::{
    alloc::{
        allocator::Vmalloc,
        flags::{
            __GFP_ZERO, //
            GFP_KERNEL,
        },
        Allocator,
        NumaNode, //
    },
    bindings,
    page::{
        page_align,
        PAGE_SIZE, //
    },
    prelude::*, //
};
use core::{
    alloc::Layout,
    ptr::NonNull, //
};

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

/// What describes a preserved vmalloc area, in the [`PreservedMem`] whose
/// address is handed over.
#[repr(C)]
#[derive(Clone, Copy)]
struct VmallocHeader {
    /// `struct kho_vmalloc`, for `kho_restore_vmalloc()`.
    desc: bindings::kho_vmalloc,
    /// The size of the area in bytes, a multiple of `PAGE_SIZE`.
    len: u64,
    /// The area's address in the kernel that preserved it.
    vaddr: u64,
}

/// Reads the header at the start of `mem`.
fn read_header(mem: &[u8]) -> Result<VmallocHeader> {
    let bytes = mem.get(..size_of::<VmallocHeader>()).ok_or(EINVAL)?;
    // SAFETY: `bytes` holds `size_of::<VmallocHeader>()` bytes, and every bit
    // pattern is a valid `VmallocHeader` (integers and a `u64` pointer).
    Ok(unsafe { bytes.as_ptr().cast::<VmallocHeader>().read_unaligned() })
}

/// Zeroed vmalloc memory preserved across kexec, with the [`PreservedMem`]
/// that describes it to the next kernel.
///
/// # Invariants
///
/// `ptr` is a vmalloc area of `len` bytes (a multiple of `PAGE_SIZE`),
/// allocated by [`Vmalloc`], preserved with `kho_preserve_vmalloc()` into
/// `desc`, and owned by `self`; `header` starts with a [`VmallocHeader`]
/// of `ptr`, `len` and `desc`.
pub struct PreservedVmalloc {
    ptr: NonNull<u8>,
    len: usize,
    desc: bindings::kho_vmalloc,
    header: PreservedMem,
}

// SAFETY: The memory is owned by `PreservedVmalloc`; nothing ties it to a
// thread.
unsafe impl Send for PreservedVmalloc {}

// SAFETY: `&PreservedVmalloc` only allows reads.
unsafe impl Sync for PreservedVmalloc {}

impl PreservedVmalloc {
    fn layout(len: usize) -> Result<Layout> {
        Layout::from_size_align(len, PAGE_SIZE).map_err(|_| EINVAL)
    }

    /// Allocates at least `len` zeroed bytes, page by page, and preserves
    /// them for the next kernel.
    pub fn alloc(len: usize) -> Result<Self> {
        let mut header = PreservedMem::alloc(size_of::<VmallocHeader>())?;
        let len = page_align(len.max(1)).ok_or(EINVAL)?;
        let layout = Self::layout(len)?;
        let ptr = Vmalloc::alloc(layout, GFP_KERNEL | __GFP_ZERO, NumaNode::NO_NODE)?;
        let ptr = ptr.cast::<u8>();
        // SAFETY: An all-zero `struct kho_vmalloc` is a valid empty one.
        let mut desc: bindings::kho_vmalloc = unsafe { core::mem::zeroed() };
        // SAFETY: `ptr` is the start of a vmalloc area, and `desc` is valid
        // for writes.
        let r = unsafe { bindings::kho_preserve_vmalloc(ptr.as_ptr().cast(), &mut desc) };
        if r != 0 {
            // SAFETY: `ptr` was allocated above with `layout` and is unused.
            unsafe { Vmalloc::free(ptr, layout) };
            return Err(Error::from_errno(r));
        }
        let fields = VmallocHeader {
            desc,
            len: len as u64,
            vaddr: ptr.as_ptr() as u64,
        };
        let dst = header.as_mut_slice();
        if dst.len() < size_of::<VmallocHeader>() {
            // SAFETY: `desc` describes the area preserved above.
            unsafe { bindings::kho_unpreserve_vmalloc(&mut desc) };
            // SAFETY: `ptr` was allocated above with `layout` and is unused.
            unsafe { Vmalloc::free(ptr, layout) };
            return Err(ENOMEM);
        }
        // SAFETY: `dst` is valid for writes of `size_of::<VmallocHeader>()`
        // bytes, checked above.
        unsafe {
            dst.as_mut_ptr()
                .cast::<VmallocHeader>()
                .write_unaligned(fields)
        };
        // INVARIANT: `ptr` is a `len`-byte vmalloc area, preserved into
        // `desc`, and `header` describes it.
        Ok(Self {
            ptr,
            len,
            desc,
            header,
        })
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

    /// Hands the area over: it stays preserved, and the physical address of
    /// its description is what the next kernel passes to
    /// [`RestoredVmalloc::restore`].
    pub fn into_phys(self) -> u64 {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `header` is moved out once.
        let header = unsafe { core::ptr::read(&this.header) };
        header.into_phys()
    }

    /// Takes back an area that [`Self::into_phys`] handed over, before kexec.
    ///
    /// # Safety
    ///
    /// `phys` must come from [`Self::into_phys`] in this kernel, and be
    /// taken back only once.
    pub unsafe fn from_phys(phys: u64) -> Result<Self> {
        // SAFETY: By the safety requirements, `phys` came from
        // `PreservedMem::into_phys()` here and is taken back once.
        // On failure, the header stays preserved: nothing is taken back.
        let mut header = core::mem::ManuallyDrop::new(unsafe { PreservedMem::from_phys(phys) });
        let fields = read_header(header.as_mut_slice())?;
        let len = usize::try_from(fields.len).map_err(|_| EINVAL)?;
        let ptr = NonNull::new(fields.vaddr as *mut u8).ok_or(EINVAL)?;
        // INVARIANT: By the safety requirements, `header` describes the area
        // that `into_phys` handed over, which is now owned again.
        Ok(Self {
            ptr,
            len,
            desc: fields.desc,
            header: core::mem::ManuallyDrop::into_inner(header),
        })
    }
}

impl Drop for PreservedVmalloc {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the area is preserved into `desc`.
        unsafe { bindings::kho_unpreserve_vmalloc(&mut self.desc) };
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: By the type invariant, `ptr` was allocated by
            // `Vmalloc` with this layout and is owned by `self`.
            unsafe { Vmalloc::free(self.ptr, layout) };
        }
        // `header` is dropped next, which frees it.
    }
}

/// A vmalloc area that the previous kernel preserved, taken back in this
/// kernel and freed when dropped.
///
/// # Invariants
///
/// `ptr` was returned by `kho_restore_vmalloc()` for an area of at least
/// `len` bytes, and is owned by `self`.
pub struct RestoredVmalloc {
    ptr: NonNull<u8>,
    len: usize,
}

impl RestoredVmalloc {
    /// Takes back the area whose description the previous kernel preserved
    /// at `phys`, and frees the description.
    ///
    /// Fails with `EINVAL` if nothing was preserved there, and with `ENOMEM`
    /// if the area cannot be mapped again.
    ///
    /// # Safety
    ///
    /// `phys` must be the address that [`PreservedVmalloc::into_phys`]
    /// returned in the previous kernel, and no other code of this kernel may
    /// restore it.
    pub unsafe fn restore(phys: u64) -> Result<Self> {
        // SAFETY: By the safety requirements, `phys` is a `PreservedMem`
        // handed over by the previous kernel, restored only here.
        let header = read_header(unsafe { RestoredMem::restore(phys) }?.as_slice())?;
        let len = usize::try_from(header.len).map_err(|_| EINVAL)?;
        let pages = usize::try_from(header.desc.total_pages).map_err(|_| EINVAL)?;
        if pages.checked_mul(PAGE_SIZE) != Some(len) {
            return Err(EINVAL);
        }
        // SAFETY: `header.desc` is the description that
        // `kho_preserve_vmalloc()` wrote in the previous kernel, which is
        // trusted like all KHO metadata (its chunks are followed before they
        // are checked).  On failure the area's pages are lost: a retrieve
        // is not retried.
        let ptr = unsafe { bindings::kho_restore_vmalloc(&header.desc) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: The area is `total_pages` pages, `len` bytes, and ours.
        Ok(Self { ptr, len })
    }

    /// The restored bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: By the type invariant, `ptr` is valid for `len` bytes.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The restored bytes, to be changed in place (for example by tests that
    /// corrupt them on purpose).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: As in `as_slice()`, and `self` is borrowed mutably.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RestoredVmalloc {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `ptr` is a vmalloc area that
        // `kho_restore_vmalloc()` mapped, owned by `self`.
        unsafe { bindings::vfree(self.ptr.as_ptr().cast()) };
    }
}
