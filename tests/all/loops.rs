//! InfiniteLoopError and the causation depth limit.

use cascade::{Failure, Options};
use cascade_tests::{TestHost, plugins};

#[test]
fn a_process_manager_re_emitting_its_event_gets_infinite_loop_error_and_nothing_is_appended() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ECHO_UPDATE]);
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let settled = host.exec("users", "u1", "update", r#"{"age": 40}"#);

    let [Failure::InfiniteLoop(err)] = settled.failures.as_slice() else {
        panic!("expected one infinite loop error, got {:?}", settled.failures)
    };
    assert_eq!(
        err.to_string(),
        "Infinite loop detected. Process Manager \"echo-update\" listens and emits same event \
         \"UserUpdated\" for stream users:u1, causing a recurring event cycle"
    );
    // Only the first UserUpdated: nothing of the refused command.
    assert_eq!(host.log_names(), ["UserCreated", "UserUpdated"]);
    assert_eq!(settled.commands.len(), 2);
}

#[test]
fn a_cycle_with_changing_payloads_is_stopped_at_the_causation_depth_naming_the_chain() {
    let mut host = TestHost::with_options(
        &[plugins::USERS, plugins::FIXTURE_AGE_INCREMENT],
        Options {
            max_causation_depth: 5,
            ..Options::default()
        },
    );
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let settled = host.exec("users", "u1", "update", r#"{"age": 1}"#);

    let [Failure::CausationDepth(err)] = settled.failures.as_slice() else {
        panic!("expected one depth failure, got {:?}", settled.failures)
    };
    // The update from outside, then five dispatched by the process manager.
    assert_eq!(settled.events.len(), 6);
    assert_eq!(err.chain.len(), 6);
    assert!(err.chain.iter().all(|link| link == "fixture-age-increment/UserUpdated"));
    assert!(
        err.to_string().starts_with(
            "causation chain longer than 5 commands, stopped as a likely cycle through process managers: \
             fixture-age-increment/UserUpdated -> fixture-age-increment/UserUpdated"
        ),
        "{err}"
    );
}

#[test]
fn the_default_depth_limit_is_64() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_AGE_INCREMENT]);
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let settled = host.exec("users", "u1", "update", r#"{"age": 1}"#);

    assert_eq!(settled.events.len(), 65);
    assert!(matches!(settled.failures.as_slice(), [Failure::CausationDepth(e)] if e.max == 64));
}

/// Issue #9, bug 3: `40` and `40.0` are the same JSON value, so answering
/// `{"age":40}` with `{"age":40.0}` is the loop, caught before anything of
/// it is appended.
#[test]
fn a_payload_re_emitted_with_numbers_spelled_differently_is_the_same_loop() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_FLOAT_ECHO]);
    host.exec("users", "u1", "create", r#"{"name":"Ada"}"#);

    let settled = host.exec("users", "u1", "update", r#"{"age": 40}"#);

    assert_eq!(settled.events.len(), 1, "only the update from outside is appended");
    match settled.failures.as_slice() {
        [Failure::InfiniteLoop(err)] => assert_eq!(err.plugin, "fixture-float-echo"),
        other => panic!("expected an infinite loop, got {other:?}"),
    }
}

/// A process manager that dispatches ten commands per event grows one
/// cascade without end; the budget stops it with a named failure, drops the
/// rest, and the next command runs at once, with nothing inherited.
#[test]
fn a_cascade_bomb_stops_at_its_budget_and_leaves_no_backlog() {
    let options = Options {
        cascade_budget: 300,
        ..Options::default()
    };
    let mut host = TestHost::with_options(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAN_OUT], options);

    let settled = host.exec("users", "u1", "create", r#"{"name":"Ada"}"#);

    let budget: Vec<&cascade::CascadeBudgetError> = settled
        .failures
        .iter()
        .filter_map(|f| match f {
            Failure::CascadeBudget(err) => Some(err),
            _ => None,
        })
        .collect();
    assert_eq!(budget.len(), 1, "{:?}", settled.failures);
    assert_eq!(budget[0].plugin, "fixture-fan-out");
    assert!(
        settled.failures[0]
            .to_string()
            .starts_with("cascade exceeded its budget of 300 events and commands"),
        "{}",
        settled.failures[0]
    );
    assert!(settled.events.len() + settled.commands.len() <= 300);
    assert!(settled.events.len() > 100, "it ran until the budget");
    let log_length = host.log().len();

    let innocent = host.exec("accounts", "a1", "open", "{}");
    assert!(innocent.is_ok(), "{:?}", innocent.failures);
    assert_eq!(innocent.events.len(), 1);
    assert_eq!(host.log().len(), log_length + 1, "no backlog ran before it");
}

/// The cascade's size when the bomb stopped, and the budget it names.
fn bomb_size(settled: &cascade::Settled) -> (usize, usize) {
    let max = settled
        .failures
        .iter()
        .find_map(|f| match f {
            Failure::CascadeBudget(err) => Some(err.max),
            _ => None,
        })
        .expect("a cascade budget failure");
    (settled.events.len() + settled.commands.len(), max)
}

/// A command's own budget wins over the plugin's manifest, which wins over
/// the host's.
#[test]
fn the_budget_is_the_commands_else_the_plugins_manifest_else_the_hosts() {
    let options = Options {
        cascade_budget: 300,
        ..Options::default()
    };
    let mut host = TestHost::with_options(&[plugins::USERS, plugins::ACCOUNTS], options);
    let bomb = host.dir.path().join("fixture-fan-out.wasm");
    std::fs::copy(plugins::FIXTURE_FAN_OUT, &bomb).unwrap();
    std::fs::write(
        bomb.with_extension("toml"),
        "[capabilities]\ndispatch = [\"users.create\"]\n[limits]\ncascade-budget = 800\n",
    )
    .unwrap();
    host.runtime.add_plugin(&bomb).unwrap();

    let (size, max) = bomb_size(&host.exec("users", "u1", "create", r#"{"name":"Ada"}"#));
    assert_eq!(max, 800, "the manifest's budget");
    assert!(size > 300 && size <= 800, "{size}");

    let command = cascade::Command::new("users", "u2", "create", r#"{"name":"Bob"}"#);
    let submission = cascade::Submission {
        command,
        expected_version: None,
        idempotency_key: None,
        cascade_budget: Some(50),
        trace: false,
    };
    let pipeline = host.runtime.pipeline();
    let id = pipeline.submit_all([submission]).unwrap().remove(0);
    let (size, max) = bomb_size(&pipeline.run_until_settled(&id).unwrap());
    assert_eq!(max, 50, "the command's budget");
    assert!(size <= 50, "{size}");

    // The command line has it too.
    drop(host.runtime);
    let (status, out) = cascade_tests::cli(
        host.dir.path(),
        &[
            "exec",
            "users",
            "u3",
            "create",
            r#"{"name":"Cy"}"#,
            "--budget",
            "40",
            "--json",
        ],
    );
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("cascade exceeded its budget of 40 events and commands"),
        "{out}"
    );
}
