use std::io::{self, BufReader, Read};

use flate2::bufread::MultiGzDecoder;

use crate::ObjectError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Does this prefix start a gzip stream? Decided by the magic bytes, never by the file name.
pub fn is_gzip(prefix: &[u8]) -> bool {
    prefix.starts_with(&GZIP_MAGIC)
}

/// Wraps `reader` so that it yields the object's JSON text as UTF-8, decompressing gzip when
/// the magic bytes say so, converting UTF-16 text ([`as_utf8`]), and failing once more than
/// `max_bytes` bytes of text are read.
pub fn open<'a, R: Read + 'a>(reader: R, max_bytes: u64) -> io::Result<Box<dyn Read + 'a>> {
    open_tapped(reader, max_bytes, None)
}

/// Sees the content of an object as it is read: decompressed, but before any conversion of its
/// text, which is what CloudTrail's digests hash.
pub(crate) type Tap<'a> = Box<dyn FnMut(&[u8]) + 'a>;

/// [`open`], handing the decompressed content to `tap` as it is read.
pub(crate) fn open_tapped<'a, R: Read + 'a>(
    mut reader: R,
    max_bytes: u64,
    tap: Option<Tap<'a>>,
) -> io::Result<Box<dyn Read + 'a>> {
    let mut prefix = [0u8; 2];
    let mut got = 0;
    while got < prefix.len() {
        match reader.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = io::Cursor::new(prefix[..got].to_vec()).chain(reader);
    let buffered = BufReader::with_capacity(256 * 1024, SourceErrors(whole));
    let mut inner: Box<dyn Read + 'a> = if is_gzip(&prefix[..got]) {
        Box::new(GzipErrors(MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    };
    if let Some(tap) = tap {
        inner = Box::new(Tapped { inner, tap });
    }
    let inner = as_utf8(inner)?;
    Ok(Box::new(Capped { inner, left: max_bytes, limit: max_bytes }))
}

/// The text of `inner` as UTF-8: a UTF-8 byte-order mark is dropped, and UTF-16 (what
/// PowerShell's `>` writes, with or without a byte-order mark) is converted as it is read. JSON
/// starts with an ASCII character, so UTF-16 without a mark shows as a zero byte beside it.
fn as_utf8<'a>(mut inner: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < head.len() {
        match inner.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (utf16, mark) = match head[..got] {
        [0xEF, 0xBB, 0xBF, ..] => (None, 3),
        [0xFF, 0xFE, ..] => (Some(Endian::Little), 2),
        [0xFE, 0xFF, ..] => (Some(Endian::Big), 2),
        [b, 0, ..] if b != 0 && b.is_ascii() => (Some(Endian::Little), 0),
        [0, b, ..] if b != 0 && b.is_ascii() => (Some(Endian::Big), 0),
        _ => (None, 0),
    };
    let text = io::Cursor::new(head[mark..got].to_vec()).chain(inner);
    Ok(match utf16 {
        None => Box::new(text),
        Some(endian) => Box::new(Utf16 {
            inner: text,
            endian,
            raw: Vec::new(),
            out: Vec::new(),
            at: 0,
            offset: mark as u64,
        }),
    })
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

/// UTF-16 text read as UTF-8.
struct Utf16<R> {
    inner: R,
    endian: Endian,
    /// Bytes read but not yet converted: an odd byte, or the first half of a surrogate pair.
    raw: Vec<u8>,
    /// Converted text not yet handed out, from `at`.
    out: Vec<u8>,
    at: usize,
    /// Where `raw` starts in the UTF-16 text, for errors.
    offset: u64,
}

impl<R: Read> Utf16<R> {
    /// Converts the next chunk; false at the end of the text.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            return match self.raw.len() {
                0 => Ok(false),
                _ => Err(self.invalid("ends in the middle of a character")),
            };
        }
        self.raw.extend_from_slice(&chunk[..n]);
        let units: Vec<u16> = self
            .raw
            .chunks_exact(2)
            .map(|b| match self.endian {
                Endian::Little => u16::from_le_bytes([b[0], b[1]]),
                Endian::Big => u16::from_be_bytes([b[0], b[1]]),
            })
            .collect();
        // A high surrogate at the end waits for its pair in the next chunk.
        let whole = match units.last() {
            Some(last) if (0xD800..0xDC00).contains(last) => units.len() - 1,
            _ => units.len(),
        };
        self.out.clear();
        self.at = 0;
        for c in char::decode_utf16(units[..whole].iter().copied()) {
            let c = c.map_err(|_| self.invalid("has an unpaired surrogate"))?;
            let mut buf = [0u8; 4];
            self.out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        self.raw.drain(..whole * 2);
        self.offset += whole as u64 * 2;
        Ok(true)
    }

    fn invalid(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the UTF-16 text {what} (near byte {})", self.offset),
        )
    }
}

impl<R: Read> Read for Utf16<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Hands every byte read to a tap.
struct Tapped<'a> {
    inner: Box<dyn Read + 'a>,
    tap: Tap<'a>,
}

impl Read for Tapped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.tap)(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Marks errors that come from the gzip decoder so they can be reported as such; those of the
/// reader under it ([`SourceErrors`]: a failed transfer, a disk error) pass as they are.
struct GzipErrors<R>(R);

impl<R: Read> Read for GzipErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|inner| inner.is::<TaggedSource>()) {
                e
            } else {
                io::Error::new(e.kind(), TaggedGzip(e.to_string()))
            }
        })
    }
}

/// Marks errors of the object's own reader, which say nothing of its content.
struct SourceErrors<R>(R);

impl<R: Read> Read for SourceErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| io::Error::new(e.kind(), TaggedSource(e.to_string())))
    }
}

/// The message of a failed read of the object's bytes, tagged so that [`GzipErrors`] does not
/// take it for a corrupt stream.
#[derive(Debug)]
struct TaggedSource(String);

impl std::fmt::Display for TaggedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TaggedSource {}

/// The message of a gzip failure, tagged so [`classify_io`] can tell it from plain I/O.
#[derive(Debug)]
struct TaggedGzip(String);

impl std::fmt::Display for TaggedGzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() { f.write_str("unexpected end of stream") } else { f.write_str(&self.0) }
    }
}
impl std::error::Error for TaggedGzip {}

/// Stops reading after `limit` bytes with an error instead of inflating forever.
struct Capped<'a> {
    inner: Box<dyn Read + 'a>,
    left: u64,
    limit: u64,
}

#[derive(Debug)]
struct SizeCap(u64);

impl std::fmt::Display for SizeCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} decompressed bytes", self.0)
    }
}
impl std::error::Error for SizeCap {}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One probe byte tells "exactly at the limit" from "over it".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(SizeCap(self.limit))),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Turns an I/O error from a reader made by [`open`] into the object error it stands for.
pub(crate) fn classify_io(err: io::Error) -> ObjectError {
    if let Some(cap) = err.get_ref().and_then(|e| e.downcast_ref::<SizeCap>()) {
        return ObjectError::TooLarge { limit: cap.0 };
    }
    if err.get_ref().is_some_and(|e| e.is::<TaggedGzip>()) {
        return ObjectError::Gzip(err);
    }
    ObjectError::Io(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(bytes: &[u8], cap: u64) -> Result<Vec<u8>, ObjectError> {
        let mut out = Vec::new();
        open(bytes, cap).map_err(classify_io)?.read_to_end(&mut out).map_err(classify_io)?;
        Ok(out)
    }

    #[test]
    fn gzip_is_detected_by_magic_not_name() {
        assert_eq!(read_all(&gzip(b"{\"Records\":[]}"), 100).unwrap(), b"{\"Records\":[]}");
        assert_eq!(read_all(b"{\"Records\":[]}", 100).unwrap(), b"{\"Records\":[]}");
    }

    /// A transfer that fails halfway through a gzip object is a failed read, not corrupt gzip.
    #[test]
    fn a_read_failing_under_the_gzip_decoder_is_a_read_error() {
        struct FailsAfter(Vec<u8>);
        impl Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let full = gzip(&vec![b'x'; 10_000]);
        let mut out = Vec::new();
        let err = open(FailsAfter(full[..full.len() / 2].to_vec()), u64::MAX)
            .and_then(|mut r| r.read_to_end(&mut out))
            .map_err(classify_io)
            .unwrap_err();
        assert!(matches!(&err, ObjectError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset), "{err:?}");
        assert!(err.to_string().contains("connection reset by peer"), "{err}");
    }

    #[test]
    fn truncated_gzip_is_a_gzip_error() {
        let full = gzip(&vec![b'x'; 10_000]);
        let err = read_all(&full[..full.len() / 2], u64::MAX).unwrap_err();
        assert!(matches!(err, ObjectError::Gzip(_)), "{err:?}");
    }

    fn utf16(text: &str, endian: Endian, mark: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for unit in text.encode_utf16() {
            out.extend_from_slice(&match endian {
                Endian::Little => unit.to_le_bytes(),
                Endian::Big => unit.to_be_bytes(),
            });
        }
        if mark {
            let bom = match endian {
                Endian::Little => [0xFF, 0xFE],
                Endian::Big => [0xFE, 0xFF],
            };
            out.splice(0..0, bom);
        }
        out
    }

    #[test]
    fn utf16_and_a_utf8_mark_read_as_utf8() {
        // Long enough to cross chunks, with a character outside the BMP (a surrogate pair).
        let text =
            format!("{{\"Records\":[{{\"userAgent\":\"caf\u{e9} \u{1F512} {}\"}}]}}", "x".repeat(70_000));
        for endian in [Endian::Little, Endian::Big] {
            for mark in [true, false] {
                let got = read_all(&utf16(&text, endian, mark), u64::MAX).unwrap();
                assert_eq!(String::from_utf8(got).unwrap(), text, "{endian:?}, mark {mark}");
            }
        }
        let mut marked = vec![0xEF, 0xBB, 0xBF];
        marked.extend_from_slice(text.as_bytes());
        assert_eq!(read_all(&marked, u64::MAX).unwrap(), text.as_bytes());
        assert_eq!(read_all(&gzip(&utf16(&text, Endian::Little, true)), u64::MAX).unwrap(), text.as_bytes());
    }

    #[test]
    fn broken_utf16_is_an_error_that_says_so() {
        let mut lone = utf16("{\"a\":\"", Endian::Little, true);
        lone.extend_from_slice(&0xD800u16.to_le_bytes());
        lone.extend_from_slice(&utf16("x\"}", Endian::Little, false));
        let err = read_all(&lone, u64::MAX).unwrap_err().to_string();
        assert!(err.contains("UTF-16") && err.contains("unpaired surrogate"), "{err}");
        let odd = utf16("{}", Endian::Little, true);
        let err = read_all(&odd[..odd.len() - 1], u64::MAX).unwrap_err().to_string();
        assert!(err.contains("middle of a character"), "{err}");
    }

    #[test]
    fn decompressed_size_is_capped() {
        let err = read_all(&gzip(&vec![b' '; 5000]), 4096).unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { limit: 4096 }), "{err:?}");
        assert_eq!(read_all(&gzip(&[b' '; 4096]), 4096).unwrap().len(), 4096);
    }
}
