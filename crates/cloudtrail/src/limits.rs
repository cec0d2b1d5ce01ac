/// Bounds on what one object may cost. Every limit turns into a clear error naming the object
/// instead of unbounded memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes one object may hold. CloudTrail objects are at most 50 MB compressed
    /// and compress about 7-20x, so 2 GiB leaves room while stopping decompression bombs.
    pub max_object_bytes: u64,
    /// Bytes one record may take. CloudTrail caps events at 256 KB (1 MB in Lake).
    pub max_record_bytes: usize,
    /// JSON nesting depth one record may reach. Real records nest fewer than 10 levels.
    pub max_depth: usize,
}

impl Limits {
    pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_MAX_DEPTH: usize = 128;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: Self::DEFAULT_MAX_OBJECT_BYTES,
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}
