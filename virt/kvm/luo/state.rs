// SPDX-License-Identifier: GPL-2.0

//! The VM and vCPU file handlers and their state.

use crate::format::{
    self,
    Section,
    Writer,
    SECTION_REQUIRED, //
};
use kernel::{
    fs::File,
    kho::{
        PreservedVmalloc,
        RestoredVmalloc, //
    },
    kvm::{
        self,
        Kvm,
        KvmVcpu,
        VcpuGuard, //
    },
    liveupdate::{
        FileHandler,
        FileOpArgs, //
    },
    prelude::*,
    sync::aref::ARef, //
};

/// What a VM blob describes.
const VM_COMPAT: &[u8] = b"kvm-x86-vm";
/// What a vCPU blob describes.
const VCPU_COMPAT: &[u8] = b"kvm-x86-vcpu";

/// The section of a VM blob this file owns: the VM type (u32) and padding.
const VM_IDENTITY: u32 = 0;
/// The section of a vCPU blob this file owns: the vCPU id (u32), padding,
/// and the token of its VM in the session (u64).
const VCPU_IDENTITY: u32 = 0;
/// The version of every section this kernel writes.
const VERSION: u16 = 1;
/// Room for the state to grow between preserve and freeze: memslots added,
/// a vCPU that enters a nested guest (a VMCB, or a vmcs12 and its shadow).
const SLACK: usize = 16384;

fn le32(b: &[u8], at: usize) -> Result<u32> {
    let s = b.get(at..at + 4).ok_or(EBADMSG)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> Result<u64> {
    let lo = le32(b, at)?;
    let hi = le32(b, at + 4)?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

/// Saves every section the arch knows of, in restore order.
fn save_sections(
    w: &mut Writer,
    sections: core::ops::Range<u32>,
    save: impl Fn(u32, Option<&mut [u8]>) -> Result<usize>,
) -> Result {
    for id in sections {
        let need = save(id, None)?;
        if need > 0 {
            w.section(id, VERSION, SECTION_REQUIRED, need, |p| save(id, Some(p)))?;
        }
    }
    Ok(())
}

fn save_vm(kvm: &Kvm) -> Result<KVec<u8>> {
    let mut w = Writer::new(VM_COMPAT)?;
    w.section(VM_IDENTITY, VERSION, SECTION_REQUIRED, 8, |p| {
        p[..4].copy_from_slice(&kvm.vm_type().to_le_bytes());
        Ok(8)
    })?;
    save_sections(&mut w, kvm::vm_sections(), |id, buf| {
        kvm.save_section(id, buf)
    })?;
    w.finish()
}

fn save_vcpu(vcpu: &KvmVcpu, guard: &VcpuGuard<'_>, vm_token: u64) -> Result<KVec<u8>> {
    let mut w = Writer::new(VCPU_COMPAT)?;
    w.section(VCPU_IDENTITY, VERSION, SECTION_REQUIRED, 16, |p| {
        p[..4].copy_from_slice(&vcpu.id().to_le_bytes());
        p[8..16].copy_from_slice(&vm_token.to_le_bytes());
        Ok(16)
    })?;
    save_sections(&mut w, kvm::vcpu_sections(), |id, buf| {
        guard.save_section(id, buf)
    })?;
    w.finish()
}

/// Borrows the memory that `preserve` handed over at `phys`, before kexec.
fn borrow_preserved(phys: u64) -> Result<core::mem::ManuallyDrop<PreservedVmalloc>> {
    // SAFETY: `phys` is the serialized data that `preserve` handed over,
    // and the memory is only borrowed: `ManuallyDrop` keeps it preserved.
    Ok(core::mem::ManuallyDrop::new(unsafe {
        PreservedVmalloc::from_phys(phys)
    }?))
}

/// Copies `blob` into the memory preserved at `phys` by `preserve`.
fn store(phys: u64, blob: &[u8]) -> Result {
    let mut mem = borrow_preserved(phys)?;
    let dst = mem.as_mut_slice();
    let dst = dst.get_mut(..blob.len()).ok_or(ENOSPC)?;
    dst.copy_from_slice(blob);
    Ok(())
}

/// Preserves `blob` in new KHO memory and returns the physical address the
/// next kernel restores it from.  A vmalloc area: a vCPU's blob is tens of
/// KiB, which needs no physically contiguous memory.
fn preserve_blob(blob: &[u8]) -> Result<u64> {
    let mut mem = PreservedVmalloc::alloc(blob.len() + SLACK)?;
    mem.as_mut_slice()
        .get_mut(..blob.len())
        .ok_or(ENOSPC)?
        .copy_from_slice(blob);
    Ok(mem.into_phys())
}

/// Stops preserving what `preserve` handed over at `phys`, and frees it.
fn unpreserve_blob(phys: u64) {
    // SAFETY: `preserve` handed this memory over; `unpreserve` takes it back
    // once.
    if let Ok(mem) = unsafe { PreservedVmalloc::from_phys(phys) } {
        drop(mem);
    }
}

/// Takes back the blob the previous kernel preserved at `phys`, applying
/// the fault the selftests asked for, if any.
fn restore_blob(phys: u64) -> Result<RestoredVmalloc> {
    // SAFETY: `phys` is the serialized data of a file of this handler,
    // which only this retrieve (or finish, if never retrieved) takes back.
    let mut mem = unsafe { RestoredVmalloc::restore(phys) }?;
    let b = mem.as_mut_slice();
    match kvm::take_test_fault() {
        // A foreign major version.
        1 => {
            if let Some(major) = b.get_mut(4..6) {
                major.copy_from_slice(&(format::MAJOR + 1).to_le_bytes());
            }
        }
        // One corrupted byte in the first section.
        2 => {
            if let Some(byte) = b.get_mut(format::HEADER_LEN + format::SECTION_HEADER_LEN) {
                *byte ^= 0xff;
            }
        }
        // A vCPU given a CPU feature that no KVM gives (EST, CPUID 1 ECX
        // bit 7), which the saving KVM claims it could give.
        3 => {
            if let Some(cpuid) = format::section_mut(b, kvm::VCPU_SECTION_CPUID) {
                // struct kvm_cpuid_entry2: function, index, flags, EAX...
                or_where(cpuid, 40, &[(0, 1)], 20, FAULT_CPU_FEATURE);
            }
            if let Some(caps) = format::section_mut(b, kvm::VCPU_SECTION_CPU_CAPS) {
                // struct kvm_luo_cpu_cap: function, index, reg (2: ECX), bits.
                or_where(caps, 16, &[(0, 1), (8, 2)], 12, FAULT_CPU_FEATURE);
            }
            format::restamp(b);
        }
        // A vCPU given a paravirtual feature (so hypercalls) that the
        // saving KVM claims it had and this one does not have.
        4 => {
            if let Some(cpuid) = format::section_mut(b, kvm::VCPU_SECTION_CPUID) {
                // struct kvm_cpuid_entry2: function, index, flags, EAX...
                or_where(
                    cpuid,
                    40,
                    &[(0, kvm::CPUID_KVM_FEATURES)],
                    12,
                    FAULT_PV_FEATURE,
                );
            }
            if let Some(caps) = format::section_mut(b, kvm::VCPU_SECTION_CPU_CAPS) {
                // struct kvm_luo_cpu_cap: function, index, reg, bits.
                or_where(
                    caps,
                    16,
                    &[(0, kvm::CPUID_KVM_FEATURES)],
                    12,
                    FAULT_PV_FEATURE,
                );
            }
            format::restamp(b);
        }
        // A VM with a capability this kernel does not carry.
        5 => {
            if let Some(cap) = format::section_mut(b, kvm::VM_SECTION_CAPS) {
                if let Some(id) = cap.get_mut(..4) {
                    id.fill(0xff);
                }
            }
            format::restamp(b);
        }
        // A vCPU whose nested state has a format this KVM does not know.
        6 => {
            if let Some(state) = format::section_mut(b, kvm::VCPU_SECTION_NESTED) {
                // struct kvm_nested_state: flags (u16), format (u16), ...
                if let Some(fmt) = state.get_mut(2..4) {
                    fmt.fill(0xff);
                }
            }
            format::restamp(b);
        }
        _ => {}
    }
    Ok(mem)
}

/// A CPU feature that KVM never gives a guest, for fault 3: Enhanced
/// SpeedStep (CPUID 1 ECX bit 7).
const FAULT_CPU_FEATURE: u32 = 1 << 7;

/// A paravirtual feature bit that KVM does not define, for fault 4.
const FAULT_PV_FEATURE: u32 = 1 << 20;

/// In the records of `size` bytes in `b` whose u32 at each `(offset, key)`
/// of `keys` is `key`, ORs `bits` into the u32 at `at`.
fn or_where(b: &mut [u8], size: usize, keys: &[(usize, u32)], at: usize, bits: u32) {
    for rec in b.chunks_exact_mut(size) {
        let matches = keys
            .iter()
            .all(|&(key_at, key)| rec.get(key_at..key_at + 4) == Some(&key.to_le_bytes()[..]));
        if !matches {
            continue;
        }
        if let Some(v) = rec.get_mut(at..at + 4) {
            let old = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            v.copy_from_slice(&(old | bits).to_le_bytes());
        }
    }
}

fn parse<'a>(
    what: &str,
    blob: &'a [u8],
    compat: &[u8],
    sections: core::ops::Range<u32>,
) -> Result<KVec<Section<'a>>> {
    let known = |id: u32| (id == 0 || sections.contains(&id)).then_some(VERSION);
    format::parse(blob, compat, known).map_err(|r| {
        pr_warn!(
            "live update: {} refused: {} ({:#x}), error {:?}\n",
            what,
            r.what,
            r.value,
            r.err
        );
        r.err
    })
}

/// Logs a section that KVM refused to restore, unless KVM's hook said why
/// itself: it does for state it cannot give the guest (`EOPNOTSUPP`).
fn log_refusal(what: core::fmt::Arguments<'_>, section: u32, err: Error) {
    if err != EOPNOTSUPP {
        pr_warn!(
            "live update: {} state section {} refused: {:?}\n",
            what,
            section,
            err
        );
    }
}

/// Frees what the previous kernel preserved for a file nobody retrieved.
fn finish_unretrieved(args: &FileOpArgs<'_>) {
    if args.retrieve_status().is_none() {
        // SAFETY: The file was never retrieved, so nothing else took the
        // memory back; dropping it frees it.
        drop(unsafe { RestoredVmalloc::restore(args.serialized_data()) });
    }
}

/// The handler of VM files.
pub(crate) struct VmHandler;

#[vtable]
impl FileHandler for VmHandler {
    const COMPATIBLE: &'static CStr = c"kvm-vm-v1";

    fn can_preserve(file: &File) -> bool {
        Kvm::from_file(file).is_some_and(|kvm| kvm.preserve_enabled())
    }

    fn preserve(args: &mut FileOpArgs<'_>) -> Result {
        let kvm = args.file().and_then(Kvm::from_file).ok_or(EINVAL)?;
        kvm.check_preservable()?;
        let blob = save_vm(kvm)?;
        args.set_serialized_data(preserve_blob(&blob)?);
        Ok(())
    }

    fn unpreserve(args: &mut FileOpArgs<'_>) {
        unpreserve_blob(args.serialized_data());
    }

    fn freeze(args: &mut FileOpArgs<'_>) -> Result {
        let kvm = args.file().and_then(Kvm::from_file).ok_or(EINVAL)?;
        // Nothing may change the VM's state or its vCPUs' from here to the
        // kexec: its vCPU files, which come after it, save theirs in this
        // freeze.
        kvm.freeze().inspect_err(|_| {
            pr_warn!("live update: a vCPU of the VM is running\n");
        })?;
        let stored = save_vm(kvm)
            .inspect_err(|e| pr_warn!("live update: saving a VM failed: {:?}\n", e))
            .and_then(|blob| {
                store(args.serialized_data(), &blob).inspect_err(|_| {
                    pr_warn!("live update: the VM's state outgrew its preserved memory\n");
                })
            });
        if stored.is_err() {
            kvm.thaw();
        }
        stored
    }

    fn unfreeze(args: &mut FileOpArgs<'_>) {
        if let Some(kvm) = args.file().and_then(Kvm::from_file) {
            kvm.thaw();
        }
    }

    fn retrieve(args: &mut FileOpArgs<'_>) -> Result {
        let mem = restore_blob(args.serialized_data())?;
        let sections = parse("VM", mem.as_slice(), VM_COMPAT, kvm::vm_sections())?;
        let identity = sections
            .first()
            .filter(|s| s.id == VM_IDENTITY)
            .ok_or(EBADMSG)?;
        let file = Kvm::create_file(le32(identity.payload, 0)?)?;
        let kvm = Kvm::from_file(&file).ok_or(EINVAL)?;
        for s in sections.iter().skip(1) {
            kvm.restore_section(s.id, s.payload)
                .inspect_err(|e| log_refusal(format_args!("VM"), s.id, *e))?;
        }
        args.set_file(file);
        Ok(())
    }

    fn finish(args: &mut FileOpArgs<'_>) {
        finish_unretrieved(args);
    }
}

/// The handler of vCPU files.
pub(crate) struct VcpuHandler;

impl VcpuHandler {
    fn vcpu<'a>(args: &'a FileOpArgs<'_>) -> Result<&'a KvmVcpu> {
        args.file().and_then(KvmVcpu::from_file).ok_or(EINVAL)
    }

    fn lock<'a>(vcpu: &'a KvmVcpu) -> Result<VcpuGuard<'a>> {
        vcpu.lock().inspect_err(|_| {
            pr_warn!("live update: vCPU {} is running\n", vcpu.id());
        })
    }

    /// Restores the sections of a retrieved vCPU into its new file.
    fn restore(file: &File, id: u32, sections: &[Section<'_>]) -> Result {
        let vcpu = KvmVcpu::from_file(file).ok_or(EINVAL)?;
        let guard = Self::lock(vcpu)?;
        for s in sections.iter().skip(1) {
            guard
                .restore_section(s.id, s.payload)
                .inspect_err(|e| log_refusal(format_args!("vCPU {id}"), s.id, *e))?;
        }
        // In a nested guest, the events (interrupt shadow, NMI blocking) are
        // L2's: set them again now that the nested state made L2 current.
        if sections.iter().any(|s| s.id == kvm::VCPU_SECTION_NESTED) {
            if let Some(s) = sections.iter().find(|s| s.id == kvm::VCPU_SECTION_EVENTS) {
                guard
                    .restore_section(s.id, s.payload)
                    .inspect_err(|e| log_refusal(format_args!("vCPU {id}"), s.id, *e))?;
            }
        }
        Ok(())
    }
}

#[vtable]
impl FileHandler for VcpuHandler {
    const COMPATIBLE: &'static CStr = c"kvm-vcpu-v1";

    fn can_preserve(file: &File) -> bool {
        KvmVcpu::from_file(file).is_some_and(|vcpu| vcpu.kvm().preserve_enabled())
    }

    fn preserve(args: &mut FileOpArgs<'_>) -> Result {
        let file: ARef<File> = args.file().ok_or(EINVAL)?.into();
        let vcpu = KvmVcpu::from_file(&file).ok_or(EINVAL)?;
        let kvm: *const Kvm = vcpu.kvm();
        let vm_token = args
            .find_outgoing(|f| Kvm::from_file(f).is_some_and(|k| core::ptr::eq(k, kvm)))
            .map_err(|_| {
                pr_warn!("live update: vCPU {} preserved before its VM\n", vcpu.id());
                EINVAL
            })?;
        let guard = Self::lock(vcpu)?;
        let blob = save_vcpu(vcpu, &guard, vm_token)?;
        drop(guard);
        args.set_serialized_data(preserve_blob(&blob)?);
        Ok(())
    }

    fn unpreserve(args: &mut FileOpArgs<'_>) {
        unpreserve_blob(args.serialized_data());
    }

    fn freeze(args: &mut FileOpArgs<'_>) -> Result {
        let vcpu = Self::vcpu(args)?;
        // The vCPU's VM is in the session before it (`preserve` checks), so
        // its freeze came first.
        let guard = vcpu.lock_frozen().inspect_err(|_| {
            pr_warn!("live update: vCPU {}: its VM is not frozen\n", vcpu.id());
        })?;
        let blob = save_vcpu(vcpu, &guard, le64_token(args)?)?;
        store(args.serialized_data(), &blob)
    }

    fn retrieve(args: &mut FileOpArgs<'_>) -> Result {
        let mem = restore_blob(args.serialized_data())?;
        let sections = parse("vCPU", mem.as_slice(), VCPU_COMPAT, kvm::vcpu_sections())?;
        let identity = sections
            .first()
            .filter(|s| s.id == VCPU_IDENTITY)
            .ok_or(EBADMSG)?;
        let id = le32(identity.payload, 0)?;
        let vm_token = le64(identity.payload, 8)?;
        let vm_file = args.file_incoming(vm_token).inspect_err(|e| {
            pr_warn!("live update: vCPU {}: no VM to retrieve: {:?}\n", id, e);
        })?;
        let kvm = Kvm::from_file(&vm_file).ok_or(EINVAL)?;
        let file = kvm.create_vcpu_file(id)?;
        // The vCPU exists in the VM from here on, and vCPUs cannot be
        // removed: one left half restored would run with state of nobody's
        // choosing, so a failure (logged where it happened) kills the VM.
        Self::restore(&file, id, &sections).inspect_err(|_| kvm.kill())?;
        args.set_file(file);
        Ok(())
    }

    fn finish(args: &mut FileOpArgs<'_>) {
        finish_unretrieved(args);
    }
}

/// The VM token a vCPU recorded at preserve, read back from its blob.
fn le64_token(args: &FileOpArgs<'_>) -> Result<u64> {
    let mut mem = borrow_preserved(args.serialized_data())?;
    let b = mem.as_mut_slice();
    le64(b, format::HEADER_LEN + format::SECTION_HEADER_LEN + 8)
}
