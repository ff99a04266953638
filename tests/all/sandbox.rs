//! The sandbox: whatever a plugin does, the host stays up, the failure names
//! plugin, handler and event, the other plugins process every event, the
//! events after the bad one are processed, and the log and other plugins'
//! state are intact. One test per misbehaviour of `fixture-hostile`.

use cascade::{Command, Failure, HandlerFailure, PluginError};
use cascade_tests::{TestHost, only_handler_failure, plugins};
use serde_json::json;

/// A host where `fixture-hostile` runs before two well-behaved listeners.
fn hostile_host() -> TestHost {
    TestHost::with(&[
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::FIXTURE_HOSTILE,
        plugins::WELCOME,
        plugins::USER_COUNTER,
    ])
}

fn user(host: &mut TestHost, id: &str, name: &str) -> cascade::Settled {
    host.exec("users", id, "create", &json!({ "name": name }).to_string())
}

/// Create a user named `name` (the misbehaviour), check the one failure it
/// causes and that everything around it carried on; returns the failure.
fn misbehave(name: &str, handler: &str) -> HandlerFailure {
    let mut host = hostile_host();
    assert!(user(&mut host, "u0", "calm").is_ok());

    let settled = user(&mut host, "u1", name);

    let failures: Vec<&HandlerFailure> = settled
        .failures
        .iter()
        .map(|f| match f {
            Failure::Handler(f) => f,
            other => panic!("expected handler failures only, got {other}"),
        })
        .collect();
    let [failure] = failures.as_slice() else {
        panic!("expected one failure, got {:?}", settled.failures)
    };
    assert_eq!(
        (
            failure.plugin.as_str(),
            failure.handler.as_str(),
            failure.event.as_str()
        ),
        ("fixture-hostile", handler, "UserCreated")
    );
    // The well-behaved listeners handled the same event...
    assert_eq!(settled.events.last().unwrap().name, "AccountOpened");
    // ...and the plugin, on a fresh instance, handles the next one.
    assert!(user(&mut host, "u2", "calm").is_ok());
    assert_eq!(
        host.log_names(),
        [
            "UserCreated",
            "AccountOpened",
            "UserCreated",
            "AccountOpened",
            "UserCreated",
            "AccountOpened"
        ]
    );
    let blob = host
        .runtime
        .pipeline()
        .instance_state("user-counter", cascade::SINGLETON)
        .unwrap()
        .and_then(|i| i.state)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&blob).unwrap(),
        json!({"usersCreated": 3})
    );
    (*failure).clone()
}

#[test]
fn an_endless_loop_in_an_on_handler_is_interrupted_at_its_time_budget() {
    let failure = misbehave("loop", "on-user-created");
    assert!(
        failure.message.starts_with("exceeded its time budget of 100ms"),
        "{failure}"
    );
}

/// A 10 s sleep is a blocking host call; it ends at the call's budget, the
/// guest is interrupted when it resumes, and the three attempts together
/// take well under one sleep (a bound on the stall, not a speed target).
#[test]
fn a_sleeping_handler_is_stopped_at_its_time_budget_not_after_its_sleep() {
    let started = std::time::Instant::now();
    let failure = misbehave("sleep", "on-user-created");
    assert!(
        failure.message.starts_with("exceeded its time budget of 100ms"),
        "{failure}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_endless_loop_in_an_after_handler_is_interrupted_at_its_time_budget() {
    let failure = misbehave("loop-after", "after-user-created");
    assert!(
        failure.message.starts_with("exceeded its time budget of 100ms"),
        "{failure}"
    );
}

#[test]
fn unbounded_allocation_stops_at_the_memory_limit() {
    let failure = misbehave("alloc", "on-user-created");
    assert!(
        failure.message.starts_with("ran out of its memory limit of 64 MiB"),
        "{failure}"
    );
}

#[test]
fn a_panic_is_reported_as_a_trap_in_one_line_with_the_guests_message() {
    let failure = misbehave("panic", "on-user-created");
    assert!(
        failure
            .message
            .starts_with("trapped: panicked: hostile plugin panics on purpose (at "),
        "{failure}"
    );
    assert_eq!(failure.message.lines().count(), 1, "{failure}");
}

#[test]
fn deep_recursion_is_reported_as_a_stack_overflow() {
    let failure = misbehave("recurse", "on-user-created");
    assert_eq!(failure.message, "overflowed its stack (unbounded recursion?)");
}

#[test]
fn a_100_mb_error_string_cannot_even_be_built_under_the_memory_limit() {
    let failure = misbehave("huge", "on-user-created");
    assert!(failure.message.starts_with("ran out of its memory limit"), "{failure}");
}

#[test]
fn a_large_error_message_is_truncated() {
    let failure = misbehave("big", "on-user-created");
    assert!(failure.message.len() < 5000, "{} bytes", failure.message.len());
    assert!(failure.message.ends_with("... (truncated from 8388608 bytes)"));
}

#[test]
fn a_million_dispatches_stop_at_the_limit_and_none_is_queued() {
    let failure = misbehave("flood", "on-user-created");
    assert_eq!(failure.message, "dispatched more than 1000 commands in one call");
    // misbehave() already checked the log: no account a0..a999 was opened.
}

#[test]
fn what_one_call_hands_the_host_is_bounded_in_total_bytes() {
    // Every command is under the 1 MiB args limit; the fifth passes 4 MiB.
    let failure = misbehave("bigargs", "on-user-created");
    assert_eq!(
        failure.message,
        "handed the host more than 4194304 bytes in one call (dispatched commands and log lines together)"
    );

    // 1,000 lines of 8 KiB: 100 kept, each cut to 4 KiB, and a note.
    let mut host = hostile_host();
    let settled = user(&mut host, "u1", "longlog");
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert_eq!(settled.logs.len(), 101);
    assert!(settled.logs[..100].iter().all(|l| l.message.len() < 4200));
    assert_eq!(
        settled.logs[100].message,
        "900 more log line(s) dropped: limits are 100 lines and 4194304 bytes per call"
    );
}

#[test]
fn malformed_json_dispatch_args_fail_the_handler() {
    let failure = misbehave("badjson", "on-user-created");
    assert!(
        failure
            .message
            .starts_with("args of command `open` to `accounts:u1` are not valid JSON"),
        "{failure}"
    );
}

#[test]
fn the_environment_a_plugin_sees_is_empty() {
    let mut host = hostile_host();
    let settled = user(&mut host, "u1", "env");
    assert!(settled.is_ok(), "{:?}", settled.failures);
    let logs: Vec<&str> = settled.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logs, ["environment is empty"]);
}

/// Importing files and sockets is allowed (toolchains import them by
/// default); using them is denied, and the guest sees why.
#[test]
fn a_plugin_using_files_or_sockets_is_accepted_and_every_use_is_denied() {
    let mut host = hostile_host();
    host.runtime
        .add_plugin(std::path::Path::new(plugins::FIXTURE_SNEAKY))
        .unwrap();

    let file = user(&mut host, "u1", "file");
    let socket = user(&mut host, "u2", "socket");

    let failure = only_handler_failure(&file);
    assert!(failure.message.starts_with("file: "), "{failure}");
    assert!(!failure.message.contains("read"), "nothing was read: {failure}");
    let failure = only_handler_failure(&socket);
    assert!(failure.message.starts_with("socket: "), "{failure}");
    assert!(!failure.message.contains("connected"), "{failure}");
    // The others went on: welcome opened both accounts.
    assert_eq!(host.log_names().iter().filter(|n| *n == "AccountOpened").count(), 2);
}

#[test]
fn a_trap_in_a_stateful_process_manager_keeps_what_the_batch_had_applied() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_FRAGILE_COUNTER]);
    let pipeline = host.runtime.pipeline();
    // One batch: the first user is counted, then the trap, then the third.
    let commands: Vec<_> = ["calm", "panic", "calm"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let args = json!({ "name": name }).to_string();
            Command::new("users", &format!("u{i}"), "create", &args)
        })
        .collect();
    pipeline.submit_all(commands).unwrap();
    pipeline.run_until_idle().unwrap();

    let blob = pipeline
        .instance_state("fixture-fragile-counter", cascade::SINGLETON)
        .unwrap()
        .and_then(|i| i.state)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&blob).unwrap(),
        json!({"users": 2})
    );
}

/// Copy a built component (without its manifest) into `dir` under `name`,
/// with `manifest` as its manifest when given.
fn deploy_copy(dir: &std::path::Path, component: &str, name: &str, manifest: Option<&str>) -> std::path::PathBuf {
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::copy(component, &wasm).unwrap();
    if let Some(manifest) = manifest {
        std::fs::write(wasm.with_extension("toml"), manifest).unwrap();
    }
    wasm
}

#[test]
fn a_dispatch_outside_the_granted_capabilities_fails_the_handler() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]);
    let ungranted = deploy_copy(host.dir.path(), plugins::WELCOME, "welcome", None);
    host.runtime.add_plugin(&ungranted).unwrap();

    let settled = user(&mut host, "u1", "Torsten");

    let failure = only_handler_failure(&settled);
    assert_eq!(
        failure.message,
        "`welcome` may not dispatch `accounts.open` (granted: none); add it to `dispatch` under \
         [capabilities] in the plugin's manifest"
    );
    assert_eq!(host.log_names(), ["UserCreated"]);
}

#[test]
fn a_malformed_manifest_refuses_the_plugin_and_stores_nothing() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]);
    let wasm = deploy_copy(
        host.dir.path(),
        plugins::WELCOME,
        "welcome",
        Some("[capabilities]\nsockets = true\n"),
    );

    let err = host.runtime.add_plugin(&wasm).unwrap_err();

    assert!(
        matches!(err, cascade::Error::Plugin(PluginError::InvalidManifest { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("unknown field `sockets`"), "{err}");
    assert_eq!(host.runtime.plugins().unwrap().len(), 2);
}

#[test]
fn a_manifest_can_lower_the_time_budget() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]);
    let manifest = "[limits]\ntime-budget-ms = 20\n[on-error]\nattempts = 1\n";
    let wasm = deploy_copy(host.dir.path(), plugins::FIXTURE_HOSTILE, "hostile", Some(manifest));
    host.runtime.add_plugin(&wasm).unwrap();

    let settled = user(&mut host, "u1", "loop");

    let failure = only_handler_failure(&settled);
    assert!(
        failure.message.starts_with("exceeded its time budget of 20ms"),
        "{failure}"
    );
}

#[test]
fn a_handler_failing_every_attempt_parks_the_event_and_the_plugin_goes_on() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAILING]);

    let settled = user(&mut host, "u1", "Ada");

    let failure = only_handler_failure(&settled);
    let id = failure.parked.expect("parked");
    let parked = host.runtime.pipeline_ref().parked().unwrap();
    let [(parked_id, entry)] = parked.as_slice() else {
        panic!("expected one parked event, got {parked:?}")
    };
    assert_eq!(*parked_id, id);
    assert_eq!(
        (
            entry.plugin.as_str(),
            entry.handler.as_str(),
            entry.position,
            entry.attempts
        ),
        ("fixture-failing", "on-user-created", 1, 3)
    );
    assert_eq!(entry.message, "mail server unreachable for u1");
    // The plugin goes on with the next event (and parks that one too).
    assert_eq!(user(&mut host, "u2", "Grace").failures.len(), 1);
    assert_eq!(host.runtime.pipeline_ref().parked().unwrap().len(), 2);
}

#[test]
fn a_parked_event_is_retried_after_deploying_a_fixed_version() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]);
    // welcome without its manifest: every dispatch is refused, so it parks.
    let broken = deploy_copy(host.dir.path(), plugins::WELCOME, "welcome", None);
    host.runtime.add_plugin(&broken).unwrap();
    let settled = user(&mut host, "u1", "Ada");
    let Some(Failure::Handler(HandlerFailure { parked: Some(id), .. })) = settled.failures.first() else {
        panic!("expected a parked failure, got {:?}", settled.failures)
    };

    // The fix: the same component with its grant.
    std::fs::copy(
        plugins::WELCOME.replace(".wasm", ".toml"),
        broken.with_extension("toml"),
    )
    .unwrap();
    host.runtime.add_plugin(&broken).unwrap();
    let outcome = host.runtime.pipeline().retry_parked(*id).unwrap();

    assert_eq!(outcome, None, "the retry succeeded");
    assert!(host.runtime.pipeline_ref().parked().unwrap().is_empty());
    // The fix widened its grants: recorded between the two.
    assert_eq!(host.log_names(), ["UserCreated", "GrantsChanged", "AccountOpened"]);
}

#[test]
fn a_parked_event_that_fails_its_retry_keeps_its_id() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAILING]);
    user(&mut host, "u1", "Ada");
    let (id, _) = host.runtime.pipeline_ref().parked().unwrap()[0].clone();

    let again = host.runtime.pipeline().retry_parked(id).unwrap();

    assert_eq!(again, Some(id));
    let parked = host.runtime.pipeline_ref().parked().unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0, id);
}

#[test]
fn a_dispatch_to_an_aggregate_nobody_registered_is_refused_at_once() {
    // welcome is granted accounts.open, but no accounts aggregate exists.
    let mut host = TestHost::with(&[plugins::USERS, plugins::WELCOME]);
    let settled = user(&mut host, "u1", "Ada");
    let failure = only_handler_failure(&settled);
    assert!(
        failure
            .message
            .contains("no aggregate `accounts` is registered (registered: `users`)"),
        "{failure}"
    );
    assert_eq!(host.log_names(), ["UserCreated"]);
}

#[test]
fn skipping_a_parked_event_records_who_and_when() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAILING]);
    user(&mut host, "u1", "Ada");
    let (id, _) = host.runtime.pipeline_ref().parked().unwrap()[0].clone();

    let skipped = host.runtime.pipeline().skip_parked(id, "ops@example").unwrap();

    assert_eq!(skipped.skipped_by, "ops@example");
    assert!(skipped.skipped_at > 0);
    assert!(host.runtime.pipeline_ref().parked().unwrap().is_empty());
    let err = host.runtime.pipeline().skip_parked(id, "ops@example").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no parked event #{id}; list them with `cascade parked`")
    );
}

#[test]
fn guest_stdout_and_stderr_go_to_the_host_log_tagged_with_the_plugin() {
    let mut host = hostile_host();

    let settled = user(&mut host, "u1", "print");

    assert!(settled.is_ok(), "{:?}", settled.failures);
    let logs: Vec<(&str, &str)> = settled
        .logs
        .iter()
        .map(|l| (l.plugin.as_str(), l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            ("fixture-hostile", "stdout: hello from the guest"),
            ("fixture-hostile", "stderr: a warning from the guest")
        ]
    );
}

#[test]
fn a_chatty_guest_loses_output_past_the_cap_but_does_not_fail() {
    let mut host = hostile_host();

    let settled = user(&mut host, "u1", "chatty");

    assert!(settled.is_ok(), "{:?}", settled.failures);
    let last = settled.logs.last().unwrap();
    assert_eq!(
        last.message,
        "stdout: 983040 more byte(s) dropped: limit is 65536 per call"
    );
    assert_eq!(settled.logs.len(), 65, "64 kept lines and the note");
}

#[test]
fn the_stop_policy_stops_the_plugin_and_start_resumes_it_from_its_checkpoint() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS]);
    let stop = "[on-error]\nattempts = 1\npolicy = \"stop\"\n";
    // welcome without its grant fails on every event, and stops at the first.
    let welcome = deploy_copy(host.dir.path(), plugins::WELCOME, "welcome", Some(stop));
    host.runtime.add_plugin(&welcome).unwrap();

    let settled = user(&mut host, "u1", "Ada");

    let failure = only_handler_failure(&settled);
    assert!(failure.stopped && failure.parked.is_none(), "{failure:?}");
    assert_eq!(host.runtime.pipeline_ref().stopped(), [("welcome".to_owned(), 0)]);
    // Stopped: the next event does not reach it, and that survives a restart.
    assert!(user(&mut host, "u2", "Grace").is_ok());
    let mut host = host.reopen(cascade::Options::default());
    assert_eq!(host.runtime.pipeline_ref().stopped(), [("welcome".to_owned(), 0)]);
    assert_eq!(host.runtime.pipeline_ref().handler_calls("welcome"), Some(0));

    // Deploy the fix (the grant), then start it: it catches up both users.
    let grant = "[capabilities]\ndispatch = [\"accounts.open\"]\n[on-error]\npolicy = \"stop\"\n";
    std::fs::write(welcome.with_extension("toml"), grant).unwrap();
    host.runtime.add_plugin(&welcome).unwrap();
    let handled = host.runtime.pipeline().start_listener("welcome").unwrap();

    assert_eq!(handled, 2);
    assert!(host.runtime.pipeline_ref().stopped().is_empty());
    assert_eq!(
        host.log_names(),
        [
            "UserCreated",
            "UserCreated",
            "GrantsChanged",
            "AccountOpened",
            "AccountOpened"
        ]
    );
    // And it is back in the pipeline.
    user(&mut host, "u3", "Hedy");
    assert_eq!(host.log_names().iter().filter(|n| *n == "AccountOpened").count(), 3);
}

/// A per-instance process manager whose own state breaks it fails its own
/// calls alone: a stored state that no longer deserializes, one that cannot
/// be serialized, one over the 16 MiB limit, one whose reading sleeps past
/// the time budget. Each failed call is parked naming why and stores
/// nothing; every other plugin handles every event, and the directory opens.
#[test]
fn a_plugin_whose_state_breaks_fails_its_own_calls_alone() {
    for (poison, reason) in [
        ("poison-load", "poisoned on purpose"),
        ("poison-save", "key must be a string"),
        ("poison-big", "exceeds the limit of 16777216"),
        ("poison-sleep", "time budget"),
    ] {
        let mut host = TestHost::with(&[
            plugins::USERS,
            plugins::ACCOUNTS,
            plugins::WELCOME,
            plugins::FIXTURE_BROKEN_STATE,
        ]);
        let first = user(&mut host, "u1", poison);
        let second = user(&mut host, "u2", "Ada");

        let failures: Vec<String> = first
            .failures
            .iter()
            .chain(&second.failures)
            .map(|f| f.to_string())
            .collect();
        assert_eq!(failures.len(), 1, "{poison}: {failures:?}");
        assert!(failures[0].contains("fixture-broken-state"), "{poison}: {failures:?}");
        assert!(failures[0].contains(reason), "{poison}: {failures:?}");
        let mut host = host.reopen(cascade::Options::default());
        let third = user(&mut host, "u3", "Bob");
        assert_eq!(
            host.log_names().iter().filter(|n| *n == "AccountOpened").count(),
            3,
            "{poison}: welcome handled every user"
        );
        assert!(third.failures.len() <= 1, "{poison}: {:?}", third.failures);
        assert_eq!(
            host.runtime.pipeline().parked().unwrap().len(),
            1 + third.failures.len()
        );
    }
}

/// A host where `failing` (given `attempts`) failed on the first user's
/// event and waits to retry; returns that cascade's id.
fn failing_in_backoff(attempts: u32) -> (TestHost, String) {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    let manifest = format!("[on-error]\nattempts = {attempts}\n");
    let failing = deploy_copy(host.dir.path(), plugins::FIXTURE_FAILING, "failing", Some(&manifest));
    host.runtime.add_plugin(&failing).unwrap();
    let pipeline = host.runtime.pipeline();
    let stuck = pipeline
        .submit(Command::new("users", "u1", "create", r#"{"name":"Ada"}"#), None)
        .unwrap();
    while pipeline.step().unwrap() > 0 {}
    (host, stuck)
}

/// A failing handler waits for its retries on a timer, not in the
/// transaction: meanwhile other callers' cascades run and settle, and the
/// failing listener catches up in its own order when its backoff is over.
#[test]
fn a_listener_in_backoff_does_not_hold_up_other_cascades() {
    // Eight attempts: its backoff lasts 10 + 20 + ... + 640 ms in all.
    let (mut host, stuck) = failing_in_backoff(8);
    let pipeline = host.runtime.pipeline();
    assert!(pipeline.next_retry().is_some(), "`failing` waits to retry");
    assert!(pipeline.settled(&stuck).unwrap().is_none(), "its cascade waits for it");

    // Another caller's cascade, through healthy plugins only, settles now.
    let other = pipeline
        .submit(Command::new("accounts", "a9", "open", "{}"), None)
        .unwrap();
    while pipeline.step().unwrap() > 0 {}
    let settled = pipeline
        .settled(&other)
        .unwrap()
        .expect("settled without waiting for the retries");
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert!(pipeline.settled(&stuck).unwrap().is_none(), "still in backoff");

    // The failing listener catches up, in order, and its cascade settles
    // with the failure after every attempt.
    let stuck = pipeline.run_until_settled(&stuck).unwrap();
    let failure = only_handler_failure(&stuck);
    assert_eq!(failure.plugin, "failing");
    assert!(failure.parked.is_some());
    let parked = pipeline.parked().unwrap();
    assert_eq!(parked[0].1.attempts, 8);
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened", "AccountOpened"]);
}

/// A listener that was waiting to retry when the host went down catches up
/// when it opens again: its cascade settles, nothing is handled twice.
#[test]
fn a_listener_in_backoff_at_a_restart_catches_up_after_it() {
    let (mut host, stuck) = failing_in_backoff(2);
    assert!(host.runtime.pipeline().settled(&stuck).unwrap().is_none());

    let mut host = host.reopen(cascade::Options::default());

    let settled = host.runtime.pipeline().run_until_settled(&stuck).unwrap();
    assert_eq!(only_handler_failure(&settled).plugin, "failing");
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
    assert_eq!(host.runtime.pipeline().parked().unwrap().len(), 1);
}
