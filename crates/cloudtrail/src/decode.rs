use std::io::{self, BufReader, Read};

use flate2::bufread::MultiGzDecoder;

use crate::ObjectError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Does this prefix start a gzip stream? Decided by the magic bytes, never by the file name.
pub fn is_gzip(prefix: &[u8]) -> bool {
    prefix.starts_with(&GZIP_MAGIC)
}

/// Wraps `reader` so that it yields the object's JSON text, decompressing gzip when the
/// magic bytes say so, and failing once more than `max_bytes` decompressed bytes are read.
pub fn open<'a, R: Read + 'a>(mut reader: R, max_bytes: u64) -> io::Result<Box<dyn Read + 'a>> {
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
    let buffered = BufReader::with_capacity(256 * 1024, whole);
    let inner: Box<dyn Read + 'a> = if is_gzip(&prefix[..got]) {
        Box::new(GzipErrors(MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    };
    Ok(Box::new(Capped { inner, left: max_bytes, limit: max_bytes }))
}

/// Marks errors that come from the gzip decoder so they can be reported as such.
struct GzipErrors<R>(R);

impl<R: Read> Read for GzipErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| io::Error::new(e.kind(), TaggedGzip(e.to_string())))
    }
}

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

    #[test]
    fn truncated_gzip_is_a_gzip_error() {
        let full = gzip(&vec![b'x'; 10_000]);
        let err = read_all(&full[..full.len() / 2], u64::MAX).unwrap_err();
        assert!(matches!(err, ObjectError::Gzip(_)), "{err:?}");
    }

    #[test]
    fn decompressed_size_is_capped() {
        let err = read_all(&gzip(&vec![b' '; 5000]), 4096).unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { limit: 4096 }), "{err:?}");
        assert_eq!(read_all(&gzip(&[b' '; 4096]), 4096).unwrap().len(), 4096);
    }
}
