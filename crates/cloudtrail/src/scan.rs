//! A streaming splitter: finds where each record's JSON text begins and ends without building
//! a tree, so an object of any size costs one record's worth of memory.
//!
//! The scanner tracks strings, escapes and bracket depth only; it does not validate JSON. A
//! record that is broken inside is passed on as it is and fails when the caller parses it;
//! broken structure *between* records (truncation, a missing comma) rejects the object.

use std::io::Read;

use aws_lc_rs::digest::{Context, SHA256};
use wide::u8x16;

use crate::digest::Sha256;
use crate::{Limits, ObjectError, decode};

/// How the object's records were laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// `{"Records":[...]}`, a CloudTrail log file.
    LogFile,
    /// `{"Events":[{"CloudTrailEvent":"..."}]}` from `aws cloudtrail lookup-events`.
    LookupEvents,
    /// One or more top-level record objects (JSON Lines, or a single record).
    RecordLines,
}

/// What reading one object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    pub format: ObjectFormat,
    /// Records handed to the callback.
    pub records: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
}

/// Why the callback's caller stopped: the object's own problem, or the callback's.
#[derive(Debug)]
pub enum ScanError<E> {
    Object(ObjectError),
    Callback(E),
}

impl<E> From<ObjectError> for ScanError<E> {
    fn from(e: ObjectError) -> Self {
        ScanError::Object(e)
    }
}

/// Reads one object (gzip or plain) and calls `on_record` with the JSON text of each record,
/// in file order. Records of `lookup-events` output arrive unescaped, as the record itself.
///
/// A lookup-events entry whose `CloudTrailEvent` is missing or not a string is passed on as
/// the entry's own text, so the caller sees it fail as a record rather than vanish.
pub fn for_each_record<R, E, F>(reader: R, limits: &Limits, on_record: F) -> Result<ReadSummary, ScanError<E>>
where
    R: Read,
    F: FnMut(&[u8]) -> Result<(), E>,
{
    let input = decode::open(reader, limits.max_object_bytes).map_err(decode::classify_io)?;
    scan(input, limits, on_record)
}

/// [`for_each_record`], also returning the SHA-256 of the object's decompressed content (what
/// a CloudTrail digest lists for it), so that verifying costs no second read. Reading goes to
/// the end of the object, so the hash covers all of it.
pub fn for_each_record_hashed<R, E, F>(
    reader: R,
    limits: &Limits,
    on_record: F,
) -> Result<(ReadSummary, Sha256), ScanError<E>>
where
    R: Read,
    F: FnMut(&[u8]) -> Result<(), E>,
{
    let mut context = Context::new(&SHA256);
    let tap = Box::new(|bytes: &[u8]| context.update(bytes));
    let input =
        decode::open_tapped(reader, limits.max_object_bytes, Some(tap)).map_err(decode::classify_io)?;
    // The scanner, and with it the tap's borrow of the context, ends inside `scan`.
    let summary = scan(input, limits, on_record)?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(context.finish().as_ref());
    Ok((summary, sha256))
}

fn scan<'a, E, F>(
    input: Box<dyn Read + 'a>,
    limits: &Limits,
    mut on_record: F,
) -> Result<ReadSummary, ScanError<E>>
where
    F: FnMut(&[u8]) -> Result<(), E>,
{
    let mut scanner = Scanner::new(input, *limits);
    let mut format = None;
    let mut records = 0u64;
    let mut unwrapped = Vec::new();
    while let Some(first) = scanner.peek_value()? {
        if first != b'{' {
            return Err(if first == b'[' {
                ObjectError::NotCloudTrail("a JSON array at top level").into()
            } else {
                scanner.not_json(first).into()
            });
        }
        let seen = scanner.top_object(&mut |kind, bytes| {
            records += 1;
            match kind {
                Element::Record => on_record(bytes),
                Element::LookupEntry => {
                    unwrapped.clear();
                    match lookup_event_text(bytes) {
                        Some(text) => unwrapped.extend_from_slice(text.as_bytes()),
                        None => unwrapped.extend_from_slice(bytes),
                    }
                    on_record(&unwrapped)
                }
            }
        })?;
        let this = match seen {
            TopObject::Records => ObjectFormat::LogFile,
            TopObject::Events => ObjectFormat::LookupEvents,
            TopObject::Other(shape) => {
                match shape {
                    Shape::Record => {}
                    Shape::Digest => return Err(ObjectError::Digest.into()),
                    Shape::Unknown => {
                        return Err(ObjectError::NotCloudTrail(
                            "a JSON object with neither \"Records\" nor CloudTrail record fields",
                        )
                        .into());
                    }
                }
                records += 1;
                on_record(scanner.pinned_bytes()).map_err(ScanError::Callback)?;
                scanner.unpin();
                ObjectFormat::RecordLines
            }
        };
        // A log file or lookup output is one value; more values after it mean JSON Lines.
        format = Some(match format {
            None => this,
            Some(_) => ObjectFormat::RecordLines,
        });
    }
    let format = format.ok_or(ObjectError::Empty)?;
    Ok(ReadSummary { format, records, bytes: scanner.consumed() })
}

fn lookup_event_text(entry: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "CloudTrailEvent")]
        cloud_trail_event: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Entry>(entry).ok()?.cloud_trail_event? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Receives each element of a streamed `Records`/`Events` array.
type OnElement<'a, E> = dyn FnMut(Element, &[u8]) -> Result<(), E> + 'a;

#[derive(Clone, Copy)]
enum Element {
    Record,
    LookupEntry,
}

enum TopObject {
    Records,
    Events,
    Other(Shape),
}

/// What a top-level object without `Records`/`Events` looks like, from its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Record,
    Digest,
    Unknown,
}

const READ_CHUNK: usize = 256 * 1024;

/// Bytes [`Scanner::scan_nested`] classifies at a time, one bit each in a `u64`.
const BLOCK: usize = 64;

/// Where [`Scanner::scan_nested`] stands between two bytes of an object or array.
#[derive(Clone, Copy, Default)]
struct Nesting {
    depth: usize,
    in_string: bool,
    /// Just after a backslash in a string: the next byte is taken as it is.
    escaped: bool,
}

/// How a block ends for [`Nesting::block`].
enum BlockEnd {
    /// The value goes on after the block.
    Open,
    /// The value closes with the byte at this index.
    Closed(usize),
    /// The bracket at this index nests deeper than the limit.
    TooDeep(usize),
}

/// The bytes of a block that can change where a value ends: bit `i` of each mask is set when
/// byte `i` is that character.
struct Marks {
    quotes: u64,
    backslashes: u64,
    opens: u64,
    closes: u64,
}

impl Marks {
    /// Sixteen bytes at a time with the target's vector compare and mask instructions (SSE2,
    /// NEON), through `wide`'s safe types: a vector classifies a block at several times the
    /// speed of the best word-at-a-time arithmetic here.
    fn of(block: &[u8; BLOCK]) -> Marks {
        let [quote, backslash, brace, bracket, close_brace, close_bracket] =
            [b'"', b'\\', b'{', b'[', b'}', b']'].map(u8x16::splat);
        let mut marks = Marks { quotes: 0, backslashes: 0, opens: 0, closes: 0 };
        for (lane, bytes) in block.chunks_exact(16).enumerate() {
            let Ok(bytes) = <[u8; 16]>::try_from(bytes) else { break };
            let v = u8x16::new(bytes);
            // `move_mask` gathers the high bit of each of the sixteen lanes.
            let bits = |m: u8x16| u64::from(m.move_mask() as u16) << (16 * lane);
            marks.quotes |= bits(v.cmp_eq(quote));
            marks.backslashes |= bits(v.cmp_eq(backslash));
            marks.opens |= bits(v.cmp_eq(brace) | v.cmp_eq(bracket));
            marks.closes |= bits(v.cmp_eq(close_brace) | v.cmp_eq(close_bracket));
        }
        marks
    }
}

impl Nesting {
    /// Walks the first `len` bytes of `block` (the rest is zeros), stopping where the value
    /// closes or nests too deep.
    fn block(&mut self, block: &[u8; BLOCK], len: usize, max_depth: usize) -> BlockEnd {
        let marks = Marks::of(block);
        if marks.backslashes != 0 || self.escaped {
            // Escapes are rare in CloudTrail: their blocks go a byte at a time.
            return self.bytes(&block[..len], max_depth);
        }
        // With no escape, the quotes alone say which bytes are in strings: bit `i` of their
        // prefix XOR is the parity of the quotes up to byte `i`, set inside a string.
        let mut inside = marks.quotes;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        if self.in_string {
            inside = !inside;
        }
        let mut brackets = (marks.opens | marks.closes) & !inside;
        while brackets != 0 {
            let at = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            if let Some(end) = self.bracket(marks.opens >> at & 1 == 1, at, max_depth) {
                return end;
            }
        }
        self.in_string = len > 0 && inside >> (len - 1) & 1 == 1;
        BlockEnd::Open
    }

    /// [`Nesting::block`] a byte at a time, escapes included.
    fn bytes(&mut self, bytes: &[u8], max_depth: usize) -> BlockEnd {
        for (at, &byte) in bytes.iter().enumerate() {
            if self.escaped {
                self.escaped = false;
            } else if self.in_string {
                match byte {
                    b'"' => self.in_string = false,
                    b'\\' => self.escaped = true,
                    _ => {}
                }
            } else {
                let end = match byte {
                    b'"' => {
                        self.in_string = true;
                        None
                    }
                    b'{' | b'[' => self.bracket(true, at, max_depth),
                    b'}' | b']' => self.bracket(false, at, max_depth),
                    _ => None,
                };
                if let Some(end) = end {
                    return end;
                }
            }
        }
        BlockEnd::Open
    }

    /// A bracket outside strings, at `at` in its block.
    fn bracket(&mut self, opens: bool, at: usize, max_depth: usize) -> Option<BlockEnd> {
        if opens {
            self.depth += 1;
            return (self.depth > max_depth).then_some(BlockEnd::TooDeep(at));
        }
        // The value's first byte opened it, so a close finds a depth of at least 1.
        self.depth = self.depth.saturating_sub(1);
        (self.depth == 0).then_some(BlockEnd::Closed(at))
    }
}

/// The index of the first `"` or `\` in `bytes`. Most CloudTrail strings are a few dozen bytes,
/// where a word-at-a-time test beats the set-up cost of a vectorised search.
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let mut words = bytes.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let Ok(word) = <[u8; 8]>::try_from(word) else { break };
        let word = u64::from_le_bytes(word);
        // A byte of `x` is zero where the word held the wanted byte; `(x - 1) & !x` sets its
        // high bit. Borrows can only mark bytes after the first zero, so the lowest mark is exact.
        let (q, b) = (word ^ QUOTES, word ^ BACKSLASHES);
        let marks = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGHS;
        if marks != 0 {
            return Some(n * 8 + marks.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    tail.iter().position(|&c| c == b'"' || c == b'\\').map(|i| bytes.len() - tail.len() + i)
}

struct Scanner<R> {
    input: R,
    buf: Vec<u8>,
    /// Bytes of `buf` that hold data.
    len: usize,
    /// Scan position in `buf`.
    pos: usize,
    /// Start of the value being scanned; bytes before it may be dropped.
    start: usize,
    /// Start of a top-level object kept whole until we know it is a single record.
    pin: Option<usize>,
    /// Bytes dropped from the front of `buf` so far (for offsets in messages).
    dropped: u64,
    eof: bool,
    limits: Limits,
}

impl<R: Read> Scanner<R> {
    fn new(input: R, limits: Limits) -> Self {
        Scanner {
            input,
            buf: vec![0; READ_CHUNK],
            len: 0,
            pos: 0,
            start: 0,
            pin: None,
            dropped: 0,
            eof: false,
            limits,
        }
    }

    fn offset(&self) -> u64 {
        self.dropped + self.pos as u64
    }

    fn consumed(&self) -> u64 {
        self.dropped + self.len as u64
    }

    fn not_json(&self, byte: u8) -> ObjectError {
        ObjectError::NotJson { byte, offset: self.offset() }
    }

    fn malformed(&self, what: &'static str) -> ObjectError {
        ObjectError::Malformed { offset: self.offset(), what }
    }

    /// Reads more input. Returns false at the end of input.
    fn fill(&mut self) -> Result<bool, ObjectError> {
        if self.eof {
            return Ok(false);
        }
        let keep_from = self.pin.unwrap_or(self.start).min(self.start);
        let held = self.len - keep_from;
        let bound = self.limits.max_record_bytes.saturating_add(READ_CHUNK);
        if held > bound {
            return Err(ObjectError::RecordTooLarge {
                offset: self.dropped + keep_from as u64,
                limit: self.limits.max_record_bytes,
            });
        }
        if keep_from > 0 {
            self.buf.copy_within(keep_from..self.len, 0);
            self.len -= keep_from;
            self.pos -= keep_from;
            self.start -= keep_from;
            self.pin = self.pin.map(|p| p - keep_from);
            self.dropped += keep_from as u64;
        }
        if self.buf.len() - self.len < READ_CHUNK / 2 {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(decode::classify_io(e)),
            }
        }
    }

    /// The byte at `pos`, reading more input when needed; `None` at the end of input.
    fn byte(&mut self) -> Result<Option<u8>, ObjectError> {
        while self.pos >= self.len {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn byte_or_truncated(&mut self) -> Result<u8, ObjectError> {
        self.byte()?.ok_or(ObjectError::Truncated { offset: self.offset() })
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ObjectError> {
        loop {
            if self.pos >= self.len && !self.fill()? {
                return Ok(None);
            }
            let rest = &self.buf[self.pos..self.len];
            let blank = rest.iter().position(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
            self.pos += blank.unwrap_or(rest.len());
            if self.pin.is_none() {
                self.start = self.pos;
            }
            if blank.is_none() {
                continue;
            }
            let byte = self.buf[self.pos];
            // A UTF-8 byte-order mark before the first value is tolerated.
            if byte == 0xEF && self.offset() == 0 {
                self.pos += 1;
                for expected in [0xBB, 0xBF] {
                    if self.byte_or_truncated()? != expected {
                        return Err(self.not_json(0xEF));
                    }
                    self.pos += 1;
                }
                self.start = self.pos;
                continue;
            }
            return Ok(Some(byte));
        }
    }

    /// Skips whitespace between top-level values and returns the next value's first byte.
    fn peek_value(&mut self) -> Result<Option<u8>, ObjectError> {
        self.start = self.pos;
        self.skip_ws()
    }

    fn expect(&mut self, wanted: u8, what: &'static str) -> Result<(), ObjectError> {
        match self.skip_ws()? {
            Some(b) if b == wanted => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.malformed(what)),
            None => Err(ObjectError::Truncated { offset: self.offset() }),
        }
    }

    /// Scans the string starting at `pos` (on its opening quote).
    fn scan_string(&mut self) -> Result<(), ObjectError> {
        self.pos += 1;
        loop {
            if self.pos >= self.len && !self.fill()? {
                return Err(ObjectError::Truncated { offset: self.offset() });
            }
            match find_quote_or_backslash(&self.buf[self.pos..self.len]) {
                None => self.pos = self.len,
                Some(i) => {
                    self.pos += i;
                    if self.buf[self.pos] == b'"' {
                        self.pos += 1;
                        return Ok(());
                    }
                    // An escape: skip the backslash and the byte it escapes.
                    self.pos += 1;
                    self.byte_or_truncated()?;
                    self.pos += 1;
                }
            }
        }
    }

    /// Scans one JSON value starting at the next non-blank byte and returns its byte range in
    /// `buf`, valid until the next call that reads input.
    fn scan_value(&mut self) -> Result<(usize, usize), ObjectError> {
        let first = self.skip_ws()?.ok_or(ObjectError::Truncated { offset: self.offset() })?;
        self.start = self.pos;
        match first {
            b'"' => self.scan_string()?,
            b'{' | b'[' => self.scan_nested()?,
            b'}' | b']' | b',' | b':' => return Err(self.malformed("a value was expected")),
            _ => loop {
                match self.byte()? {
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' | b':') => break,
                    Some(b'"' | b'{' | b'[') => return Err(self.malformed("unexpected value")),
                    Some(_) => self.pos += 1,
                }
            },
        }
        Ok((self.start, self.pos))
    }

    /// Scans an object or array starting at `pos` (on its opening bracket) to its matching
    /// close. This is where ingest spends most of its splitting time, so it classifies the
    /// buffered bytes a block at a time ([`Nesting::block`]).
    fn scan_nested(&mut self) -> Result<(), ObjectError> {
        let max_depth = self.limits.max_depth;
        let mut nesting = Nesting::default();
        let mut tail = [0u8; BLOCK];
        loop {
            if self.pos >= self.len && !self.fill()? {
                return Err(ObjectError::Truncated { offset: self.offset() });
            }
            let bytes = &self.buf[..self.len];
            let mut at = self.pos;
            while at < bytes.len() {
                let len = (bytes.len() - at).min(BLOCK);
                let block = match bytes.get(at..at + BLOCK).and_then(|b| <&[u8; BLOCK]>::try_from(b).ok()) {
                    Some(whole) => whole,
                    None => {
                        tail[..len].copy_from_slice(&bytes[at..at + len]);
                        tail[len..].fill(0);
                        &tail
                    }
                };
                match nesting.block(block, len, max_depth) {
                    BlockEnd::Open => at += len,
                    BlockEnd::Closed(i) => {
                        self.pos = at + i + 1;
                        return Ok(());
                    }
                    BlockEnd::TooDeep(i) => {
                        self.pos = at + i;
                        return Err(ObjectError::TooDeep { offset: self.offset(), limit: max_depth });
                    }
                }
            }
            self.pos = at;
        }
    }

    /// Walks a top-level object key by key. Streams the elements of `Records` or `Events`;
    /// otherwise keeps the whole object pinned so it can be handed on as one record.
    fn top_object<E>(&mut self, on_element: &mut OnElement<'_, E>) -> Result<TopObject, ScanError<E>> {
        self.pin = Some(self.pos);
        self.pos += 1;
        let mut streamed = None;
        let mut record_keys = false;
        let mut digest_keys = false;
        if self.skip_ws()? == Some(b'}') {
            self.pos += 1;
            return Ok(TopObject::Other(Shape::Unknown));
        }
        loop {
            if self.skip_ws()? != Some(b'"') {
                return Err(self.malformed("an object key was expected").into());
            }
            let (ks, ke) = self.scan_value()?;
            let element = match &self.buf[ks..ke] {
                b"\"Records\"" => Some(Element::Record),
                b"\"Events\"" => Some(Element::LookupEntry),
                b"\"eventVersion\"" | b"\"eventName\"" | b"\"eventSource\"" | b"\"eventID\"" => {
                    record_keys = true;
                    None
                }
                b"\"digestStartTime\"" | b"\"logFiles\"" | b"\"digestS3Object\"" => {
                    digest_keys = true;
                    None
                }
                _ => None,
            };
            self.expect(b':', "':' was expected after an object key")?;
            match element {
                Some(kind) if streamed.is_none() => {
                    self.pin = None;
                    self.stream_array(kind, on_element)?;
                    streamed = Some(kind);
                }
                _ => {
                    self.scan_value()?;
                }
            }
            match self.skip_ws()? {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return Err(self.malformed("',' or '}' was expected in an object").into()),
                None => return Err(ObjectError::Truncated { offset: self.offset() }.into()),
            }
        }
        Ok(match streamed {
            Some(Element::Record) => TopObject::Records,
            Some(Element::LookupEntry) => TopObject::Events,
            None if digest_keys && !record_keys => TopObject::Other(Shape::Digest),
            None if record_keys => TopObject::Other(Shape::Record),
            None => TopObject::Other(Shape::Unknown),
        })
    }

    fn stream_array<E>(
        &mut self,
        kind: Element,
        on_element: &mut OnElement<'_, E>,
    ) -> Result<(), ScanError<E>> {
        match self.skip_ws()? {
            Some(b'[') => self.pos += 1,
            Some(_) => {
                return Err(ObjectError::NotCloudTrail(match kind {
                    Element::Record => "\"Records\" is not an array",
                    Element::LookupEntry => "\"Events\" is not an array",
                })
                .into());
            }
            None => return Err(ObjectError::Truncated { offset: self.offset() }.into()),
        }
        if self.skip_ws()? == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let (s, e) = self.scan_value()?;
            if e - s > self.limits.max_record_bytes {
                return Err(ObjectError::RecordTooLarge {
                    offset: self.dropped + s as u64,
                    limit: self.limits.max_record_bytes,
                }
                .into());
            }
            on_element(kind, &self.buf[s..e]).map_err(ScanError::Callback)?;
            match self.skip_ws()? {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => return Err(self.malformed("',' or ']' was expected in an array").into()),
                None => return Err(ObjectError::Truncated { offset: self.offset() }.into()),
            }
        }
    }

    fn pinned_bytes(&self) -> &[u8] {
        &self.buf[self.pin.unwrap_or(self.pos)..self.pos]
    }

    fn unpin(&mut self) {
        self.pin = None;
        self.start = self.pos;
    }
}
