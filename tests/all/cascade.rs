//! A command's cascade through aggregates and process managers.

use cascade::{Command, Options, Outcome};
use cascade_tests::{TestHost, only_command_error, only_handler_failure, plugins};

#[test]
fn an_on_handler_runs_and_its_checkpoint_advances() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    assert_eq!(host.runtime.pipeline().checkpoint("welcome").unwrap(), Some(0));

    let settled = host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    assert!(settled.is_ok(), "{:?}", settled.failures);
    // welcome's on-user-created ran: it dispatched `open`, which produced AccountOpened.
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
    assert_eq!(host.runtime.pipeline().checkpoint("welcome").unwrap(), Some(2));
}

#[test]
fn phase_two_runs_after_phase_one_of_every_listener() {
    // A = notifications (on + after), B = welcome (on), registered in that order.
    let mut host = TestHost::with_options(
        &[
            plugins::USERS,
            plugins::ACCOUNTS,
            plugins::NOTIFICATIONS,
            plugins::WELCOME,
        ],
        Options {
            trace: true,
            ..Options::default()
        },
    );

    let settled = host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let calls: Vec<(&str, &str)> = settled
        .trace
        .iter()
        .filter(|t| t.event == "UserCreated")
        .map(|t| (t.plugin.as_str(), t.handler.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("notifications", "on-user-created"),
            ("welcome", "on-user-created"),
            ("notifications", "after-user-created"),
        ]
    );
    assert!(settled.trace.iter().all(|t| t.outcome == Outcome::Ok));
    let logs: Vec<&str> = settled.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logs, ["new user Torsten (u1)", "welcome mail queued for u1"]);
}

#[test]
fn exec_returns_once_the_dispatched_command_has_run_with_linked_ids() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);

    let settled = host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let [created, opened] = settled.events.as_slice() else {
        panic!("expected two events, got {:?}", settled.events)
    };
    assert_eq!(
        (created.name.as_str(), created.stream().as_str()),
        ("UserCreated", "users:u1")
    );
    assert_eq!(
        (opened.name.as_str(), opened.stream().as_str()),
        ("AccountOpened", "accounts:u1")
    );
    assert_eq!(opened.payload, r#"{"userId":"u1"}"#);
    // One correlation id for the whole cascade: the first command's id.
    let [first, second] = settled.commands.as_slice() else {
        panic!("expected two commands, got {:?}", settled.commands)
    };
    assert_eq!(settled.correlation_id, first.id);
    assert!(settled.events.iter().all(|e| e.correlation_id == first.id));
    // command -> event -> command -> event
    assert_eq!(first.causation_id, None);
    assert_eq!(created.causation_id, first.id);
    assert_eq!(second.causation_id.as_deref(), Some(created.id().as_str()));
    assert_eq!(second.issued_by.as_deref(), Some("welcome"));
    assert_eq!(opened.causation_id, second.id);
    let metadata: serde_json::Value = serde_json::from_str(&opened.metadata).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"issuedBy": "welcome", "chain": ["welcome/UserCreated"]})
    );
}

#[test]
fn a_listener_of_two_aggregates_sees_events_of_both() {
    let mut host = TestHost::with_options(
        &[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME, plugins::AUDIT],
        Options {
            trace: true,
            ..Options::default()
        },
    );

    let settled = host.exec("users", "u1", "create", r#"{"name":"Ada"}"#);

    let audited: Vec<(&str, u64)> = settled
        .trace
        .iter()
        .filter(|t| t.plugin == "audit")
        .map(|t| (t.event.as_str(), t.position))
        .collect();
    assert_eq!(audited, [("UserCreated", 1), ("AccountOpened", 2)]);
}

#[test]
fn a_handler_gets_the_envelope_of_its_event_on_demand() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME, plugins::AUDIT]);
    let mut create = Command::new("users", "u1", "create", r#"{"name":"Ada"}"#);
    create.actor_id = Some("admin-7".into());

    let settled = host.runtime.pipeline().execute(create).unwrap();

    assert!(settled.is_ok(), "{:?}", settled.failures);
    let log = host.log();
    let audit: Vec<&str> = settled
        .logs
        .iter()
        .filter(|l| l.plugin == "audit")
        .map(|l| l.message.as_str())
        .collect();
    let expected: Vec<String> = log
        .iter()
        .map(|e| {
            format!(
                "#{} {} {}:{} {} actor=admin-7 cascade={} cause={}",
                e.position, e.name, e.stream_type, e.stream_id, e.payload, e.correlation_id, e.causation_id
            )
        })
        .collect();
    assert_eq!(
        audit, expected,
        "the actor carries over to the dispatched command's event"
    );
}

#[test]
fn log_lines_nobody_collects_are_bounded_and_the_newest_cascade_keeps_its_own() {
    let options = Options {
        trace: true,
        retained_lines: 4,
        ..Options::default()
    };
    let mut host = TestHost::with_options(&[plugins::USERS, plugins::NOTIFICATIONS], options);
    // Ten cascades whose answers nobody asks for: two log lines each.
    let commands: Vec<_> = (0..10)
        .map(|i| Command::new("users", &format!("u{i}"), "create", r#"{"name":"Ada"}"#))
        .collect();
    let ids = host.runtime.pipeline().submit_all(commands).unwrap();
    host.runtime.pipeline().run_until_idle().unwrap();

    let latest = host.exec("users", "u10", "create", r#"{"name":"Grace"}"#);
    let first = host.runtime.pipeline().settled(&ids[0]).unwrap().expect("settled");

    assert_eq!(
        latest.logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["new user Grace (u10)", "welcome mail queued for u10"]
    );
    assert_eq!(latest.trace.len(), 2);
    assert!(first.logs.is_empty() && first.trace.is_empty(), "dropped, oldest first");
    assert_eq!(first.events.len(), 1, "the stored answer is complete");
}

#[test]
fn a_failing_handler_is_reported_by_plugin_handler_and_event_and_the_others_still_run() {
    let mut host = TestHost::with(&[
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::FIXTURE_FAILING,
        plugins::WELCOME,
    ]);

    let settled = host.exec("users", "u7", "create", r#"{"name":"Grace"}"#);

    let failure = only_handler_failure(&settled);
    assert_eq!(failure.plugin, "fixture-failing");
    assert_eq!(failure.handler, "on-user-created");
    assert_eq!(failure.event, "UserCreated");
    assert_eq!(
        failure.to_string(),
        "process manager `fixture-failing` failed in `on-user-created` handling `UserCreated` \
         (position 1): mail server unreachable for u7"
    );
    // welcome, registered after the failing plugin, still opened the account.
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
}

#[test]
fn a_rejected_dispatched_command_fails_the_cascade_and_appends_nothing() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    assert!(host.exec("accounts", "u1", "open", "{}").is_ok());

    // welcome dispatches `open` for u1 again; accounts rejects it.
    let settled = host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    assert_eq!(settled.events.len(), 1);
    let err = only_command_error(&settled);
    assert_eq!(
        err.to_string(),
        "command `open` on `accounts:u1` failed: aggregate `accounts` rejected it: account is already open"
    );
    assert_eq!(host.log_names(), ["AccountOpened", "UserCreated"]);
}

#[test]
fn group_commit_gives_the_same_log_whatever_the_batch_size() {
    let run = |batch_size| {
        let mut host = TestHost::with_options(
            &[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME],
            Options {
                batch_size,
                ..Options::default()
            },
        );
        let pipeline = host.runtime.pipeline();
        let ids: Vec<String> = (0..20)
            .map(|i| {
                let args = format!(r#"{{"name":"user {i}"}}"#);
                pipeline
                    .submit(cascade::Command::new("users", &format!("u{i}"), "create", &args), None)
                    .unwrap()
            })
            .collect();
        pipeline.run_until_idle().unwrap();
        for id in &ids {
            assert!(pipeline.settled(id).unwrap().unwrap().is_ok());
        }
        host.log()
            .into_iter()
            .map(|e| (e.position, e.name, e.stream_id, e.correlation_id))
            .collect::<Vec<_>>()
    };
    let one_at_a_time = run(1);
    assert_eq!(one_at_a_time.len(), 40);
    assert_eq!(run(7), one_at_a_time);
    assert_eq!(run(1000), one_at_a_time);
}
