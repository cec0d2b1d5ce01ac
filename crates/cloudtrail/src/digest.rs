//! CloudTrail digest files (log file integrity validation) and what is needed to check them.
//!
//! Every hour CloudTrail writes, per account and region, a digest listing the log files it
//! delivered with the SHA-256 of each one's decompressed content. Digests form a chain: each
//! names the previous one with the SHA-256 of its decompressed content and its signature. A
//! digest's own signature (SHA256withRSA, hex) sits in the `x-amz-meta-signature` metadata of
//! its S3 object and, once the next hour's digest exists, in that digest's
//! `previousDigestSignature`: so a downloaded copy can still check every digest but the newest.
//!
//! The signed text is, joined by `\n`: the digest's end time as written in it, `bucket/key` of
//! the digest, the hex SHA-256 of the decompressed digest, and the previous digest's signature
//! (the four letters `null` for the first digest of a chain).

use std::io::{self, BufReader, Read};

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;

use crate::decode::is_gzip;

/// The one signature algorithm CloudTrail documents for digests.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// A SHA-256 value.
pub type Sha256 = [u8; 32];

/// A digest file's content (the fields granttrail uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: String,
    #[serde(default)]
    pub previous_digest_s3_bucket: Option<String>,
    #[serde(default)]
    pub previous_digest_s3_object: Option<String>,
    #[serde(default)]
    pub previous_digest_hash_value: Option<String>,
    #[serde(default)]
    pub previous_digest_hash_algorithm: Option<String>,
    #[serde(default)]
    pub previous_digest_signature: Option<String>,
    #[serde(default)]
    pub log_files: Vec<ListedLogFile>,
}

/// A log file as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedLogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    pub hash_value: String,
    pub hash_algorithm: String,
}

/// Why a digest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("not a CloudTrail digest: {0}")]
    Format(#[from] serde_json::Error),
    #[error("{field} is not a hex SHA-256 value: {value:?}")]
    BadHash { field: &'static str, value: String },
    #[error("unsupported {field} {value:?} (CloudTrail digests use {expected})")]
    Algorithm { field: &'static str, value: String, expected: &'static str },
}

impl Digest {
    /// Parses a digest's decompressed JSON and checks that its hash and signature algorithms are
    /// the documented ones, so a later comparison never silently compares different things.
    pub fn parse(json: &[u8]) -> Result<Digest, DigestError> {
        let digest: Digest = serde_json::from_slice(json)?;
        if digest.digest_signature_algorithm != SIGNATURE_ALGORITHM {
            return Err(DigestError::Algorithm {
                field: "digestSignatureAlgorithm",
                value: digest.digest_signature_algorithm,
                expected: SIGNATURE_ALGORITHM,
            });
        }
        let algorithms = digest
            .previous_digest_hash_algorithm
            .iter()
            .map(|a| ("previousDigestHashAlgorithm", a))
            .chain(digest.log_files.iter().map(|f| ("hashAlgorithm", &f.hash_algorithm)));
        for (field, value) in algorithms {
            if value != "SHA-256" {
                return Err(DigestError::Algorithm { field, value: value.clone(), expected: "SHA-256" });
            }
        }
        digest.previous_hash()?;
        for file in &digest.log_files {
            file.hash()?;
        }
        Ok(digest)
    }

    /// The SHA-256 the digest records for the previous digest, if it names one.
    pub fn previous_hash(&self) -> Result<Option<Sha256>, DigestError> {
        self.previous_digest_hash_value
            .as_deref()
            .map(|hex| {
                decode_sha256(hex).ok_or_else(|| DigestError::BadHash {
                    field: "previousDigestHashValue",
                    value: hex.to_string(),
                })
            })
            .transpose()
    }

    /// The text CloudTrail signed for this digest, given the SHA-256 of its decompressed content.
    pub fn signing_string(&self, own_hash: &Sha256) -> String {
        format!(
            "{}\n{}/{}\n{}\n{}",
            self.digest_end_time,
            self.digest_s3_bucket,
            self.digest_s3_object,
            hex(own_hash),
            self.previous_digest_signature.as_deref().unwrap_or("null")
        )
    }
}

impl ListedLogFile {
    /// The SHA-256 the digest lists for this log file.
    pub fn hash(&self) -> Result<Sha256, DigestError> {
        decode_sha256(&self.hash_value)
            .ok_or_else(|| DigestError::BadHash { field: "hashValue", value: self.hash_value.clone() })
    }
}

/// The keys of `aws cloudtrail list-public-keys` output, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: Vec<(String, Vec<u8>)>,
}

/// Why a public-keys file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeysError {
    #[error("not `aws cloudtrail list-public-keys` output: {0}")]
    Format(#[from] serde_json::Error),
    #[error("the key with fingerprint {0} is not base64")]
    Base64(String),
}

impl PublicKeys {
    /// Reads `{"PublicKeyList":[{"Value": base64 DER (PKCS#1), "Fingerprint": ...}, ...]}`.
    pub fn parse(json: &[u8]) -> Result<PublicKeys, PublicKeysError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Listing {
            public_key_list: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            value: String,
            fingerprint: String,
        }
        let listing: Listing = serde_json::from_slice(json)?;
        let keys = listing
            .public_key_list
            .into_iter()
            .map(|e| {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(e.value.trim())
                    .map_err(|_| PublicKeysError::Base64(e.fingerprint.clone()))?;
                Ok((e.fingerprint, der))
            })
            .collect::<Result<_, PublicKeysError>>()?;
        Ok(PublicKeys { keys })
    }

    /// The key (DER, PKCS#1) with this fingerprint.
    pub fn get(&self, fingerprint: &str) -> Option<&[u8]> {
        self.keys.iter().find(|(f, _)| f == fingerprint).map(|(_, der)| der.as_slice())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Does `signature_hex` sign `text` with the RSA key `public_key_der` (PKCS#1 v1.5, SHA-256)?
/// A signature that is not hex is simply not valid.
pub fn signature_is_valid(public_key_der: &[u8], text: &[u8], signature_hex: &str) -> bool {
    let Some(signature) = decode_hex(signature_hex) else { return false };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_der).verify(text, &signature).is_ok()
}

/// The SHA-256 of an object's content as CloudTrail hashes it: decompressed when the bytes are
/// gzip (a copy someone decompressed hashes the same). At most `max_bytes` are hashed.
pub fn sha256_of_content(reader: impl Read, max_bytes: u64) -> io::Result<Sha256> {
    let mut context = Context::new(&SHA256);
    for_each_chunk(reader, max_bytes, |chunk| context.update(chunk))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    Ok(out)
}

/// The most bytes an object can take as stored (gzip's worst case, stored blocks, and then
/// some) when its content is at most `max_content`: a larger one is refused before it is read
/// whole into memory.
pub const fn stored_bytes_bound(max_content: u64) -> u64 {
    max_content.saturating_add(max_content / 1024).saturating_add(1 << 16)
}

/// An object's bytes as stored, whole, or an error of kind [`io::ErrorKind::FileTooLarge`]
/// once there are more than `max_bytes` of them: a copy for verifying, where a failed read must
/// be told from content that does not hash as listed.
pub fn read_at_most(reader: impl Read, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max_bytes} bytes as stored"),
        ));
    }
    Ok(bytes)
}

/// An object's content, decompressed when the bytes are gzip; at most `max_bytes` of it.
pub fn read_content(reader: impl Read, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    for_each_chunk(reader, max_bytes, |chunk| content.extend_from_slice(chunk))?;
    Ok(content)
}

fn for_each_chunk(reader: impl Read, max_bytes: u64, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let gzip = is_gzip(io::BufRead::fill_buf(&mut reader)?);
    let mut content: Box<dyn Read> =
        if gzip { Box::new(MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match content.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > max_bytes {
            return Err(io::Error::other(format!("larger than {max_bytes} bytes once decompressed")));
        }
        f(buffer.get(..n).unwrap_or_default());
    }
}

/// The SHA-256 of bytes already in memory.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&SHA256, bytes).as_ref());
    out
}

/// Lower-case hex, as CloudTrail writes hashes and signatures.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex (either case) to bytes; `None` for odd lengths or other characters.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

fn decode_sha256(text: &str) -> Option<Sha256> {
    decode_hex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

    const SAMPLE: &str = r#"{
      "awsAccountId": "111122223333",
      "digestStartTime": "2015-08-17T14:01:31Z",
      "digestEndTime": "2015-08-17T15:01:31Z",
      "digestS3Bucket": "bucket",
      "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/d.json.gz",
      "digestPublicKeyFingerprint": "31e8",
      "digestSignatureAlgorithm": "SHA256withRSA",
      "previousDigestS3Bucket": null,
      "previousDigestS3Object": null,
      "previousDigestHashValue": null,
      "previousDigestHashAlgorithm": null,
      "previousDigestSignature": null,
      "logFiles": []
    }"#;

    #[test]
    fn hex_round_trips_and_rejects_non_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn the_first_digest_of_a_chain_signs_the_word_null() {
        let digest = Digest::parse(SAMPLE.as_bytes()).unwrap();
        let text = digest.signing_string(&[0x11; 32]);
        assert_eq!(
            text,
            format!(
                "2015-08-17T15:01:31Z\nbucket/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/d.json.gz\n{}\nnull",
                "11".repeat(32)
            )
        );
    }

    #[test]
    fn other_algorithms_are_refused_not_compared() {
        let md5 = SAMPLE.replace("SHA256withRSA", "MD5withRSA");
        assert!(matches!(Digest::parse(md5.as_bytes()), Err(DigestError::Algorithm { .. })));
        let listed = SAMPLE.replace(
            r#""logFiles": []"#,
            r#""logFiles": [{"s3Bucket":"b","s3Object":"k","hashValue":"00","hashAlgorithm":"SHA-256"}]"#,
        );
        assert!(matches!(
            Digest::parse(listed.as_bytes()),
            Err(DigestError::BadHash { field: "hashValue", .. })
        ));
    }

    #[test]
    fn a_gzip_copy_and_a_decompressed_copy_hash_alike() {
        use std::io::Write as _;
        let content = br#"{"Records":[]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(content).unwrap();
        let gz = gz.finish().unwrap();
        let plain = sha256_of_content(&content[..], 1 << 20).unwrap();
        assert_eq!(sha256_of_content(gz.as_slice(), 1 << 20).unwrap(), plain);
        assert_eq!(plain, sha256(content));
        assert!(sha256_of_content(gz.as_slice(), 4).is_err(), "the size limit holds");
    }

    #[test]
    fn signatures_verify_only_for_the_signed_text_and_key() {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), b"text", &mut signature).unwrap();
        let signature = hex(&signature);
        let der = key.public_key().as_ref();
        assert!(signature_is_valid(der, b"text", &signature));
        assert!(!signature_is_valid(der, b"texT", &signature));
        assert!(!signature_is_valid(other.public_key().as_ref(), b"text", &signature));
        assert!(!signature_is_valid(der, b"text", "not hex"));
    }

    #[test]
    fn public_keys_are_found_by_fingerprint() {
        let json = br#"{"PublicKeyList":[{"Value":"AAEC","ValidityStartTime":"2024-01-01T00:00:00Z","ValidityEndTime":"2025-01-01T00:00:00Z","Fingerprint":"ab12"}]}"#;
        let keys = PublicKeys::parse(json).unwrap();
        assert_eq!(keys.get("ab12"), Some(&[0u8, 1, 2][..]));
        assert_eq!(keys.get("ffff"), None);
        assert!(PublicKeys::parse(br#"{"PublicKeyList":[{"Value":"!!","Fingerprint":"x"}]}"#).is_err());
    }

    /// Content at the limit, however badly it compresses, is read; more than the bound is
    /// refused as too large before it is all in memory.
    #[test]
    fn reading_whole_stops_at_the_bound() {
        use std::io::Write;
        let max = 300_000u64;
        let mut noise = vec![0u8; max as usize];
        aws_lc_rs::rand::fill(&mut noise).unwrap();
        for level in [flate2::Compression::none(), flate2::Compression::fast(), flate2::Compression::best()] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
            gz.write_all(&noise).unwrap();
            let stored = gz.finish().unwrap();
            let read = read_at_most(stored.as_slice(), stored_bytes_bound(max)).unwrap();
            assert_eq!(sha256_of_content(read.as_slice(), max).unwrap(), sha256(&noise));
        }
        let too_many = vec![b' '; 1000];
        let refused = read_at_most(too_many.as_slice(), 999).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(read_at_most(too_many.as_slice(), 1000).unwrap().len(), 1000);
    }
}
