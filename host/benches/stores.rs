//! redb against PostgreSQL, side by side in one run: the pipeline's queued
//! throughput (N `users.create` submitted, then run until idle; native
//! Rust listeners and the WASM plugins) and the lone command's latency
//! (`execute` of one `users.create`, waited for, K times in a row).
//!
//! PostgreSQL is `CASCADE_BENCH_POSTGRES` (default the local server at
//! 127.0.0.1:5432); the benchmark makes and drops a database of its own.
//!
//! `cargo bench -p cascade --bench stores -- [--users N] [--commands K]`

#[allow(dead_code)]
mod native;
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use cascade::{AnyStore, Options, PgStore, Pipeline, Runtime, Storage, Store};

/// A database of the benchmark's own, dropped at the end.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    fn new(name: &str) -> Database {
        let server = std::env::var("CASCADE_BENCH_POSTGRES")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into());
        let (base, _) = server.rsplit_once('/').expect("a URL with a database");
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("PostgreSQL answers");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        Database {
            url: format!("{base}/{name}"),
            name: name.to_owned(),
            server,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let mut admin = postgres::Client::connect(&self.server, postgres::NoTls).unwrap();
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn native<S: Storage>(store: S) -> Pipeline<S> {
    let mut pipeline = Pipeline::new(store, Options::default());
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(native::Accounts)).unwrap();
    pipeline.register_listener(Box::new(native::Welcome::new())).unwrap();
    pipeline
}

fn wasm(dir: &std::path::Path, store: Option<String>) -> Runtime {
    workload::wasm(
        dir,
        Options {
            store,
            ..Options::default()
        },
    )
}

/// Events per second of `users` commands queued, then run until idle.
fn queued<S: Storage>(pipeline: &mut Pipeline<S>, users: usize) -> f64 {
    let started = Instant::now();
    for chunk in (0..users).step_by(10_000) {
        let commands = workload::users_create_range(chunk..(chunk + 10_000).min(users));
        pipeline.submit_all(commands).unwrap();
    }
    pipeline.run_until_idle().unwrap();
    (2 * users) as f64 / started.elapsed().as_secs_f64()
}

/// p50 and p99 of `execute` of one command, waited for, `commands` times,
/// for users numbered from `first`.
fn lone<S: Storage>(pipeline: &mut Pipeline<S>, first: usize, commands: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = workload::users_create_range(first..first + commands)
        .into_iter()
        .map(|(command, _)| {
            let started = Instant::now();
            let settled = pipeline.execute(command).unwrap();
            assert_eq!(settled.events.len(), 2);
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let users = workload::flag("--users", 20_000);
    let commands = workload::flag("--commands", 1_000);
    println!("stores: {users} users.create queued (2 events each), then {commands} lone commands, each waited for");
    println!(
        "  {:<12} {:>14} {:>14} {:>12} {:>12}",
        "store", "native ev/s", "wasm ev/s", "lone p50", "lone p99"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new(&format!("cascade_bench_{}", std::process::id()));
    let db_wasm = Database::new(&format!("cascade_bench_wasm_{}", std::process::id()));
    for label in ["redb", "postgres"] {
        let (native_rate, wasm_rate, (p50, p99)) = match label {
            "redb" => {
                let store = Store::open(&dir.path().join("native.redb")).unwrap();
                let native_rate = queued(&mut native(store), users);
                let mut runtime = wasm(&dir.path().join("wasm"), None);
                let wasm_rate = queued(runtime.pipeline(), users);
                (native_rate, wasm_rate, lone(runtime.pipeline(), users, commands))
            }
            _ => {
                let store = AnyStore::from(PgStore::open(&db.url).unwrap());
                let native_rate = queued(&mut native(store), users);
                let mut runtime = wasm(&dir.path().join("wasm-pg"), Some(db_wasm.url.clone()));
                let wasm_rate = queued(runtime.pipeline(), users);
                (native_rate, wasm_rate, lone(runtime.pipeline(), users, commands))
            }
        };
        println!("  {label:<12} {native_rate:>14.0} {wasm_rate:>14.0} {p50:>12.2?} {p99:>12.2?}");
    }
}
