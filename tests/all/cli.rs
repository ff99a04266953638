//! The `cascade` command line, driven in-process through `cascade_cli::run`.

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

/// Copy `component` into `dir` as `file`, with `manifest` beside it.
fn build_as(dir: &std::path::Path, component: &str, file: &str, manifest: Option<&str>) -> String {
    let path = dir.join(file);
    std::fs::copy(component, &path).unwrap();
    if let Some(manifest) = manifest {
        std::fs::write(path.with_extension("toml"), manifest).unwrap();
    }
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_plugin_of_another_kind_under_an_existing_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let (status, out) = cli(dir.path(), &["plugin", "add", plugins::PROJECT, plugins::PROJECTS]);
    assert_eq!(status, 0, "{out}");
    let impostor = build_as(builds.path(), plugins::USER_COUNTER, "projects.wasm", None);

    let (status, err) = cli(dir.path(), &["plugin", "add", &impostor]);

    assert_eq!(status, 2);
    assert_eq!(
        err,
        "cannot add process-manager `projects`: a projection has that name; give the plugin another \
         name (`name = \"...\"` in its manifest, or rename the file)"
    );
    let (status, out) = cli(dir.path(), &["read", "projects"]);
    assert_eq!(status, 0, "{out}");
}

#[test]
fn a_manifest_name_keeps_a_renamed_build_from_registering_twice() {
    let dir = data_with_plugins();
    let builds = tempfile::tempdir().unwrap();
    let manifest = "name = \"welcome\"\n[capabilities]\ndispatch = [\"accounts.open\"]\n";
    let renamed = build_as(builds.path(), plugins::WELCOME, "welcome-build-2.wasm", Some(manifest));

    let (status, out) = cli(dir.path(), &["plugin", "add", &renamed]);

    assert_eq!(status, 0, "{out}");
    assert!(out.starts_with("added process-manager `welcome`"), "{out}");
    let (_, list) = cli(dir.path(), &["plugin", "list"]);
    let names: Vec<&str> = list.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["users", "accounts", "welcome", "notifications"]);
    let (_, versions) = cli(dir.path(), &["plugin", "versions", "welcome"]);
    assert_eq!(versions.lines().count(), 2, "{versions}");
    assert!(versions.lines().nth(1).unwrap().starts_with("* v2"), "{versions}");
}

#[test]
fn a_stateful_process_manager_starting_from_the_origin_is_refreshed_before_it_goes_live() {
    let dir = data_with_plugins();
    for id in ["u1", "u2", "u3"] {
        let (status, out) = cli(dir.path(), &["exec", "users", id, "create", r#"{"name":"x"}"#]);
        assert_eq!(status, 0, "{out}");
    }
    let builds = tempfile::tempdir().unwrap();
    let origin = build_as(
        builds.path(),
        plugins::USER_COUNTER,
        "counter-origin.wasm",
        Some("start-from = \"origin\"\n"),
    );
    let now = build_as(builds.path(), plugins::USER_COUNTER, "counter-now.wasm", None);

    let (status, out) = cli(dir.path(), &["plugin", "add", &origin, &now]);
    assert_eq!(status, 0, "{out}");

    let (_, state) = cli(dir.path(), &["pm", "state", "counter-origin"]);
    assert!(state.contains("\"usersCreated\": 3"), "{state}");
    let (_, state) = cli(dir.path(), &["pm", "state", "counter-now"]);
    assert!(state.contains("has no state yet"), "{state}");
    cli(dir.path(), &["exec", "users", "u4", "create", r#"{"name":"x"}"#]);
    let (_, state) = cli(dir.path(), &["pm", "state", "counter-origin"]);
    assert!(state.contains("\"usersCreated\": 4"), "{state}");
    // Nothing was dispatched twice: still one account per user.
    let (_, events) = cli(dir.path(), &["events", "--json"]);
    assert_eq!(events.matches("AccountOpened").count(), 4);
}

/// A redeployed build whose state type cannot read the stored instances
/// fails those calls alone (parked, naming why) and stores nothing over
/// them; `--state refresh` rebuilds the instances from history, `--state
/// reset` starts them empty.
#[test]
fn a_build_that_cannot_read_the_stored_state_fails_its_calls_until_refreshed_or_reset() {
    let dir = data_with_plugins();
    let (status, out) = cli(dir.path(), &["plugin", "add", plugins::USER_COUNTER]);
    assert_eq!(status, 0, "{out}");
    cli(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"x"}"#]);
    // A build whose state type has other required fields, under the same name.
    let builds = tempfile::tempdir().unwrap();
    let other = build_as(builds.path(), plugins::FIXTURE_REFRESH_EXACT, "user-counter.wasm", None);
    // It handles more events than the version it replaces: a widening.
    let (status, out) = cli(dir.path(), &["plugin", "add", &other]);
    assert_eq!(status, 2, "{out}");
    assert!(
        out.contains("would get more than its active version: handles "),
        "{out}"
    );
    let (status, out) = cli(dir.path(), &["plugin", "add", &other, "--accept-grants"]);
    assert_eq!(status, 0, "{out}");

    let (status, out) = cli(dir.path(), &["exec", "users", "u2", "create", r#"{"name":"y"}"#]);

    assert_eq!(status, 1, "{out}");
    assert!(out.contains("does not fit the state type"), "{out}");
    assert!(out.contains("missing field"), "{out}");
    let (_, state) = cli(dir.path(), &["pm", "state", "user-counter"]);
    assert!(
        state.contains("\"usersCreated\": 1"),
        "the failed call stored nothing: {state}"
    );

    let (status, out) = cli(dir.path(), &["plugin", "add", &other, "--state", "refresh"]);
    assert_eq!(status, 0, "{out}");
    let (_, state) = cli(dir.path(), &["pm", "state", "user-counter"]);
    // u2's call is parked: a refresh leaves it out, as it never applied.
    assert!(state.contains("\"created\": 1"), "{state}");

    let (status, out) = cli(
        dir.path(),
        &[
            "plugin",
            "add",
            plugins::USER_COUNTER,
            "--state",
            "reset",
            "--accept-grants",
        ],
    );
    assert_eq!(status, 0, "{out}");
    let (_, state) = cli(dir.path(), &["pm", "state", "user-counter"]);
    assert!(state.contains("has no state yet"), "{state}");
}

#[test]
fn plugin_list_shows_where_each_listener_is_and_refresh_json_prints_the_state_as_json() {
    let dir = data_with_plugins();
    let (status, out) = cli(dir.path(), &["plugin", "add", plugins::USER_COUNTER]);
    assert_eq!(status, 0, "{out}");
    cli(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"x"}"#]);

    let (status, out) = cli(dir.path(), &["plugin", "list", "--json"]);
    assert_eq!(status, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let counter = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "user-counter")
        .unwrap();
    assert_eq!(counter["checkpoint"], 2);
    assert_eq!(counter["lag"], 0);
    assert_eq!(counter["parked"], 0);
    assert_eq!(counter["version"], 1);
    assert_eq!(counter["instances"], 1);
    let users = list.as_array().unwrap().iter().find(|p| p["name"] == "users").unwrap();
    assert!(users.get("checkpoint").is_none(), "an aggregate has no checkpoint");
    let (_, text) = cli(dir.path(), &["plugin", "list"]);
    assert!(text.contains("checkpoint #2 (lag 0)"), "{text}");

    let (status, out) = cli(dir.path(), &["pm", "refresh", "user-counter", "--json"]);
    assert_eq!(status, 0);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["instances"], 1);
    let (_, state) = cli(dir.path(), &["pm", "state", "user-counter", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["state"], serde_json::json!({"usersCreated": 1}));
}

#[test]
fn plugins_can_be_stopped_started_and_removed_even_when_broken() {
    let dir = data_with_plugins();
    let (status, out) = cli(dir.path(), &["plugin", "add", plugins::FIXTURE_BROKEN_STATE]);
    assert_eq!(status, 0, "{out}");
    cli(
        dir.path(),
        &["exec", "users", "u1", "create", r#"{"name":"poison-load"}"#],
    );

    // Its state no longer loads: the next command still opens the
    // directory, runs the others, and parks its call naming why.
    let (status, out) = cli(
        dir.path(),
        &["exec", "users", "u9", "create", r#"{"name":"after-the-poison"}"#],
    );
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("poisoned on purpose"), "{out}");
    assert!(out.contains("AccountOpened"), "{out}");
    let (status, list) = cli(dir.path(), &["plugin", "list"]);
    assert_eq!(status, 0, "{list}");
    let broken = list.lines().find(|l| l.starts_with("fixture-broken-state")).unwrap();
    assert!(broken.contains("1 parked"), "{broken}");
    let (status, out) = cli(dir.path(), &["plugin", "remove", "fixture-broken-state"]);
    assert_eq!(status, 0, "{out}");
    let (_, list) = cli(dir.path(), &["plugin", "list"]);
    assert!(!list.contains("fixture-broken-state"), "{list}");

    // A healthy plugin stopped by hand misses nothing: start catches up.
    let (status, out) = cli(dir.path(), &["plugin", "stop", "welcome", "--by", "ops"]);
    assert_eq!(status, 0, "{out}");
    let (_, out) = cli(dir.path(), &["exec", "users", "u2", "create", r#"{"name":"x"}"#]);
    assert!(out.contains("1 event(s)"), "welcome is stopped: {out}");
    let (status, out) = cli(dir.path(), &["plugin", "start", "welcome"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("caught up 1 event(s)"), "{out}");
    let (_, events) = cli(dir.path(), &["events", "--json"]);
    assert_eq!(events.matches("AccountOpened").count(), 3);

    let (status, err) = cli(dir.path(), &["plugin", "remove", "users"]);
    assert_eq!(status, 2);
    assert!(err.contains("an aggregate cannot be removed"), "{err}");
}

#[test]
fn queued_work_is_listed_by_cascade_and_a_cascade_can_be_cancelled() {
    let cascade_tests::TestHost { dir, mut runtime } =
        cascade_tests::TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    let commands: Vec<_> = ["u1", "u2"]
        .iter()
        .map(|id| cascade::Command::new("users", id, "create", r#"{"name":"x"}"#))
        .collect();
    let ids = runtime.pipeline().submit_all(commands).unwrap();
    drop(runtime);

    let (status, out) = cli(dir.path(), &["queue"]);
    assert_eq!(status, 0, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.starts_with(&format!("{:<8} 1 queued, oldest create on users:u1", ids[0])),
        "{out}"
    );

    let (status, out) = cli(dir.path(), &["queue", "cancel", &ids[0], "--by", "ops"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("1 queued command(s) dropped"), "{out}");
    let (_, out) = cli(dir.path(), &["queue", "--json"]);
    let queue: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1);
    assert_eq!(queue[0]["correlationId"], ids[1].as_str());

    // The next command runs the other cascade; the cancelled one never ran.
    let (status, _) = cli(dir.path(), &["exec", "users", "u3", "create", r#"{"name":"x"}"#]);
    assert_eq!(status, 0);
    let (_, events) = cli(dir.path(), &["events", "--json"]);
    assert!(!events.contains("\"u1\""), "{events}");
    assert!(events.contains("\"u2\"") && events.contains("\"u3\""), "{events}");
}

/// `pm state` and `pm refresh` say the same of a stateless process manager
/// that has handled events: it keeps no state.
#[test]
fn pm_state_and_pm_refresh_both_say_a_stateless_process_manager_keeps_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = cli(
        dir.path(),
        &["plugin", "add", plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME],
    );
    assert_eq!(status, 0);
    let (status, _) = cli(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_eq!(status, 0);
    for action in ["state", "refresh"] {
        let (status, message) = cli(dir.path(), &["pm", action, "welcome"]);
        assert_eq!(status, 2, "pm {action}: {message}");
        assert!(
            message.contains("process manager `welcome` is stateless"),
            "pm {action}: {message}"
        );
    }
}
