//! Reading one object for verification: a log file's SHA-256, or a digest's content.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use granttrail_cloudtrail::digest::{
    Digest, Sha256, read_content, sha256, sha256_of_content, stored_bytes_bound,
};
use granttrail_cloudtrail::{KeyClass, ObjectKey};
pub(crate) use granttrail_grants::integrity::file_name;
use granttrail_grants::timestamp;

/// A digest lists an hour of log files in a few hundred bytes each: one larger than this is
/// not a CloudTrail digest.
pub const MAX_DIGEST_BYTES: u64 = 64 * 1024 * 1024;

/// The most bytes a digest object is read into memory as stored.
pub const MAX_DIGEST_STORED_BYTES: u64 = stored_bytes_bound(MAX_DIGEST_BYTES);

/// A log file, read.
#[derive(Debug, Clone)]
pub struct LogObject {
    /// The name it is reported (and stored by `ingest`) under: a path or `s3://bucket/key`.
    pub name: String,
    /// The file name, which is how digests are matched to copies laid out in any folders.
    pub file: String,
    pub account: Option<String>,
    pub region: Option<String>,
    /// The delivery time in the file name (to the minute), seconds since the epoch.
    pub delivered: Option<i64>,
    /// The SHA-256 of the decompressed content, or why it could not be read; `None` when only
    /// its name is known (listed in a bucket, not read): then it can only be found unlisted.
    pub sha256: Option<Result<Sha256, String>>,
}

/// A digest file, read.
#[derive(Debug, Clone)]
pub struct DigestObject {
    pub name: String,
    /// Where it was found: a local path, or the S3 key (with [`DigestObject::bucket`]).
    pub key: String,
    pub bucket: Option<String>,
    /// The digest and the SHA-256 of its decompressed content, or why it could not be read.
    pub content: Result<(Digest, Sha256), String>,
    /// The signature in the object's `x-amz-meta-signature` metadata (S3 only).
    pub metadata_signature: Option<String>,
}

/// One object to judge.
#[derive(Debug, Clone)]
pub enum Input {
    Log(LogObject),
    Digest(Box<DigestObject>),
}

/// Hashes a log file's decompressed content (at most `max_bytes` of it).
pub fn read_log(name: String, key: &str, reader: impl Read, max_bytes: u64) -> LogObject {
    let sha256 = sha256_of_content(reader, max_bytes).map_err(|e| format!("cannot be read: {e}"));
    hashed_log(name, key, sha256)
}

/// A log file read whole from where it is stored (at most [`stored_bytes_bound`] of
/// `max_bytes`, as `stored` tells): hashed; or, larger, a file whose content cannot be read, as
/// [`read_log`] judges content over the limit. Any other error is the read's, returned.
pub fn log_from_stored(
    name: String,
    key: &str,
    stored: io::Result<Vec<u8>>,
    max_bytes: u64,
) -> io::Result<LogObject> {
    match stored {
        Ok(bytes) => Ok(read_log(name, key, bytes.as_slice(), max_bytes)),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            Ok(hashed_log(name, key, Err(format!("cannot be read: {e}"))))
        }
        Err(e) => Err(e),
    }
}

/// A digest read whole from where it is stored (at most [`MAX_DIGEST_STORED_BYTES`], as
/// `stored` tells), with the signature in its metadata: parsed, or, larger, unreadable. Any
/// other error is the read's, returned.
pub fn digest_from_stored(
    name: String,
    key: &str,
    bucket: Option<String>,
    stored: io::Result<(Vec<u8>, Option<String>)>,
) -> io::Result<DigestObject> {
    match stored {
        Ok((bytes, signature)) => Ok(read_digest(name, key, bucket, bytes.as_slice(), signature)),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Ok(DigestObject {
            name,
            key: key.to_string(),
            bucket,
            content: Err(format!("cannot be read: {e}")),
            metadata_signature: None,
        }),
        Err(e) => Err(e),
    }
}

/// A log file whose content was hashed elsewhere (by `ingest --verify`, as it read the records).
pub fn hashed_log(name: String, key: &str, sha256: Result<Sha256, String>) -> LogObject {
    LogObject { sha256: Some(sha256), ..named_log(name, key) }
}

/// A log file known by its name only (listed in a bucket): enough to find it unlisted.
pub fn named_log(name: String, key: &str) -> LogObject {
    let parsed = ObjectKey::parse(key);
    LogObject {
        name,
        file: file_name(key).to_string(),
        delivered: delivered_at(&parsed),
        account: parsed.account,
        region: parsed.region,
        sha256: None,
    }
}

/// Reads and parses a digest file.
pub fn read_digest(
    name: String,
    key: &str,
    bucket: Option<String>,
    reader: impl Read,
    metadata_signature: Option<String>,
) -> DigestObject {
    let content = inflate(reader).and_then(|bytes| {
        let digest = Digest::parse(&bytes).map_err(|e| e.to_string())?;
        Ok((digest, sha256(&bytes)))
    });
    DigestObject { name, key: key.to_string(), bucket, content, metadata_signature }
}

fn inflate(reader: impl Read) -> Result<Vec<u8>, String> {
    read_content(reader, MAX_DIGEST_BYTES).map_err(|e| format!("cannot be read: {e}"))
}

/// The delivery time in a log file's name (to the minute), seconds since the epoch.
pub(crate) fn delivered_at(key: &ObjectKey) -> Option<i64> {
    key.delivered.and_then(|((y, m, d), hh, mm)| {
        timestamp::parse(&format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:00Z"))
    })
}

/// What [`read_paths`] found besides the inputs.
#[derive(Debug, Default)]
pub struct PathsRead {
    pub inputs: Vec<Input>,
    /// Files that are neither CloudTrail log files nor digests (Insights files, other logs).
    pub other_files: u64,
    /// Paths that could not be read at all.
    pub errors: Vec<(PathBuf, String)>,
}

/// Reads files and directories (walked recursively) on `jobs` threads: each log file hashed,
/// each digest parsed. Files are told apart by their names, as CloudTrail writes them.
pub fn read_paths(paths: &[PathBuf], jobs: usize, max_object_bytes: u64) -> PathsRead {
    let mut found = PathsRead::default();
    let mut files = Vec::new();
    for path in paths {
        // Links are followed, as ingest follows them.
        for entry in walkdir::WalkDir::new(path).follow_links(true).sort_by_file_name() {
            match entry {
                Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                Ok(_) => {}
                Err(e) => {
                    let at = e.path().map_or_else(|| path.clone(), Path::to_path_buf);
                    found.errors.push((at, e.to_string()));
                }
            }
        }
    }
    let wanted: Vec<(PathBuf, KeyClass)> = files
        .into_iter()
        .filter_map(|path| match ObjectKey::parse(&path.to_string_lossy()).class {
            class @ (KeyClass::Log | KeyClass::Digest) => Some((path, class)),
            KeyClass::Insight | KeyClass::Other => {
                found.other_files += 1;
                None
            }
        })
        .collect();
    let results = read_parallel(&wanted, jobs, |(path, class)| read_file(path, *class, max_object_bytes));
    for ((path, _), result) in wanted.iter().zip(results) {
        match result {
            Ok(input) => found.inputs.push(input),
            Err(e) => found.errors.push((path.clone(), e)),
        }
    }
    found
}

/// Runs `read` over `items` on `jobs` threads; the results come back in the items' order.
pub fn read_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    read: impl Fn(&T) -> Result<Input, String> + Sync,
) -> Vec<Result<Input, String>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Input, String>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64).min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = read(item);
                    if let Some(slot) = results.get(i)
                        && let Ok(mut slot) = slot.lock()
                    {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten().unwrap_or_else(|| Err("not read".to_string())))
        .collect()
}

pub(crate) fn read_file(path: &Path, class: KeyClass, max_object_bytes: u64) -> Result<Input, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let name = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    let key = path.to_string_lossy();
    Ok(match class {
        KeyClass::Digest => Input::Digest(Box::new(read_digest(name, &key, None, file, None))),
        _ => Input::Log(read_log(name, &key, file, max_object_bytes)),
    })
}
