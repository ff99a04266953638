//! The engine handle as an embedding program uses it: named operations on
//! the writer, an operation that panics fails alone, and a trace asked for
//! by one submission stays that submission's.

use cascade::{Command, Engine, Error, Options, Submission};
use cascade_tests::plugins;

fn engine_with(plugins: &[&'static str]) -> (tempfile::TempDir, Engine, tokio::runtime::Runtime) {
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::start(data.path(), Options::default(), std::time::Duration::from_secs(5)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = engine.handle();
    rt.block_on(async {
        for plugin in plugins {
            let swap = cascade::Swap::default();
            handle.deploy_file(std::path::Path::new(plugin), swap).await.unwrap();
        }
    });
    (data, engine, rt)
}

fn create(name: &str) -> Command {
    Command::new(
        "users",
        name,
        "create",
        &serde_json::json!({ "name": name }).to_string(),
    )
}

#[test]
fn an_operation_that_panics_fails_alone_and_the_writer_goes_on() {
    let (_data, engine, rt) = engine_with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    let handle = engine.handle();
    rt.block_on(async {
        let panicked = handle
            .with_runtime(|_| -> u32 { panic!("an embedding program's bug") })
            .await
            .unwrap_err();
        assert!(
            matches!(&panicked, Error::Panicked { message } if message.contains("an embedding program's bug")),
            "{panicked}"
        );
        let settled = handle.execute(create("u1")).await.unwrap();
        assert!(settled.is_ok(), "{:?}", settled.failures);
        assert_eq!(settled.events.len(), 2, "users and the account welcome opens");
        let statuses = handle.statuses().await.unwrap();
        assert_eq!(statuses.len(), 3);
    });
    engine.shutdown();
}

#[test]
fn a_trace_asked_for_by_one_submission_is_recorded_for_its_cascade_alone() {
    let (_data, engine, rt) = engine_with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    let handle = engine.handle();
    rt.block_on(async {
        let traced = handle
            .execute(Submission {
                trace: true,
                ..Submission::from(create("u1"))
            })
            .await
            .unwrap();
        assert_eq!(traced.trace.len(), 1, "welcome's on-user-created: {:?}", traced.trace);
        assert_eq!(traced.trace[0].handler, "on-user-created");
        // Tracing did not stay on for everyone after it.
        let plain = handle.execute(create("u2")).await.unwrap();
        assert!(plain.trace.is_empty(), "{:?}", plain.trace);
    });
    engine.shutdown();
}

/// Callers are answered from the cascades each commit settled: many at
/// once, one for a cascade that settled long before (a repeated
/// idempotency key), and one that asks after the fact.
#[test]
fn every_waiter_is_answered_however_many_and_whenever_it_asks() {
    let (_data, engine, rt) = engine_with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    let handle = engine.handle();
    rt.block_on(async {
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.execute(create(&format!("u{i}"))).await.unwrap() })
            })
            .collect();
        for task in tasks {
            let settled = task.await.unwrap();
            assert!(settled.is_ok(), "{:?}", settled.failures);
            assert_eq!(settled.events.len(), 2);
        }
        let keyed = || Submission {
            idempotency_key: Some("once".into()),
            ..Submission::from(create("keyed"))
        };
        let first = handle.execute(keyed()).await.unwrap();
        let again = handle.execute(keyed()).await.unwrap();
        assert_eq!(again.correlation_id, first.correlation_id);
        assert_eq!(again.events.len(), 2, "the first cascade's answer, not a second run");
        let later = handle.settled(&first.correlation_id).await.unwrap();
        assert_eq!(later.events.len(), 2);
        let unknown = handle.settled("c999999").await.unwrap_err();
        assert!(matches!(unknown, Error::UnknownCascade { .. }), "{unknown}");
    });
    engine.shutdown();
}

/// An engine that runs the pipeline only on demand (the command line's)
/// runs queued work for a caller that only waits for it.
#[test]
fn an_on_demand_engine_runs_queued_work_for_a_caller_that_only_waits() {
    let data = tempfile::tempdir().unwrap();
    let id = {
        let mut runtime = cascade::Runtime::open(data.path(), Options::default()).unwrap();
        for plugin in [plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME] {
            runtime.add_plugin(std::path::Path::new(plugin)).unwrap();
        }
        // Queued, not run: as a host that went away would leave it.
        runtime.pipeline().submit(create("u1"), None).unwrap()
    };
    let engine = Engine::start_on_demand(data.path(), Options::default(), std::time::Duration::from_secs(5)).unwrap();
    let handle = engine.handle();
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _ = answer.send(rt.block_on(handle.settled(&id)).map(|s| s.events.len()));
    });
    let events = answered
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the waiting caller is answered")
        .unwrap();
    assert_eq!(events, 2);
    engine.shutdown();
}
