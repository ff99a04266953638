//! A PostgreSQL database of a test's own on the test server
//! (`CASCADE_TEST_POSTGRES`, default the local one at 127.0.0.1:5432),
//! dropped at the end. No server is a failure naming what is missing,
//! never a skipped test.

use postgres::{Client, NoTls};

/// The server's URL, with the database tests connect to first.
pub fn server() -> String {
    std::env::var("CASCADE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped (with its connections) when this is.
pub struct TestDatabase {
    name: String,
    /// Its URL, for `--store`.
    pub url: String,
}

impl TestDatabase {
    /// Create `cascade_<tag>_<pid>_<n>`.
    pub fn new(tag: &str) -> TestDatabase {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let server = server();
        let (base, _) = server.rsplit_once('/').expect("CASCADE_TEST_POSTGRES names a database");
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("cascade_{tag}_{}_{n}", std::process::id());
        let mut admin = Client::connect(&server, NoTls)
            .unwrap_or_else(|e| panic!("no PostgreSQL answers at `{server}` (set CASCADE_TEST_POSTGRES): {e}"));
        // One statement per call: neither may run inside a transaction.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&server(), NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}
