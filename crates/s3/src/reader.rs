//! An S3 object body as a blocking [`Read`], so the synchronous ingest pipeline streams it
//! chunk by chunk instead of downloading the object first.

use std::io::{self, Read};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Buf;
use tokio::runtime::Handle;

use granttrail_cloudtrail::digest::read_at_most;

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
    let response =
        handle.block_on(client.get_object().bucket(bucket).key(key).send()).map_err(get_object_error)?;
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
    let response =
        handle.block_on(client.get_object().bucket(bucket).key(key).send()).map_err(get_object_error)?;
    let signature = response.metadata().and_then(|m| m.get("signature")).cloned();
    Ok((BodyReader::new(response.body, handle.clone()), signature))
}

/// An object's bytes, whole: for verifying, where a failed transfer must be told from content
/// that does not hash as listed (it is an error, not an altered file). More than `max_bytes`
/// is an error of kind [`io::ErrorKind::FileTooLarge`], found before they are all in memory.
pub fn fetch_object(
    client: &Client,
    handle: &Handle,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> io::Result<Vec<u8>> {
    read_at_most(open_object(client, handle, bucket, key)?, max_bytes)
}

/// A digest's bytes, whole (at most `max_bytes`, as [`fetch_object`]), and the signature in
/// its metadata ([`open_digest_object`]).
pub fn fetch_digest_object(
    client: &Client,
    handle: &Handle,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> io::Result<(Vec<u8>, Option<String>)> {
    let (body, signature) = open_digest_object(client, handle, bucket, key)?;
    Ok((read_at_most(body, max_bytes)?, signature))
}

/// A failed GetObject as an I/O error; an object that does not exist is [`io::ErrorKind::NotFound`],
/// so that a verifier can tell a missing file from a failed request.
fn get_object_error(
    e: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> io::Error {
    let kind = match e.as_service_error() {
        Some(service) if service.is_no_such_key() => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, S3Error::new("GetObject", e))
}
