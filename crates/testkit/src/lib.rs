//! Test support: the outside programs granttrail's tests drive (installed by
//! `scripts/test-tools`), a moto S3 server on loopback, and a Lambda Runtime API.
#![forbid(unsafe_code)]
// Test support fails loudly: a broken harness must stop the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod postgres;
mod runtime_api;
pub mod scenario;
mod sink;
pub mod trail;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use postgres::{PASSWORD_ROLE, Postgres};
pub use runtime_api::{Invocation, RuntimeApi};
pub use sink::HttpSink;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds `program` of the tool `venv` installed by `scripts/test-tools` (in
/// `$GRANTTRAIL_TOOLS` or the repository's `.tools/`). When it is missing the test is skipped
/// with a message, except under CI (`CI` set), where a missing tool is a failure.
pub fn tool(venv: &str, program: &str) -> Option<PathBuf> {
    let roots = std::env::var_os("GRANTTRAIL_TOOLS")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo_root().join(".tools")]);
    for root in roots {
        let path = root.join(venv).join("bin").join(program);
        if path.is_file() {
            return Some(path);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("{program} is not installed: run scripts/test-tools (CI must run every test)");
    }
    eprintln!("skipped: {program} is not installed (scripts/test-tools installs it)");
    None
}

/// Every file under `dir`, recursively, in path order.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// moto's S3-compatible server on a loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    log: PathBuf,
    pub endpoint: String,
}

impl Moto {
    /// Starts the server, or `None` (test skipped) when moto is not installed.
    pub fn start() -> Option<Moto> {
        let program = tool("moto", "moto_server")?;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("granttrail-moto-{port}-{}.log", std::process::id()));
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, log, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_ok(port) {
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// A client with static test credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "granttrail-tests");
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Environment for a granttrail process (CLI or Lambda) that should talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            // No shared config files or instance metadata from the machine running the tests.
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// The request lines the server has logged so far (`GET /bucket/key?... HTTP/1.1`), to
    /// check what a run downloaded.
    pub fn requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(|l| l.split('"').nth(1)).map(str::to_string).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn http_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
