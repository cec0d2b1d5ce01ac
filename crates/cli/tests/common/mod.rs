//! Running the real `granttrail` binary in tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A temporary directory with a database path in it, or a PostgreSQL database's URL.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    url: Option<String>,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().unwrap(), url: None }
    }

    /// A workspace whose commands use the PostgreSQL database at `url`.
    pub fn postgres(url: String) -> Workspace {
        Workspace { dir: tempfile::tempdir().unwrap(), url: Some(url) }
    }

    /// What `--db` is given: the URL, or the file's path.
    pub fn db_arg(&self) -> String {
        self.url.clone().unwrap_or_else(|| self.db().to_string_lossy().into_owned())
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `granttrail --db <db> args...` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.run_full(args, stdin, &[])
    }

    /// Runs with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        self.run_full(args, None, env)
    }

    fn run_full(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_granttrail"));
        cmd.arg("--db").arg(self.db_arg()).args(args).env_remove("GRANTTRAIL_DB");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(bytes) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Starts `granttrail --db <db> args...` without waiting: its output is discarded but for
    /// standard error.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_granttrail"))
            .arg("--db")
            .arg(self.db_arg())
            .args(args)
            .env_remove("GRANTTRAIL_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "granttrail {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `grants --format json` as parsed JSON.
    pub fn grants_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["grants", "--format", "json"])).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test tool installed by `scripts/test-tools` (a path under `$GRANTTRAIL_TOOLS`, default
/// `.tools` in the repository). `None`, after saying so, when it is missing; under CI a missing
/// tool fails the test instead.
pub fn tool(relative: &str) -> Option<PathBuf> {
    let root = std::env::var_os("GRANTTRAIL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools"));
    let path = root.join(relative);
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing: run scripts/test-tools", path.display());
    eprintln!("skipping: {} is missing (run scripts/test-tools)", path.display());
    None
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The imports a scenario of fixtures/scenarios asks for (its imports.json), in their order,
/// with the scenario's settings (its config.toml) when it has some.
pub fn scenario_imports(ws: &Workspace, dir: &Path) {
    let path = dir.join("imports.json");
    if !path.exists() {
        return;
    }
    let config = dir.join("config.toml");
    let config = config.to_str().unwrap();
    let with_config = |args: &[&str]| {
        let mut full = if dir.join("config.toml").exists() { vec!["--config", config] } else { Vec::new() };
        full.extend(args);
        ws.ok(&full);
    };
    for step in read_json(&path).as_array().unwrap() {
        let file = dir.join(step["file"].as_str().unwrap());
        let file = file.to_str().unwrap();
        let at = step["at"].as_str().unwrap();
        match step["kind"].as_str().unwrap() {
            "key-policy" => with_config(&[
                "import",
                "key-policy",
                file,
                "--key",
                step["key"].as_str().unwrap(),
                "--at",
                at,
            ]),
            "iam" => with_config(&["import", "iam", file, "--at", at]),
            other => panic!("unknown import {other}"),
        }
    }
}

/// `n` deterministic points in time up to `max`, at which the kill tests stop a process.
pub fn kill_delays(n: usize, max: std::time::Duration) -> Vec<std::time::Duration> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            max.mul_f64((x % 10_000) as f64 / 10_000.0)
        })
        .collect()
}

/// How many kill points the kill tests try: `GRANTTRAIL_CRASH_ITERATIONS`, 8 by default.
pub fn crash_iterations() -> usize {
    std::env::var("GRANTTRAIL_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(8)
}
