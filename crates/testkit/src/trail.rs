//! A CloudTrail trail with log file validation, made up for tests: gzip log files and hourly
//! digests chained and signed as CloudTrail documents them, with an RSA key of the test's own.
//!
//! The signing text is written out here from the documentation, independently of
//! granttrail's own code, so a mistake there cannot be mirrored here.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use serde_json::json;

/// One account and region of a trail, with its objects.
pub struct SignedTrail {
    key: KeyPair,
    pub fingerprint: String,
    pub bucket: String,
    pub account: String,
    pub region: String,
    /// Prepended to every key (`prefix/AWSLogs/...`); empty for none.
    pub prefix: String,
    /// `o-...` for an organization trail's layout.
    pub org_id: Option<String>,
    trail: String,
    /// Objects by key: gzip bytes.
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Each digest's signature, as S3 keeps it in `x-amz-meta-signature`.
    pub signatures: BTreeMap<String, String>,
    pending: Vec<(String, String)>,
    previous: Option<Previous>,
    serial: u32,
}

struct Previous {
    key: String,
    sha256: String,
    signature: String,
}

impl SignedTrail {
    pub fn new(account: &str, region: &str) -> SignedTrail {
        #[allow(clippy::expect_used)]
        let key = KeyPair::generate(KeySize::Rsa2048).expect("an RSA key for the test trail");
        let fingerprint = hex(&digest(&SHA256, key.public_key().as_ref()).as_ref()[..16]);
        SignedTrail {
            key,
            fingerprint,
            bucket: "trail-bucket".to_string(),
            account: account.to_string(),
            region: region.to_string(),
            prefix: String::new(),
            org_id: None,
            trail: "org-trail_name".to_string(),
            objects: BTreeMap::new(),
            signatures: BTreeMap::new(),
            pending: Vec::new(),
            previous: None,
            serial: 0,
        }
    }

    fn root(&self) -> String {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let org = self.org_id.as_ref().map(|o| format!("{o}/")).unwrap_or_default();
        format!("{prefix}AWSLogs/{org}{}", self.account)
    }

    /// Adds a log file delivered at `at` (`YYYY-MM-DDTHH:MM:SSZ`) holding `records` (a JSON
    /// array's items) and returns its key. The next digest lists it.
    pub fn log_file(&mut self, at: &str, records: &[serde_json::Value]) -> String {
        self.serial += 1;
        let stamp = &compact(at)[..13];
        let key = format!(
            "{}/CloudTrail/{}/{}/{}_CloudTrail_{}_{stamp}Z_{:016}.json.gz",
            self.root(),
            self.region,
            folders(at),
            self.account,
            self.region,
            self.serial
        );
        let body = json!({ "Records": records }).to_string();
        let sha = hex(digest(&SHA256, body.as_bytes()).as_ref());
        self.objects.insert(key.clone(), gzip(body.as_bytes()));
        self.pending.push((key.clone(), sha));
        key
    }

    /// Adds a log file at `key` (as found in a copy of a bucket) holding `content`; the next
    /// digest lists it.
    pub fn add_log_content(&mut self, key: &str, content: &str) {
        let sha = hex(digest(&SHA256, content.as_bytes()).as_ref());
        self.objects.insert(key.to_string(), gzip(content.as_bytes()));
        self.pending.push((key.to_string(), sha));
    }

    /// Adds the digest for `[start, end)` listing the log files added since the last one,
    /// chained to it and signed, and returns its key.
    pub fn digest(&mut self, start: &str, end: &str) -> String {
        self.write_digest(start, end, false)
    }

    /// Adds a backfill digest (`..._backfill.json.gz`) for `[start, end)` listing the log files
    /// added since the last digest: signed, but outside the hourly chain, as CloudTrail writes
    /// one for files it listed late.
    pub fn backfill_digest(&mut self, start: &str, end: &str) -> String {
        self.write_digest(start, end, true)
    }

    fn write_digest(&mut self, start: &str, end: &str, backfill: bool) -> String {
        let key = format!(
            "{}/CloudTrail-Digest/{}/{}/{}_CloudTrail-Digest_{}_{}_{}_{}{}.json.gz",
            self.root(),
            self.region,
            folders(end),
            self.account,
            self.region,
            self.trail,
            self.region,
            compact(end),
            if backfill { "_backfill" } else { "" }
        );
        let files: Vec<serde_json::Value> = self
            .pending
            .drain(..)
            .map(|(k, sha)| {
                json!({"s3Bucket": self.bucket, "s3Object": k, "hashValue": sha, "hashAlgorithm": "SHA-256",
                       "newestEventTime": start, "oldestEventTime": start})
            })
            .collect();
        let previous = if backfill { None } else { self.previous.take() };
        let body = json!({
            "awsAccountId": self.account,
            "digestStartTime": start,
            "digestEndTime": end,
            "digestS3Bucket": self.bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": self.fingerprint,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": end,
            "oldestEventTime": start,
            "previousDigestS3Bucket": previous.as_ref().map(|_| self.bucket.clone()),
            "previousDigestS3Object": previous.as_ref().map(|p| p.key.clone()),
            "previousDigestHashValue": previous.as_ref().map(|p| p.sha256.clone()),
            "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
            "previousDigestSignature": previous.as_ref().map(|p| p.signature.clone()),
            "logFiles": files,
        })
        .to_string();
        let sha256 = hex(digest(&SHA256, body.as_bytes()).as_ref());
        let previous_signature = previous.map_or_else(|| "null".to_string(), |p| p.signature);
        let text = format!("{end}\n{}/{key}\n{sha256}\n{previous_signature}", self.bucket);
        let signature = self.sign(text.as_bytes());
        self.objects.insert(key.clone(), gzip(body.as_bytes()));
        self.signatures.insert(key.clone(), signature.clone());
        if !backfill {
            self.previous = Some(Previous { key: key.clone(), sha256, signature });
        }
        key
    }

    /// Forgets the chain: the next digest starts a new one (validation was turned off and on).
    pub fn restart_chain(&mut self) {
        self.previous = None;
        self.pending.clear();
    }

    fn sign(&self, text: &[u8]) -> String {
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        #[allow(clippy::expect_used)]
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), text, &mut signature).expect("signing");
        hex(&signature)
    }

    /// `aws cloudtrail list-public-keys` output holding this trail's key.
    pub fn public_keys_json(&self) -> String {
        use base64::Engine as _;
        json!({"PublicKeyList": [{
            "Value": base64::engine::general_purpose::STANDARD.encode(self.key.public_key().as_ref()),
            "ValidityStartTime": "2020-01-01T00:00:00Z",
            "ValidityEndTime": "2030-01-01T00:00:00Z",
            "Fingerprint": self.fingerprint,
        }]})
        .to_string()
    }

    /// Writes every object under `dir` at its key, as `aws s3 sync` would.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (key, bytes) in &self.objects {
            let path = dir.join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        Ok(())
    }

    /// The decompressed content of an object.
    pub fn content(&self, key: &str) -> Option<String> {
        let bytes = self.objects.get(key)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut text).ok()?;
        Some(text)
    }

    /// Replaces an object's content (gzip-compressing it), as an intruder would.
    pub fn tamper(&mut self, key: &str, content: &str) {
        self.objects.insert(key.to_string(), gzip(content.as_bytes()));
    }
}

/// `YYYY/MM/DD` of a time.
fn folders(at: &str) -> String {
    format!("{}/{}/{}", &at[0..4], &at[5..7], &at[8..10])
}

/// `YYYYMMDDTHHMMSSZ` of a time.
fn compact(at: &str) -> String {
    at.replace(['-', ':'], "")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bundled example's files of one day folder (`day`, a key prefix from `AWSLogs/` on) under
/// `example`, as a signed trail of account 111122223333 in us-east-1 (organization
/// o-a1b2c3d4e5) lists them: digests for 09:00-10:00, 10:00-11:00 and 11:00-12:00. Returns the
/// trail and the log files' keys, in name order.
pub fn example_trail(example: &Path, day: &str) -> std::io::Result<(SignedTrail, Vec<String>)> {
    let mut trail = SignedTrail::new("111122223333", "us-east-1");
    trail.org_id = Some("o-a1b2c3d4e5".to_string());
    let dir = example.join(day);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        names.push(entry?.file_name());
    }
    names.sort();
    let mut keys = Vec::new();
    for name in names {
        let key = format!("{}/{}", day.trim_end_matches('/'), name.to_string_lossy());
        let mut content = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.join(&name))?),
            &mut content,
        )?;
        if key.contains("T1040Z") {
            trail.digest("2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z");
        }
        trail.add_log_content(&key, &content);
        keys.push(key);
    }
    trail.digest("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z");
    trail.digest("2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z");
    Ok((trail, keys))
}
