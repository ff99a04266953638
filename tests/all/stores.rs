//! The engine on every store: the same workload (the example plugins'
//! logic as native Rust, from the benchmarks) runs on the in-memory
//! reference store, the redb store and the PostgreSQL store, and all end
//! with the same log, settled answers, failures and process-manager state.

use cascade::{AnyStore, Command, EventLog, MemoryStore, Options, PgStore, Pipeline, Storage, Store};
use cascade_tests::postgres::TestDatabase;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../host/benches/native/mod.rs"]
mod native;

/// What a run leaves behind, without timestamps.
#[derive(Debug, PartialEq)]
struct Outcome {
    log: Vec<(u64, String, String, u64, String, String)>,
    rejected: String,
    counter: Value,
    refreshed: Value,
}

fn run<S: Storage>(store: S) -> Outcome {
    let mut pipeline = Pipeline::new(store, Options::default());
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(native::Accounts)).unwrap();
    pipeline.register_listener(Box::new(native::Welcome::new())).unwrap();
    pipeline
        .register_listener(Box::new(native::UserCounter::new()))
        .unwrap();

    let settled = pipeline
        .execute(Command::new("users", "u0", "create", r#"{"name":"Ada"}"#))
        .unwrap();
    let names: Vec<&str> = settled.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["UserCreated", "AccountOpened"], "welcome opened the account");
    let rejected = pipeline
        .execute(Command::new("users", "u0", "create", r#"{"name":"Ada"}"#))
        .unwrap();
    assert!(!rejected.is_ok());
    let commands = (1..50).map(|i| Command::new("users", &format!("u{i}"), "create", r#"{"name":"x"}"#));
    let ids = pipeline.submit_all(commands.map(|c| (c, None))).unwrap();
    pipeline.run_until_idle().unwrap();
    for id in &ids {
        assert!(pipeline.settled(id).unwrap().expect("settled").is_ok());
    }
    let state = |p: &Pipeline<S>| -> Value {
        serde_json::from_slice(
            &p.instance_state("user-counter", cascade::SINGLETON)
                .unwrap()
                .and_then(|i| i.state)
                .unwrap(),
        )
        .unwrap()
    };
    let counter = state(&pipeline);
    pipeline.refresh("user-counter", None, &mut |_, _| {}).unwrap();
    let log = pipeline
        .store()
        .read(|tx| tx.events(1, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.position,
                e.name,
                format!("{}:{}", e.stream_type, e.stream_id),
                e.stream_version,
                e.payload,
                e.correlation_id,
            )
        })
        .collect();
    Outcome {
        log,
        rejected: rejected.failures[0].to_string(),
        counter,
        refreshed: state(&pipeline),
    }
}

#[test]
fn the_engine_runs_the_same_on_the_in_memory_store_on_redb_and_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let on_redb = run(Store::open(&dir.path().join("cascade.redb")).unwrap());
    let in_memory = run(MemoryStore::new());
    assert_eq!(on_redb.log.len(), 100, "50 users, 50 accounts");
    assert_eq!(on_redb.counter, serde_json::json!({"usersCreated": 50}));
    assert_eq!(
        on_redb.refreshed, on_redb.counter,
        "a refresh replays to the same state"
    );
    assert!(on_redb.rejected.contains("user already exists"), "{}", on_redb.rejected);
    assert_eq!(in_memory, on_redb);
    let db = TestDatabase::new("engine");
    assert_eq!(run(PgStore::open(&db.url).unwrap()), on_redb);
    // Behind the one type a runtime runs on, too.
    let db = TestDatabase::new("engine_any");
    assert_eq!(run(AnyStore::from(PgStore::open(&db.url).unwrap())), on_redb);
}
