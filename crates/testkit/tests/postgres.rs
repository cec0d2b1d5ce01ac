//! The PostgreSQL the shared-engine tests run against: started by the test itself (as the
//! `postgres` user when the test runs as root), usable, several at once, and gone when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_testkit::Postgres;

#[test]
fn a_server_of_its_own_starts_answers_and_stops() {
    let Some(first) = Postgres::start() else { return };
    let Some(second) = Postgres::start() else { return };
    assert_ne!(first.port, second.port);
    assert!(first.psql("SELECT version()").starts_with("PostgreSQL "), "{}", first.psql("SELECT version()"));
    first.psql("CREATE TABLE grants (grant_id TEXT PRIMARY KEY); INSERT INTO grants VALUES ('g1')");
    assert_eq!(first.psql("SELECT grant_id FROM grants"), "g1");
    // The other cluster is its own.
    assert_eq!(second.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'grants'"), "0");
    assert!(first.url().starts_with("postgres://postgres@127.0.0.1:"));

    let port = first.port;
    drop(first);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server stopped");
}
