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
fn an_aggregate_whose_describe_never_returns_is_refused_by_its_name() {
    let mut host = host_with_one_user();

    let err = add_error(&mut host, plugins::FIXTURE_DESCRIBE_LOOP);

    let message = err.to_string();
    assert!(
        message.starts_with("aggregate `fixture-describe-loop` is invalid: `describe` failed:"),
        "{message}"
    );
    assert!(message.contains("exceeded its time budget"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    // The host goes on.
    let settled = host.exec("users", "u2", "create", r#"{"name":"Grace"}"#);
    assert!(settled.is_ok(), "{:?}", settled.failures);
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

#[test]
fn stream_ids_that_are_empty_too_long_or_hold_control_characters_are_refused() {
    let mut host = host_with_one_user();
    let long = "x".repeat(300);
    for (id, why) in [
        ("", "it is empty"),
        (long.as_str(), "300 bytes long"),
        ("a\nb", "control character '\\n'"),
        ("\u{1b}[2J", "control character '\\u{1b}'"),
    ] {
        let message = submit_error(&mut host, Command::new("users", id, "create", r#"{"name":"x"}"#));
        assert!(
            message.contains("the stream id is not valid") && message.contains(why),
            "{message}"
        );
    }
}

mod process {
    //! Through the real `cascade` binary: exit statuses, pipes, stdin.

    use std::io::Write;
    use std::process::Stdio;

    use cascade_tests::{TestHost, cascade_bin, cascade_process, plugins};

    #[test]
    fn read_commands_on_a_missing_data_directory_say_so_and_create_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("typo");
        for args in [
            &["events"][..],
            &["plugin", "list"],
            &["read", "projects"],
            &["pm", "state", "x"],
        ] {
            let (status, _, err) = cascade_process(&missing, args);
            assert_eq!(status, 2, "{args:?}: {err}");
            assert!(err.contains("does not exist"), "{err}");
        }
        assert!(!missing.exists());
    }

    #[test]
    fn an_empty_data_file_is_refused_as_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cascade.redb"), b"").unwrap();
        let (status, _, err) = cascade_process(dir.path(), &["events"]);
        assert_eq!(status, 4, "{err}");
        assert!(err.contains("is empty (0 bytes)"), "{err}");
        assert_eq!(std::fs::metadata(dir.path().join("cascade.redb")).unwrap().len(), 0);
    }

    #[test]
    fn exec_reads_args_from_a_file_or_stdin() {
        let TestHost { dir: data, runtime } = TestHost::with(&[plugins::USERS]);
        drop(runtime);
        let dir = data.path().to_owned();
        let file = dir.join("args.json");
        std::fs::write(&file, r#"{"name":"from a file"}"#).unwrap();
        let (status, out, err) = cascade_process(
            &dir,
            &["exec", "users", "u1", "create", "--args-file", file.to_str().unwrap()],
        );
        assert_eq!(status, 0, "{err}");
        assert!(out.contains("from a file"), "{out}");

        let mut child = std::process::Command::new(cascade_bin())
            .arg("--data")
            .arg(&dir)
            .args(["exec", "users", "u2", "create", "--args-file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"name":"from stdin"}"#)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("from stdin"));
    }

    /// 2,000 events of text are more than a pipe holds, so the reader going
    /// away after one line makes the writes fail with a broken pipe.
    #[test]
    fn a_reader_that_goes_away_is_not_an_error() {
        let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
        let commands: Vec<_> = (0..1000)
            .map(|i| cascade::Command::new("users", &format!("u{i}"), "create", r#"{"name":"x"}"#))
            .collect();
        host.runtime.pipeline().submit_all(commands).unwrap();
        host.runtime.pipeline().run_until_idle().unwrap();
        let dir = host.dir.path().to_owned();
        drop(host.runtime);
        let script = format!(
            "{:?} --data {:?} events | head -1 > /dev/null; exit ${{PIPESTATUS[0]}}",
            cascade_bin(),
            dir
        );
        let status = std::process::Command::new("bash")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }

    #[test]
    fn text_output_escapes_control_characters_from_payloads() {
        let TestHost { dir: data, runtime } = TestHost::with(&[plugins::USERS]);
        drop(runtime);
        let dir = data.path().to_owned();
        let (status, _, err) = cascade_process(&dir, &["exec", "users", "u1", "create", r#"{"name":"\u001b[2Jgone"}"#]);
        assert_eq!(status, 0, "{err}");
        let (status, out, _) = cascade_process(&dir, &["events"]);
        assert_eq!(status, 0);
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("gone"), "{out}");
    }
}
