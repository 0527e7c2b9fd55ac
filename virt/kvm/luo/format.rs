// SPDX-License-Identifier: GPL-2.0

//! The preserved-state format of a VM or vCPU file.
//!
//! A blob is a header followed by sections, all little-endian:
//!
//! ```text
//! header (48 bytes)
//!   0  magic        u32   "KLUO"
//!   4  major        u16   incompatible changes: a reader refuses another major
//!   6  minor        u16   compatible additions (new optional sections)
//!   8  compatible   [u8; 24], NUL padded: what the blob describes ("kvm-x86-vcpu")
//!  32  total_len    u32   header and sections
//!  36  nr_sections  u32
//!  40  checksum     u32   FNV-1a of bytes 48..total_len
//!  44  reserved     u32   zero
//! section header (16 bytes), then the payload, padded to 8 bytes
//!   0  id           u32   strictly increasing: the order of restore
//!   4  version      u16   of the payload; a reader refuses newer versions
//!   6  flags        u16   SECTION_REQUIRED: a reader that does not know the
//!                         id must refuse the blob; others it skips
//!   8  len          u32   of the payload, without padding
//!  12  reserved     u32   zero
//! ```

use kernel::prelude::*;

/// "KLUO", little-endian.
pub(crate) const MAGIC: u32 = 0x4f55_4c4b;
/// The major version this kernel writes and reads.
pub(crate) const MAJOR: u16 = 1;
/// The minor version this kernel writes.
pub(crate) const MINOR: u16 = 0;
/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = 48;
/// Bytes of a section header.
pub(crate) const SECTION_HEADER_LEN: usize = 16;
/// Bytes of the compatible string field.
pub(crate) const COMPAT_LEN: usize = 24;
/// A reader that does not know the section must refuse the blob.
pub(crate) const SECTION_REQUIRED: u16 = 1;

const KNOWN_FLAGS: u16 = SECTION_REQUIRED;

/// The checksum of the sections: 32-bit FNV-1a.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn get_u16(b: &[u8], at: usize) -> Result<u16> {
    let s = b.get(at..at + 2).ok_or(EBADMSG)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn get_u32(b: &[u8], at: usize) -> Result<u32> {
    let s = b.get(at..at + 4).ok_or(EBADMSG)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) -> Result {
    b.get_mut(at..at + bytes.len())
        .ok_or(EINVAL)?
        .copy_from_slice(bytes);
    Ok(())
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| E2BIG)
}

/// Builds a blob, one section after the other.
pub(crate) struct Writer {
    buf: KVec<u8>,
    nr_sections: u32,
    compat: &'static [u8],
}

impl Writer {
    /// Starts a blob describing `compat` (at most 23 bytes).
    pub(crate) fn new(compat: &'static [u8]) -> Result<Self> {
        if compat.len() >= COMPAT_LEN {
            return Err(EINVAL);
        }
        let mut buf = KVec::new();
        buf.resize(HEADER_LEN, 0, GFP_KERNEL)?;
        Ok(Self {
            buf,
            nr_sections: 0,
            compat,
        })
    }

    /// Appends section `id` with a payload of at most `max` bytes, which
    /// `fill` writes and returns the length of.  A section `fill` leaves
    /// empty is left out.
    pub(crate) fn section(
        &mut self,
        id: u32,
        version: u16,
        flags: u16,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize>,
    ) -> Result {
        let start = self.buf.len();
        let payload = start + SECTION_HEADER_LEN;
        self.buf.resize(payload + max, 0, GFP_KERNEL)?;
        let len = fill(&mut self.buf[payload..])?;
        if len > max {
            return Err(EINVAL);
        }
        if len == 0 {
            self.buf.truncate(start);
            return Ok(());
        }
        let end = (payload + len).next_multiple_of(8);
        self.buf.truncate(payload + len);
        self.buf.resize(end, 0, GFP_KERNEL)?;
        let b = &mut self.buf[..];
        put(b, start, &id.to_le_bytes())?;
        put(b, start + 4, &version.to_le_bytes())?;
        put(b, start + 6, &flags.to_le_bytes())?;
        put(b, start + 8, &to_u32(len)?.to_le_bytes())?;
        self.nr_sections += 1;
        Ok(())
    }

    /// Completes the header and returns the blob.
    pub(crate) fn finish(mut self) -> Result<KVec<u8>> {
        let total = to_u32(self.buf.len())?;
        let sum = checksum(&self.buf[HEADER_LEN..]);
        let nr = self.nr_sections;
        let b = &mut self.buf[..];
        put(b, 0, &MAGIC.to_le_bytes())?;
        put(b, 4, &MAJOR.to_le_bytes())?;
        put(b, 6, &MINOR.to_le_bytes())?;
        put(b, 8, self.compat)?;
        put(b, 32, &total.to_le_bytes())?;
        put(b, 36, &nr.to_le_bytes())?;
        put(b, 40, &sum.to_le_bytes())?;
        Ok(self.buf)
    }
}

/// The payload of section `id` of `blob`, for the selftests' fault hook,
/// which changes it in place and then calls [`restamp`].  Unchecked beyond
/// staying within `blob`: [`parse`] checks the result.
pub(crate) fn section_mut(blob: &mut [u8], id: u32) -> Option<&mut [u8]> {
    let nr = get_u32(blob, 36).ok()?;
    let mut at = HEADER_LEN;
    for _ in 0..nr {
        let this = get_u32(blob, at).ok()?;
        let len = usize::try_from(get_u32(blob, at + 8).ok()?).ok()?;
        let start = at + SECTION_HEADER_LEN;
        let end = start.checked_add(len)?;
        if this == id {
            return blob.get_mut(start..end);
        }
        at = end.next_multiple_of(8);
    }
    None
}

/// Makes the checksum of `blob` match its sections again.
pub(crate) fn restamp(blob: &mut [u8]) {
    let total = get_u32(blob, 32)
        .ok()
        .and_then(|t| usize::try_from(t).ok())
        .filter(|t| (HEADER_LEN..=blob.len()).contains(t));
    if let Some(total) = total {
        let sum = checksum(&blob[HEADER_LEN..total]);
        blob[40..44].copy_from_slice(&sum.to_le_bytes());
    }
}

/// A section of a parsed blob.
pub(crate) struct Section<'a> {
    pub(crate) id: u32,
    pub(crate) version: u16,
    pub(crate) payload: &'a [u8],
}

/// Why a blob was refused, for the log line.
pub(crate) struct Refusal {
    pub(crate) err: Error,
    pub(crate) what: &'static str,
    pub(crate) value: u32,
}

fn refuse(err: Error, what: &'static str, value: u32) -> Refusal {
    Refusal { err, what, value }
}

/// Parses `blob`, which must describe `compat`.  `known` returns the newest
/// version of a section this kernel understands, or [`None`].  Unknown
/// optional sections are skipped; everything this kernel does not
/// understand otherwise is refused with `EPROTONOSUPPORT`, and a damaged
/// blob with `EBADMSG`.
pub(crate) fn parse<'a>(
    blob: &'a [u8],
    compat: &[u8],
    known: impl Fn(u32) -> Option<u16>,
) -> core::result::Result<KVec<Section<'a>>, Refusal> {
    let bad = |what, value| refuse(EBADMSG, what, value);
    let rd32 = |at| get_u32(blob, at).map_err(|_| bad("truncated header", 0));

    if blob.len() < HEADER_LEN {
        return Err(bad("truncated header", 0));
    }
    let magic = rd32(0)?;
    if magic != MAGIC {
        return Err(bad("bad magic", magic));
    }
    let major = get_u16(blob, 4).map_err(|_| bad("truncated header", 0))?;
    if major != MAJOR {
        return Err(refuse(
            EPROTONOSUPPORT,
            "foreign major version",
            major.into(),
        ));
    }
    let field = &blob[8..8 + COMPAT_LEN];
    let name_len = field.iter().position(|b| *b == 0).unwrap_or(COMPAT_LEN);
    if &field[..name_len] != compat || field[name_len..].iter().any(|b| *b != 0) {
        return Err(refuse(EPROTONOSUPPORT, "foreign compatible string", 0));
    }
    let total = usize::try_from(rd32(32)?).map_err(|_| bad("bad length", 0))?;
    let nr = rd32(36)?;
    let sum = rd32(40)?;
    if rd32(44)? != 0 {
        return Err(bad("reserved header field set", rd32(44)?));
    }
    if total < HEADER_LEN || total > blob.len() {
        return Err(bad("bad total length", to_u32(total).unwrap_or(u32::MAX)));
    }
    let blob = &blob[..total];
    if checksum(&blob[HEADER_LEN..]) != sum {
        return Err(bad("checksum mismatch", sum));
    }

    let mut sections = KVec::new();
    let mut at = HEADER_LEN;
    let mut last_id: Option<u32> = None;
    for _ in 0..nr {
        let hdr = blob
            .get(at..at + SECTION_HEADER_LEN)
            .ok_or(bad("truncated section header", 0))?;
        let id = get_u32(hdr, 0).map_err(|_| bad("truncated section header", 0))?;
        let version = get_u16(hdr, 4).map_err(|_| bad("truncated section header", id))?;
        let flags = get_u16(hdr, 6).map_err(|_| bad("truncated section header", id))?;
        let len = get_u32(hdr, 8).map_err(|_| bad("truncated section header", id))?;
        if get_u32(hdr, 12).map_err(|_| bad("truncated section header", id))? != 0 {
            return Err(bad("reserved section field set", id));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(bad("unknown section flags", id));
        }
        if last_id.is_some_and(|l| id <= l) {
            return Err(bad("sections out of order", id));
        }
        last_id = Some(id);
        let len = usize::try_from(len).map_err(|_| bad("bad section length", id))?;
        let start = at + SECTION_HEADER_LEN;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= total)
            .ok_or(bad("section beyond the end", id))?;
        let next = end.next_multiple_of(8);
        if next > total || blob[end..next].iter().any(|b| *b != 0) {
            return Err(bad("bad section padding", id));
        }
        at = next;
        match known(id) {
            Some(newest) if version == 0 || version > newest => {
                return Err(refuse(EPROTONOSUPPORT, "unknown section version", id));
            }
            Some(_) => sections
                .push(
                    Section {
                        id,
                        version,
                        payload: &blob[start..end],
                    },
                    GFP_KERNEL,
                )
                .map_err(|_| refuse(ENOMEM, "out of memory", id))?,
            None if flags & SECTION_REQUIRED != 0 => {
                return Err(refuse(EPROTONOSUPPORT, "unknown required section", id));
            }
            None => {}
        }
    }
    if at != total {
        return Err(bad(
            "trailing bytes",
            to_u32(total - at).unwrap_or(u32::MAX),
        ));
    }
    Ok(sections)
}

#[kunit_tests(kvm_luo_format)]
mod tests {
    use super::*;

    const COMPAT: &[u8] = b"kvm-test";

    fn known(id: u32) -> Option<u16> {
        match id {
            1 | 2 => Some(1),
            3 => Some(2),
            _ => None,
        }
    }

    fn sample() -> Result<KVec<u8>> {
        let mut w = Writer::new(COMPAT)?;
        w.section(1, 1, SECTION_REQUIRED, 16, |p| {
            p[..5].copy_from_slice(b"hello");
            Ok(5)
        })?;
        w.section(2, 1, 0, 8, |_| Ok(0))?;
        w.section(3, 2, SECTION_REQUIRED, 8, |p| {
            p.copy_from_slice(&7u64.to_le_bytes());
            Ok(8)
        })?;
        w.finish()
    }

    fn err_of(b: &[u8]) -> Option<Error> {
        parse(b, COMPAT, known).err().map(|r| r.err)
    }

    #[test]
    fn round_trip() -> Result {
        let b = sample()?;
        let s = parse(&b, COMPAT, known).map_err(|r| r.err)?;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].id, 1);
        assert_eq!(s[0].payload, b"hello");
        assert_eq!(s[1].id, 3);
        assert_eq!(s[1].version, 2);
        assert_eq!(s[1].payload, &7u64.to_le_bytes());
        assert_eq!(b.len() % 8, 0);
        Ok(())
    }

    #[test]
    fn every_truncation_is_refused() -> Result {
        let b = sample()?;
        for len in 0..b.len() {
            assert!(err_of(&b[..len]).is_some());
        }
        Ok(())
    }

    #[test]
    fn every_flipped_byte_is_refused() -> Result {
        let mut b = sample()?;
        for i in 0..b.len() {
            // The minor version is the only field a reader ignores.
            if i == 6 || i == 7 {
                continue;
            }
            b[i] ^= 0x40;
            assert!(err_of(&b).is_some());
            b[i] ^= 0x40;
        }
        assert!(err_of(&b).is_none());
        Ok(())
    }

    #[test]
    fn header_errors() -> Result {
        let mut b = sample()?;
        b[0] = b'X';
        assert_eq!(err_of(&b), Some(EBADMSG));

        let mut b = sample()?;
        b[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(err_of(&b), Some(EPROTONOSUPPORT));

        let mut b = sample()?;
        b[6..8].copy_from_slice(&9u16.to_le_bytes());
        assert!(err_of(&b).is_none());

        let b = sample()?;
        assert_eq!(
            parse(&b, b"kvm-other", known).err().map(|r| r.err),
            Some(EPROTONOSUPPORT)
        );

        let mut b = sample()?;
        b[32..36].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(err_of(&b), Some(EBADMSG));

        let mut b = sample()?;
        b[44] = 1;
        assert_eq!(err_of(&b), Some(EBADMSG));

        let mut b = sample()?;
        b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(err_of(&b), Some(EBADMSG));
        Ok(())
    }

    #[test]
    fn section_errors() -> Result {
        let first = HEADER_LEN;

        // A section length past the end.
        let mut b = sample()?;
        b[first + 8..first + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EBADMSG));

        // Unknown flags, reserved bits, nonzero padding.
        let mut b = sample()?;
        b[first + 6] = 0x80;
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EBADMSG));
        let mut b = sample()?;
        b[first + 12] = 1;
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EBADMSG));
        let mut b = sample()?;
        b[first + SECTION_HEADER_LEN + 6] = 1;
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EBADMSG));

        // Out of order: the first section claims the id of the second.
        let mut b = sample()?;
        b[first..first + 4].copy_from_slice(&3u32.to_le_bytes());
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EBADMSG));

        // A newer or zero version of a known section.
        let mut b = sample()?;
        b[first + 4..first + 6].copy_from_slice(&2u16.to_le_bytes());
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EPROTONOSUPPORT));
        let mut b = sample()?;
        b[first + 4..first + 6].copy_from_slice(&0u16.to_le_bytes());
        restamp(&mut b);
        assert_eq!(err_of(&b), Some(EPROTONOSUPPORT));
        Ok(())
    }

    #[test]
    fn section_mut_finds_a_payload() -> Result {
        let mut b = sample()?;
        let p = section_mut(&mut b, 3).ok_or(EINVAL)?;
        p[0] = 8;
        restamp(&mut b);
        let s = parse(&b, COMPAT, known).map_err(|r| r.err)?;
        assert_eq!(s[1].payload, &8u64.to_le_bytes());
        drop(s);
        assert!(section_mut(&mut b, 2).is_none());
        for len in 0..b.len() {
            let mut t = KVec::new();
            t.extend_from_slice(&b[..len], GFP_KERNEL)?;
            let _ = section_mut(&mut t, 3);
            restamp(&mut t);
        }
        Ok(())
    }

    #[test]
    fn unknown_sections() -> Result {
        let mut w = Writer::new(COMPAT)?;
        w.section(1, 1, SECTION_REQUIRED, 8, |_| Ok(3))?;
        w.section(9, 1, 0, 8, |_| Ok(8))?;
        let b = w.finish()?;
        let s = parse(&b, COMPAT, known).map_err(|r| r.err)?;
        assert_eq!(s.len(), 1);

        let mut w = Writer::new(COMPAT)?;
        w.section(9, 1, SECTION_REQUIRED, 8, |_| Ok(8))?;
        let b = w.finish()?;
        assert_eq!(err_of(&b), Some(EPROTONOSUPPORT));
        Ok(())
    }
}
