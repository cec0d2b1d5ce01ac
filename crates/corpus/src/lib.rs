//! Deterministic CloudTrail corpora for benchmarks and scale tests: a seeded random walk
//! through a small AWS organisation, written as a bucket in the S3 key layout.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};

pub struct Options {
    pub out: PathBuf,
    pub records: u64,
    pub kms_share: f64,
    /// Share of KMS records that create a grant (0.01 by default); 0.6 times as many end one.
    pub grant_share: f64,
    pub files: u64,
    pub accounts: u64,
    pub regions: u64,
    pub seed: u64,
    pub gzip: bool,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub files: u64,
    pub records: u64,
    pub kms: u64,
    pub grant_events: u64,
    pub json_bytes: u64,
    pub disk_bytes: u64,
}

/// splitmix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }

    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    fn alnum(&mut self, len: usize) -> String {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| ABC[self.below(ABC.len() as u64) as usize] as char).collect()
    }
}

const REGIONS: [&str; 8] = [
    "us-east-1",
    "eu-west-1",
    "us-west-2",
    "ap-southeast-2",
    "eu-central-1",
    "us-east-2",
    "ca-central-1",
    "sa-east-1",
];
const ROLES: [&str; 8] = [
    "app/OrdersService",
    "app/BatchJob",
    "ReadOnly",
    "DataPipeline",
    "ci/Deploy",
    "Admin",
    "etl/Loader",
    "AWSReservedSSO_PowerUser_0a1b2c3d4e5f",
];
const USER_AGENTS: [&str; 6] = [
    "aws-sdk-java/2.25.16 Linux/5.10.214-202.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "aws-cli/2.15.40 Python/3.11.8 Linux/6.1.0-18-cloud-amd64 exe/x86_64.debian.12 prompt/off command/s3.cp",
    "Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.84",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/kms#1.31.0",
    "console.amazonaws.com",
    "aws-sdk-js/3.554.0 ua/2.0 os/linux#5.10.214 lang/js md/nodejs#20.12.1 api/s3#3.554.0",
];
const NOISE: [(&str, &str); 10] = [
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "PutObject"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("sts.amazonaws.com", "AssumeRole"),
    ("lambda.amazonaws.com", "Invoke"),
    ("dynamodb.amazonaws.com", "GetItem"),
    ("logs.amazonaws.com", "PutLogEvents"),
    ("ssm.amazonaws.com", "GetParameter"),
    ("sqs.amazonaws.com", "ReceiveMessage"),
    ("monitoring.amazonaws.com", "PutMetricData"),
];

struct Grant {
    key: String,
    id: String,
    grantee_role: usize,
    account: usize,
    ops: Vec<&'static str>,
    context: Option<(String, String)>,
}

struct World {
    rng: Rng,
    accounts: Vec<String>,
    regions: Vec<&'static str>,
    /// Keys per (account, region), four each.
    keys: Vec<Vec<String>>,
    grants: Vec<Grant>,
    /// Seconds since the epoch of the walk's clock.
    now: i64,
    kms_share: f64,
    /// Rolls out of 1000 below which a KMS record creates a grant, and below which it ends one.
    create_below: u64,
    end_below: u64,
    kms: u64,
    grant_events: u64,
}

const START: i64 = 1_714_521_600; // 2024-05-01T00:00:00Z

fn iso(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl World {
    fn new(o: &Options) -> World {
        let mut rng = Rng(o.seed);
        let accounts: Vec<String> = (0..o.accounts)
            .map(|_| format!("{:012}", 100_000_000_000 + rng.below(899_999_999_999)))
            .collect();
        let regions: Vec<&'static str> = REGIONS[..o.regions as usize].to_vec();
        let mut keys = Vec::new();
        for a in &accounts {
            for r in &regions {
                keys.push((0..4).map(|_| format!("arn:aws:kms:{r}:{a}:key/{}", rng.uuid())).collect());
            }
        }
        World {
            rng,
            accounts,
            regions,
            keys,
            grants: Vec::new(),
            now: START,
            kms_share: o.kms_share,
            create_below: (o.grant_share * 1000.0).round() as u64,
            end_below: (o.grant_share * 1000.0).round() as u64 + (o.grant_share * 600.0).round() as u64,
            kms: 0,
            grant_events: 0,
        }
    }

    fn session(&mut self, account: usize, role: usize) -> Value {
        let a = &self.accounts[account];
        let role_path = ROLES[role];
        let name = role_path.rsplit('/').next().unwrap_or(role_path);
        let unique = format!("AROA{}", self.rng.alnum(17).to_uppercase());
        let session = format!("{}-{}", name.to_lowercase(), self.rng.below(1000));
        json!({
            "type": "AssumedRole",
            "principalId": format!("{unique}:{session}"),
            "arn": format!("arn:aws:sts::{a}:assumed-role/{name}/{session}"),
            "accountId": a,
            "accessKeyId": format!("ASIA{}", self.rng.alnum(16).to_uppercase()),
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": unique, "arn": format!("arn:aws:iam::{a}:role/{role_path}"),
                                  "accountId": a, "userName": name},
                "webIdFederationData": {},
                "attributes": {"creationDate": iso(self.now - 600), "mfaAuthenticated": "false"}
            }
        })
    }

    fn envelope(&mut self, source: &str, name: &str, identity: Value, region: &str, account: usize) -> Value {
        let agent = *self.rng.pick(&USER_AGENTS);
        let ip = format!("10.{}.{}.{}", self.rng.below(256), self.rng.below(256), self.rng.below(256));
        json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": iso(self.now),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "requestParameters": null,
            "responseElements": null,
            "requestID": self.rng.uuid(),
            "eventID": self.rng.uuid(),
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": self.accounts[account],
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": format!("{}.{region}.amazonaws.com", source.split('.').next().unwrap_or("api"))}
        })
    }

    fn noise(&mut self, account: usize, region: &'static str) -> Value {
        let (source, name) = *self.rng.pick(&NOISE);
        let role = self.rng.below(ROLES.len() as u64) as usize;
        let identity = self.session(account, role);
        let mut r = self.envelope(source, name, identity, region, account);
        let bucket = format!("data-{}-{}", self.accounts[account], region);
        r["requestParameters"] = match source {
            "s3.amazonaws.com" => {
                json!({"bucketName": bucket, "Host": format!("{bucket}.s3.{region}.amazonaws.com"),
                                         "key": format!("exports/{}/{}.parquet", self.rng.below(400), self.rng.hex(12))})
            }
            "ec2.amazonaws.com" => {
                json!({"instancesSet": {}, "filterSet": {"items": [{"name": "tag:team", "valueSet": {"items": [{"value": "payments"}]}}]}})
            }
            "sts.amazonaws.com" => {
                json!({"roleArn": format!("arn:aws:iam::{}:role/{}", self.accounts[account], ROLES[role]),
                                          "roleSessionName": format!("session-{}", self.rng.below(10_000)), "durationSeconds": 3600})
            }
            _ => {
                json!({"resource": format!("{}-{}", name.to_lowercase(), self.rng.hex(10)), "maxResults": 50})
            }
        };
        if source == "s3.amazonaws.com" {
            r["additionalEventData"] = json!({"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader", "x-amz-id-2": self.rng.alnum(60)});
            r["resources"] = json!([{"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/exports/x")},
                                     {"accountId": self.accounts[account], "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}]);
            r["readOnly"] = json!(name == "GetObject");
        }
        r
    }

    fn kms_record(&mut self, account: usize, region_index: usize) -> (Value, bool) {
        self.kms += 1;
        let region = self.regions[region_index];
        let key = self.keys[account * self.regions.len() + region_index][self.rng.below(4) as usize].clone();
        let roll = self.rng.below(1000);
        // By default 1 % of KMS records create grants, 0.6 % end them; the rest use keys.
        if roll < self.create_below {
            return (self.create_grant(account, region, &key), true);
        }
        if roll < self.end_below && !self.grants.is_empty() {
            let i = self.rng.below(self.grants.len() as u64) as usize;
            let g = self.grants.swap_remove(i);
            // Half of the ends are retirements.
            let retire = roll < self.create_below + (self.end_below - self.create_below) / 2;
            return (self.end_grant(&g, region, retire), true);
        }
        if roll < 500 && !self.grants.is_empty() {
            // A grantee uses its grant.
            let i = self.rng.below(self.grants.len() as u64) as usize;
            let (key, role, g_account, op, ctx) = {
                let g = &self.grants[i];
                let uses: Vec<&'static str> = g.ops.iter().copied().filter(|o| *o != "RetireGrant").collect();
                (g.key.clone(), g.grantee_role, g.account, *self.rng.pick(&uses), g.context.clone())
            };
            let identity = self.session(g_account, role);
            let g_region = key.split(':').nth(3).unwrap_or(region).to_string();
            let mut r = self.envelope("kms.amazonaws.com", op, identity, "us-east-1", account);
            r["awsRegion"] = json!(g_region);
            r["requestParameters"] = crypto_request(op, &key, ctx.as_ref());
            r["resources"] =
                json!([{"accountId": key.split(':').nth(4), "type": "AWS::KMS::Key", "ARN": key}]);
            return (r, false);
        }
        let op = *self.rng.pick(&[
            "Decrypt",
            "GenerateDataKey",
            "Encrypt",
            "Decrypt",
            "DescribeKey",
            "ListGrants",
        ]);
        let role = self.rng.below(ROLES.len() as u64) as usize;
        let identity = self.session(account, role);
        let mut r = self.envelope("kms.amazonaws.com", op, identity, region, account);
        r["requestParameters"] = crypto_request(op, &key, None);
        r["resources"] = json!([{"accountId": self.accounts[account], "type": "AWS::KMS::Key", "ARN": key}]);
        if self.rng.chance(0.01) {
            r["errorCode"] = json!("AccessDenied");
            r["errorMessage"] = json!("User is not authorized to perform this operation");
        }
        (r, false)
    }

    fn create_grant(&mut self, account: usize, region: &'static str, key: &str) -> Value {
        self.grant_events += 1;
        let admin = self.session(account, 5);
        let grantee_account =
            if self.rng.chance(0.1) { self.rng.below(self.accounts.len() as u64) as usize } else { account };
        let grantee_role = self.rng.below(5) as usize;
        let ops: Vec<&'static str> = match self.rng.below(3) {
            0 => vec!["Decrypt"],
            1 => vec!["Decrypt", "GenerateDataKey", "DescribeKey"],
            _ => vec!["Encrypt", "Decrypt", "RetireGrant"],
        };
        let context =
            self.rng.chance(0.5).then(|| ("app".to_string(), format!("tenant-{}", self.rng.below(50))));
        let id = self.rng.hex(64);
        let mut r = self.envelope("kms.amazonaws.com", "CreateGrant", admin, region, account);
        let mut request = json!({"keyId": key, "granteePrincipal": format!("arn:aws:iam::{}:role/{}", self.accounts[grantee_account], ROLES[grantee_role]),
                                  "operations": ops, "retiringPrincipal": format!("arn:aws:iam::{}:role/Admin", self.accounts[account])});
        if let Some((k, v)) = &context {
            request["constraints"] = json!({"encryptionContextSubset": {k: v}});
        }
        if self.rng.chance(0.3) {
            request["name"] = json!(format!("grant-{}", self.rng.alnum(8)));
        }
        r["requestParameters"] = request;
        r["responseElements"] = json!({"grantId": id, "keyId": key});
        r["readOnly"] = json!(false);
        r["resources"] = json!([{"accountId": self.accounts[account], "type": "AWS::KMS::Key", "ARN": key}]);
        self.grants.push(Grant {
            key: key.to_string(),
            id,
            grantee_role,
            account: grantee_account,
            ops,
            context,
        });
        r
    }

    fn end_grant(&mut self, g: &Grant, region: &'static str, retire: bool) -> Value {
        self.grant_events += 1;
        let owner =
            self.accounts.iter().position(|a| Some(a.as_str()) == g.key.split(':').nth(4)).unwrap_or(0);
        let admin = self.session(owner, 5);
        let name = if retire { "RetireGrant" } else { "RevokeGrant" };
        let mut r = self.envelope("kms.amazonaws.com", name, admin, region, owner);
        if retire {
            r["additionalEventData"] = json!({"grantId": g.id});
            r["responseElements"] = json!({"keyId": g.key});
        } else {
            r["requestParameters"] = json!({"keyId": g.key.rsplit('/').next(), "grantId": g.id});
        }
        r["readOnly"] = json!(false);
        r["resources"] = json!([{"accountId": self.accounts[owner], "type": "AWS::KMS::Key", "ARN": g.key}]);
        r
    }

    fn record(&mut self, account: usize, region_index: usize) -> (Value, bool, bool) {
        self.now += self.rng.below(3) as i64;
        if self.rng.chance(self.kms_share) {
            let (r, grant) = self.kms_record(account, region_index);
            (r, true, grant)
        } else {
            let region = self.regions[region_index];
            (self.noise(account, region), false, false)
        }
    }
}

fn crypto_request(op: &str, key: &str, context: Option<&(String, String)>) -> Value {
    let mut r = match op {
        "Decrypt" => json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        "GenerateDataKey" => json!({"keyId": key, "keySpec": "AES_256"}),
        "Encrypt" => json!({"keyId": key, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        "ListGrants" => json!({"keyId": key, "limit": 100}),
        _ => json!({"keyId": key}),
    };
    if let Some((k, v)) = context
        && op != "DescribeKey"
        && op != "ListGrants"
    {
        r["encryptionContext"] = json!({k: v});
    }
    r
}

/// Writes the corpus: `files` log files whose sizes vary (a few records to many), each in the
/// folder and with the name CloudTrail would give it.
pub fn write_corpus(o: &Options) -> anyhow::Result<Summary> {
    let mut world = World::new(o);
    let mut summary = Summary::default();
    // Uneven sizes: file i gets a weight from 1 to 20.
    let weights: Vec<u64> = (0..o.files).map(|_| 1 + world.rng.below(20)).collect();
    let total: u64 = weights.iter().sum();
    let mut written = 0u64;
    for (i, w) in weights.iter().enumerate() {
        let last = i as u64 + 1 == o.files;
        let n = if last { o.records - written } else { (o.records * w / total).min(o.records - written) };
        written += n;
        let account = i % world.accounts.len();
        let region_index = (i / world.accounts.len()) % world.regions.len();
        let region = world.regions[region_index];
        let (y, m, d) = civil(world.now.div_euclid(86_400));
        let stamp = {
            let delivered = world.now + 300;
            let (dy, dm, dd) = civil(delivered.div_euclid(86_400));
            let s = delivered.rem_euclid(86_400);
            format!("{dy:04}{dm:02}{dd:02}T{:02}{:02}Z", s / 3600, s / 60 % 60)
        };
        let a = world.accounts[account].clone();
        let folder = o.out.join(format!("AWSLogs/o-exampleorg/{a}/CloudTrail/{region}/{y:04}/{m:02}/{d:02}"));
        std::fs::create_dir_all(&folder)?;
        let ext = if o.gzip { "json.gz" } else { "json" };
        let path = folder.join(format!("{a}_CloudTrail_{region}_{stamp}_{}.{ext}", world.rng.alnum(16)));
        let file = BufWriter::new(File::create(&path)?);
        let mut out: Box<dyn Write> =
            if o.gzip { Box::new(GzEncoder::new(file, Compression::new(6))) } else { Box::new(file) };
        let mut bytes = 0u64;
        out.write_all(b"{\"Records\":[")?;
        for j in 0..n {
            let (r, kms, _) = world.record(account, region_index);
            let text = serde_json::to_vec(&r)?;
            if j > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&text)?;
            bytes += text.len() as u64 + 1;
            summary.records += 1;
            summary.kms += u64::from(kms);
        }
        out.write_all(b"]}")?;
        out.flush()?;
        drop(out);
        summary.json_bytes += bytes + 13;
        summary.disk_bytes += std::fs::metadata(&path)?.len();
        summary.files += 1;
    }
    summary.grant_events = world.grant_events;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso(START), "2024-05-01T00:00:00Z");
        assert_eq!(iso(START + 86_400 * 31 + 3661), "2024-06-01T01:01:01Z");
        assert_eq!(civil(0), (1970, 1, 1));
    }

    #[test]
    fn same_seed_same_bytes() {
        let dir = tempfile_dir();
        let write = |sub: &str| {
            let out = dir.join(sub);
            let o = Options {
                out: out.clone(),
                records: 500,
                kms_share: 0.3,
                grant_share: 0.01,
                files: 3,
                accounts: 2,
                regions: 2,
                seed: 7,
                gzip: false,
            };
            write_corpus(&o).unwrap();
            let mut files: Vec<_> = walk(&out);
            files.sort();
            files.iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(write("a"), write("b"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("granttrail-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
        out
    }
}
