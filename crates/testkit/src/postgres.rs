//! A real PostgreSQL server for tests: Debian's package (installed by `scripts/test-tools`),
//! a cluster of its own in a temporary folder, listening on a loopback port, stopped and
//! removed when dropped. PostgreSQL refuses to run as root, and CI runs as root: then the
//! server runs as the package's `postgres` user, through `runuser`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::free_port;

/// The role a [`Postgres::start_with_passwords`] server asks for a password.
pub const PASSWORD_ROLE: &str = "granttrail";

/// Who may connect, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone from loopback, without a password.
    Trusted,
    /// Over TLS only, without a password.
    Tls,
    /// [`PASSWORD_ROLE`] with its password; anyone else as [`Access::Trusted`].
    Passwords,
    /// As [`Access::Passwords`], over TLS only.
    TlsPasswords,
}

impl Access {
    fn tls(self) -> bool {
        matches!(self, Access::Tls | Access::TlsPasswords)
    }
}

/// A running server; `postgres` may connect without a password from loopback.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    /// The user the server runs as, when not the test's own.
    owner: Option<&'static str>,
    pub port: u16,
}

impl Postgres {
    /// Starts a server, or `None` (test skipped) when PostgreSQL is not installed; under CI
    /// a missing PostgreSQL is a failure.
    pub fn start() -> Option<Postgres> {
        Postgres::start_with(Access::Trusted)
    }

    /// A server where the role [`PASSWORD_ROLE`] logs in over TCP with a password only (see
    /// [`Postgres::password_database`]); every other role is trusted, as in [`Postgres::start`].
    pub fn start_with_passwords() -> Option<Postgres> {
        Postgres::start_with(Access::Passwords)
    }

    /// [`Postgres::start_with_passwords`] over TLS only, as [`Postgres::start_tls`]: how a
    /// deployed function meets Aurora.
    pub fn start_tls_with_passwords() -> Option<Postgres> {
        Postgres::start_with(Access::TlsPasswords)
    }

    /// A server that takes TLS connections only, with a certificate for `localhost` and
    /// 127.0.0.1 signed by an authority of its own (made with `openssl`; the authority's
    /// certificate is at [`Postgres::certificate`]).
    pub fn start_tls() -> Option<Postgres> {
        Postgres::start_with(Access::Tls)
    }

    /// The PEM certificate of the authority that signed a [`Postgres::start_tls`] server's.
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn start_with(access: Access) -> Option<Postgres> {
        let Some(bin) = server_binaries() else {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is not installed: run scripts/test-tools (CI must run every test)");
            }
            eprintln!("skipped: PostgreSQL is not installed (scripts/test-tools installs it)");
            return None;
        };
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "granttrail-postgres-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder for the cluster");
        let owner = running_as_root().then_some("postgres");
        if let Some(user) = owner {
            let chown = Command::new("chown").arg(format!("{user}:")).arg(&dir).output().expect("chown runs");
            assert!(chown.status.success(), "chown {user}: {}", String::from_utf8_lossy(&chown.stderr));
        }
        let server = Postgres { bin, dir, owner, port: free_port() };
        let data = server.dir.join("data");
        server.run_ok(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let mut tls_options = String::new();
        // TLS connections from loopback only where asked: a plain connection is refused.
        let (host, plain) =
            if access.tls() { ("hostssl", "hostnossl all all 127.0.0.1/32 reject\n") } else { ("host", "") };
        let password = if matches!(access, Access::Passwords | Access::TlsPasswords) {
            format!("{host} all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n")
        } else {
            String::new()
        };
        if access != Access::Trusted {
            std::fs::write(
                data.join("pg_hba.conf"),
                format!("{password}{host} all all 127.0.0.1/32 trust\n{plain}local all all trust\n"),
            )
            .expect("pg_hba.conf written");
        }
        if access.tls() {
            server.make_certificate();
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                server.dir.join("server.crt").display(),
                server.dir.join("server.key").display()
            );
        }
        // Durability is not what the tests measure: no fsync, as on a scratch cluster.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.port,
            server.dir.display()
        ) + &tls_options;
        let log = server.dir.join("server.log");
        server.run_ok(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        Some(server)
    }

    /// Creates [`PASSWORD_ROLE`] with `password` and the database `name` it owns, and returns
    /// the database's `postgres://` URL, without the password.
    pub fn password_database(&self, name: &str, password: &str) -> String {
        self.psql(&format!("CREATE ROLE \"{PASSWORD_ROLE}\" LOGIN PASSWORD '{password}'"));
        self.psql(&format!("CREATE DATABASE \"{name}\" OWNER \"{PASSWORD_ROLE}\""));
        format!("postgres://{PASSWORD_ROLE}@127.0.0.1:{}/{name}", self.port)
    }

    /// Changes [`PASSWORD_ROLE`]'s password. Its open sessions stay open, as on a server
    /// whose password was rotated.
    pub fn change_password(&self, password: &str) {
        self.psql(&format!("ALTER ROLE \"{PASSWORD_ROLE}\" PASSWORD '{password}'"));
    }

    /// Restarts the server: every session ends, as in a failover or maintenance.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        // The options are the running server's (pg_ctl keeps them); the log must be named
        // again, or the new server would write to this process's output.
        self.run_ok(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "restart".as_ref(),
            ],
        );
    }

    /// `postgres://` URL of the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates the database `name` and returns its `postgres://` URL.
    pub fn database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the database `name` through `psql` and returns its unaligned output.
    pub fn psql_in(&self, name: &str, sql: &str) -> String {
        self.psql_on(name, sql)
    }

    /// Runs `sql` through `psql` and returns its unaligned output; panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on("postgres", sql)
    }

    /// `psql` running `sql` in the database `name`, started and left running: a session that
    /// holds what it locks while the test does something else.
    pub fn psql_in_background(&self, name: &str, sql: &str) -> std::process::Child {
        self.psql_command(name, sql)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql starts")
    }

    fn psql_command(&self, database: &str, sql: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-p", &self.port.to_string(), "-c", sql]);
        command
    }

    fn psql_on(&self, database: &str, sql: &str) -> String {
        let out = self.psql_command(database, sql).output().expect("psql runs");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// A certificate authority of its own and, signed by it, a key and certificate for
    /// `localhost` and 127.0.0.1, readable by the server only.
    fn make_certificate(&self) {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&self.dir)
                .output()
                .expect("openssl runs (it comes with the system)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let subject_ca = "/CN=granttrail test authority";
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject_ca, "-keyout",
            "ca.key", "-out", "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            self.dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("extensions written");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        for file in ["server.key", "server.crt"] {
            let path = self.dir.join(file);
            if let Some(user) = self.owner {
                let chown =
                    Command::new("chown").arg(format!("{user}:")).arg(&path).output().expect("chown runs");
                assert!(chown.status.success());
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .expect("key made private");
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(program);
        let mut command = match self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.dir).output().expect("a PostgreSQL program runs")
    }

    fn run_ok(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self.run(program, args);
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{program} failed: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's programs (Debian: `/usr/lib/postgresql/VERSION/bin`).
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
