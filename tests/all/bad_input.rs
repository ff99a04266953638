//! Bad input gets a clear error naming what was wrong, and nothing that was
//! stored before is lost or changed.

use std::path::Path;

use cascade::{Command, CommandFailure, Error, Options, PluginError, Runtime};
use cascade_tests::{TestHost, only_command_error, plugins};

fn host_with_one_user() -> TestHost {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    assert!(host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#).is_ok());
    host
}

fn submit_error(host: &mut TestHost, command: Command) -> String {
    let before = host.log();
    let err = host.runtime.pipeline().submit(command, None).unwrap_err();
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    assert_eq!(host.log(), before, "nothing may be appended");
    assert_eq!(
        host.runtime.pipeline().run_until_idle().unwrap(),
        0,
        "nothing may be queued"
    );
    err.to_string()
}

#[test]
fn an_unknown_stream_type_is_refused_before_anything_is_queued() {
    let mut host = host_with_one_user();
    let message = submit_error(&mut host, Command::new("planets", "p1", "create", "{}"));
    assert_eq!(
        message,
        "command `create` on `planets:p1` failed: no aggregate `planets` is registered \
         (registered: `accounts`, `users`); add its plugin with `cascade plugin add`"
    );
}

#[test]
fn an_unknown_command_is_refused_naming_the_accepted_ones() {
    let mut host = host_with_one_user();
    let message = submit_error(&mut host, Command::new("users", "u1", "delete", "{}"));
    assert_eq!(
        message,
        "command `delete` on `users:u1` failed: aggregate `users` has no command `delete` \
         (it accepts `create`, `update`)"
    );
}

#[test]
fn args_that_are_not_json_are_refused() {
    let mut host = host_with_one_user();
    let message = submit_error(&mut host, Command::new("users", "u2", "create", "{name:"));
    assert!(
        message.starts_with("command `create` on `users:u2` failed: args are not valid JSON"),
        "{message}"
    );
}

#[test]
fn args_breaking_the_event_schema_fail_the_command_naming_event_and_field() {
    let mut host = host_with_one_user();
    let before = host.log();

    let settled = host.exec("users", "u2", "create", r#"{"name": 42}"#);

    let err = only_command_error(&settled);
    let CommandFailure::InvalidEvent(invalid) = &err.reason else {
        panic!("expected a schema failure, got {err}")
    };
    assert_eq!(
        (invalid.event.as_str(), invalid.field.as_str()),
        ("UserCreated", "/name")
    );
    assert_eq!(
        err.to_string(),
        "command `create` on `users:u2` failed: event `UserCreated` breaks its schema at `/name`: \
         42 is not of type \"string\""
    );
    assert!(settled.events.is_empty());
    assert_eq!(host.log(), before);
}

#[test]
fn a_concurrency_conflict_names_stream_and_versions_and_appends_nothing() {
    let mut host = host_with_one_user();
    let before = host.log();
    let pipeline = host.runtime.pipeline();

    let id = pipeline
        .submit(Command::new("users", "u1", "update", r#"{"age": 40}"#), Some(0))
        .unwrap();
    let settled = pipeline.run_until_settled(&id).unwrap();

    let err = only_command_error(&settled);
    assert!(matches!(err.reason, CommandFailure::Concurrency(_)));
    assert_eq!(
        err.to_string(),
        "command `update` on `users:u1` failed: concurrency conflict on stream `users:u1`: \
         expected version 0, found 1"
    );
    assert_eq!(host.log(), before);
}

fn add_error(host: &mut TestHost, file: &str) -> PluginError {
    let plugins_before = host.runtime.plugins().unwrap();
    let log_before = host.log();
    let err = host.runtime.add_plugin(Path::new(file)).unwrap_err();
    assert_eq!(
        host.runtime.plugins().unwrap(),
        plugins_before,
        "nothing may be registered"
    );
    assert_eq!(host.log(), log_before);
    match err {
        Error::Plugin(err) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let mut host = host_with_one_user();
    let junk = host.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();

    let err = add_error(&mut host, junk.to_str().unwrap());

    assert!(matches!(err, PluginError::NotAComponent { .. }));
    let message = err.to_string();
    assert!(
        message.contains("junk.wasm` is not a WebAssembly component"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn a_handler_for_an_event_nobody_declares_is_refused_naming_the_export() {
    let mut host = host_with_one_user();

    let err = add_error(&mut host, plugins::FIXTURE_UNKNOWN_EVENT);

    assert_eq!(
        err.to_string(),
        "plugin `fixture-unknown-event` exports `on-planet-exploded` for event `PlanetExploded`, \
         which no registered aggregate declares (declared: `AccountOpened`, `UserCreated`, `UserUpdated`); \
         register the aggregate first or fix the export name"
    );
}

#[test]
fn a_handler_with_the_wrong_signature_is_refused_naming_the_export() {
    let mut host = host_with_one_user();

    let err = add_error(&mut host, plugins::FIXTURE_WRONG_SIGNATURE);

    assert_eq!(
        err.to_string(),
        "plugin `fixture-wrong-signature` export `on-user-created` has the wrong signature: \
         expected `func(event: event, ctx: context) -> result<_, handler-error>`, \
         found `func(name: string) -> u32`"
    );
}

#[test]
fn a_process_manager_added_before_its_aggregate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();

    let err = runtime.add_plugin(Path::new(plugins::WELCOME)).unwrap_err();

    assert!(
        err.to_string()
            .starts_with("plugin `welcome` exports `on-user-created` for event `UserCreated`, which no registered"),
        "{err}"
    );
    assert!(runtime.plugins().unwrap().is_empty());
}
