//! An S3 object body as a blocking [`Read`], so the synchronous ingest pipeline streams it
//! chunk by chunk instead of downloading the object first.

use std::io::{self, Read};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Buf;
use tokio::runtime::Handle;

use crate::S3Error;

/// Reads a body by blocking on `handle` for each chunk. Use it from a plain thread or a
/// `spawn_blocking` task, never from inside an async task.
pub struct BodyReader {
    body: ByteStream,
    handle: Handle,
    chunk: bytes::Bytes,
}

impl BodyReader {
    pub fn new(body: ByteStream, handle: Handle) -> BodyReader {
        BodyReader { body, handle, chunk: bytes::Bytes::new() }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(S3Error::new("reading the object", e))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// Starts a GetObject and returns its body as a reader (blocking, like [`BodyReader`]).
pub fn open_object(client: &Client, handle: &Handle, bucket: &str, key: &str) -> io::Result<BodyReader> {
    let response = handle
        .block_on(client.get_object().bucket(bucket).key(key).send())
        .map_err(|e| io::Error::other(S3Error::new("GetObject", e)))?;
    Ok(BodyReader::new(response.body, handle.clone()))
}

/// Starts a GetObject and returns its body and the `x-amz-meta-signature` metadata CloudTrail
/// sets on a digest (the digest's own signature).
pub fn open_digest_object(
    client: &Client,
    handle: &Handle,
    bucket: &str,
    key: &str,
) -> io::Result<(BodyReader, Option<String>)> {
    let response = handle
        .block_on(client.get_object().bucket(bucket).key(key).send())
        .map_err(|e| io::Error::other(S3Error::new("GetObject", e)))?;
    let signature = response.metadata().and_then(|m| m.get("signature")).cloned();
    Ok((BodyReader::new(response.body, handle.clone()), signature))
}
