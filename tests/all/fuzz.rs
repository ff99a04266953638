//! Property tests over the host's untrusted inputs: component bytes given to
//! `plugin add`, and JSON command args. Bounded case counts, so they run in
//! CI in a fixed time; `PROPTEST_CASES=N` runs more.

use std::cell::{Cell, RefCell};
use std::path::Path;

use cascade::{Command, CommandFailure, Failure};
use cascade_tests::{TestHost, plugins};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Arbitrary bytes given to `plugin add` are refused with an error (never a
/// panic), and nothing is registered.
#[test]
fn arbitrary_bytes_given_to_plugin_add_are_refused() {
    let host = RefCell::new(TestHost::with(&[plugins::USERS]));
    runner(128)
        .run(&proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
            let mut host = host.borrow_mut();
            prop_assert!(
                host.runtime
                    .add_plugin_bytes("fuzz", "fuzz.wasm", &bytes, &cascade::Manifest::default())
                    .is_err()
            );
            prop_assert_eq!(host.runtime.plugins().unwrap().len(), 1);
            Ok(())
        })
        .unwrap();
}

/// A real component with a few bytes overwritten either still validates or is
/// refused; the host never panics and the log never changes.
#[test]
fn corrupted_components_are_refused_or_valid_never_a_crash() {
    let host = RefCell::new(TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]));
    let original = std::fs::read(Path::new(plugins::WELCOME)).unwrap();
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8);
    runner(64)
        .run(&edits, |edits| {
            let mut bytes = original.clone();
            for (index, byte) in edits {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            let mut host = host.borrow_mut();
            let _ = host
                .runtime
                .add_plugin_bytes("fuzz", "fuzz.wasm", &bytes, &cascade::Manifest::default());
            prop_assert!(host.log().is_empty());
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Whatever JSON args `users.create` gets, the cascade settles: either the
/// event appended satisfies the schema (a non-empty string name) or the
/// command failed with a schema or rejection error and appended nothing.
#[test]
fn arbitrary_json_args_either_satisfy_the_schema_or_append_nothing() {
    let host = RefCell::new(TestHost::with(&[plugins::USERS]));
    let id = Cell::new(0);
    runner(256)
        .run(&json_value(), |args| {
            let mut host = host.borrow_mut();
            id.set(id.get() + 1);
            let id = id.get();
            let before = host.log().len();
            let command = Command::new("users", &format!("u{id}"), "create", &args.to_string());
            let settled = host.runtime.pipeline().execute(command).unwrap();
            match settled.failures.as_slice() {
                [] => {
                    let [event] = settled.events.as_slice() else {
                        return Err(TestCaseError::fail("one event expected"));
                    };
                    let payload: Value = serde_json::from_str(&event.payload).unwrap();
                    prop_assert!(payload["name"].as_str().is_some_and(|n| !n.is_empty()));
                }
                [Failure::Command(err)] => {
                    let expected = matches!(
                        err.reason,
                        CommandFailure::InvalidEvent(_) | CommandFailure::Rejected { .. }
                    );
                    prop_assert!(expected, "unexpected command failure: {}", err);
                    prop_assert_eq!(host.log().len(), before);
                }
                other => return Err(TestCaseError::fail(format!("unexpected failures {other:?}"))),
            }
            Ok(())
        })
        .unwrap();
}
