//! The `cascade` command line, driven in-process through `cascade::cli::run`.

use cascade_tests::{cli, plugins};

fn data_with_plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (status, out) = cli(
        dir.path(),
        &[
            "plugin",
            "add",
            plugins::USERS,
            plugins::ACCOUNTS,
            plugins::WELCOME,
            plugins::NOTIFICATIONS,
        ],
    );
    assert_eq!(status, 0, "{out}");
    dir
}

#[test]
fn registered_plugins_are_remembered_in_the_data_directory() {
    let dir = data_with_plugins();

    let (status, out) = cli(dir.path(), &["plugin", "list"]);

    assert_eq!(status, 0);
    let names: Vec<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["users", "accounts", "welcome", "notifications"]);
}

#[test]
fn exec_prints_the_settled_cascade_with_its_trace() {
    let dir = data_with_plugins();

    let (status, out) = cli(
        dir.path(),
        &[
            "exec",
            "users",
            "u1",
            "create",
            r#"{"name":"Torsten"}"#,
            "--actor",
            "admin",
            "--trace",
        ],
    );

    assert_eq!(status, 0, "{out}");
    assert!(
        out.starts_with("cascade c1 settled: 2 event(s), 2 command(s), 0 failure(s)"),
        "{out}"
    );
    assert!(out.contains("UserCreated      users:u1 v1"), "{out}");
    assert!(out.contains("AccountOpened    accounts:u1 v1"), "{out}");
    let trace: Vec<String> = out
        .lines()
        .skip_while(|l| *l != "trace:")
        .skip(1)
        .take_while(|l| l.starts_with("  ") && !l.starts_with("  ["))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        trace,
        [
            "welcome on-user-created",
            "notifications on-user-created",
            "notifications after-user-created"
        ]
    );
}

#[test]
fn exec_json_carries_the_actor_and_events_print_the_log() {
    let dir = data_with_plugins();

    let (status, out) = cli(
        dir.path(),
        &[
            "exec",
            "users",
            "u1",
            "create",
            r#"{"name":"Torsten"}"#,
            "--actor",
            "admin",
            "--json",
        ],
    );
    assert_eq!(status, 0, "{out}");
    let settled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(settled["events"][0]["payload"]["name"], "Torsten");
    assert_eq!(
        settled["events"][1]["actorId"], "admin",
        "dispatched commands keep the actor"
    );

    let (status, out) = cli(dir.path(), &["events", "--stream", "accounts:u1", "--json"]);
    assert_eq!(status, 0);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "AccountOpened");
    assert_eq!(events[0]["position"], 2);

    let (status, out) = cli(dir.path(), &["events", "--from", "2"]);
    assert_eq!(status, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn exec_exits_1_when_the_cascade_fails_and_2_on_bad_input() {
    let dir = data_with_plugins();

    let (status, out) = cli(dir.path(), &["exec", "users", "u1", "create", r#"{"name":""}"#]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("failed: command `create` on `users:u1` failed: event `UserCreated` breaks its schema at `/name`"),
        "{out}"
    );

    let (status, message) = cli(dir.path(), &["exec", "users", "u1", "explode"]);
    assert_eq!(status, 2);
    assert!(
        message.contains("aggregate `users` has no command `explode`"),
        "{message}"
    );

    let (status, message) = cli(dir.path(), &["events", "--stream", "users"]);
    assert_eq!(status, 2);
    assert!(message.contains("--stream `users` must be TYPE:ID"), "{message}");

    let (_, out) = cli(dir.path(), &["events"]);
    assert!(out.is_empty(), "nothing was appended: {out}");
}

#[test]
fn parked_lists_and_skips_parked_events() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = cli(dir.path(), &["plugin", "add", plugins::USERS, plugins::FIXTURE_FAILING]);
    assert_eq!(status, 0);

    let (status, out) = cli(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_eq!(status, 1);
    assert!(
        out.contains("parked as #1: `cascade parked retry 1` or `cascade parked skip 1`"),
        "{out}"
    );

    let (status, out) = cli(dir.path(), &["parked"]);
    assert_eq!(status, 0);
    assert!(
        out.starts_with(
            "#1    fixture-failing on-user-created UserCreated #1 (3 attempt(s)): mail server unreachable for u1"
        ),
        "{out}"
    );
    let (status, out) = cli(dir.path(), &["parked", "skip", "1", "--by", "ops"]);
    assert_eq!(status, 0, "{out}");
    assert_eq!(
        out.trim(),
        "skipped parked #1 (fixture-failing UserCreated #1), recorded as skipped by ops"
    );
    let (_, out) = cli(dir.path(), &["parked"]);
    assert!(out.is_empty(), "{out}");
}
