//! Stateful process managers: state blobs with checkpoints, refresh and
//! rebuild, skip-while-refreshing, redeploys, restarts.

use cascade::{Command, Options, RefreshReport};
use cascade_tests::{TestHost, only_handler_failure, plugins};
use serde_json::{Value, json};

fn state(host: &mut TestHost, name: &str) -> Value {
    host.instance_state(name, cascade::SINGLETON).expect("a stored state")
}

fn refresh(host: &mut TestHost, name: &str) -> RefreshReport {
    host.runtime.pipeline().refresh(name, None, &mut |_, _| {}).unwrap()
}

fn user_counter_host() -> TestHost {
    TestHost::with(&[
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::WELCOME,
        plugins::USER_COUNTER,
    ])
}

#[test]
fn state_and_checkpoint_are_persisted_when_the_cascade_settles() {
    let mut host = user_counter_host();

    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    // The JS library's `{usersCreated: 1}`, stored with the checkpoint.
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 1}));
    assert_eq!(host.runtime.pipeline().checkpoint("user-counter").unwrap(), Some(2));
}

#[test]
fn a_redeployed_build_carries_the_state_on_and_a_refresh_recomputes_it() {
    let mut host = user_counter_host();
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);
    host.exec("users", "u1", "update", r#"{"age":40}"#);
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 2}));

    // Deploy the build that counts by two under the same name.
    let by_two = host.dir.path().join("user-counter.wasm");
    std::fs::copy(plugins::USER_COUNTER_BY_TWO, &by_two).unwrap();
    host.runtime.add_plugin(&by_two).unwrap();
    assert_eq!(
        state(&mut host, "user-counter"),
        json!({"usersCreated": 2}),
        "state carries over"
    );

    let report = refresh(&mut host, "user-counter");

    assert_eq!((report.events, report.calls, report.through), (2, 2, 3));
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 4}));
    // And the new build goes on counting by two.
    host.exec("users", "u2", "create", r#"{"name":"Ada"}"#);
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 6}));
}

#[test]
fn two_refreshes_in_a_row_give_the_state_of_the_live_run() {
    let mut host = user_counter_host();
    for i in 0..3 {
        host.exec("users", &format!("u{i}"), "create", r#"{"name":"x"}"#);
    }
    let live = state(&mut host, "user-counter");
    assert_eq!(live, json!({"usersCreated": 3}));

    refresh(&mut host, "user-counter");
    assert_eq!(state(&mut host, "user-counter"), live);
    // The JS library's second refreshState() double-counts here.
    refresh(&mut host, "user-counter");
    assert_eq!(state(&mut host, "user-counter"), live);
}

#[test]
fn rebuild_refreshes_stateful_process_managers_and_never_calls_stateless_ones() {
    let mut host = user_counter_host();
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);
    let pipeline = host.runtime.pipeline();
    assert_eq!(pipeline.handler_calls("welcome"), Some(1));

    let reports = pipeline.rebuild(&mut |_, _, _| {}).unwrap();

    let refreshed: Vec<&str> = reports.iter().map(|r| r.listener.as_str()).collect();
    assert_eq!(refreshed, ["user-counter"]);
    assert_eq!(pipeline.handler_calls("welcome"), Some(1), "welcome is stateless");
    assert_eq!(pipeline.handler_calls("user-counter"), Some(2));
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 1}));
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"], "nothing re-issued");
}

#[test]
fn a_handler_that_skips_while_refreshing_is_not_counted_again() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_SKIPPER]);
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);
    assert_eq!(
        state(&mut host, "fixture-skipper"),
        json!({"usersSeen": 1, "mailsSent": 1})
    );

    let report = refresh(&mut host, "fixture-skipper");

    assert_eq!(report.skipped, 1);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // The on- handler replayed; the skipped after-effect did not count again.
    assert_eq!(
        state(&mut host, "fixture-skipper"),
        json!({"usersSeen": 1, "mailsSent": 0})
    );
}

#[test]
fn skip_refreshing_outside_a_refresh_is_a_failure_naming_the_handler() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_SKIPPER]);
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let settled = host.exec("users", "u1", "update", r#"{"age":3}"#);

    let failure = only_handler_failure(&settled);
    assert_eq!(failure.handler, "on-user-updated");
    assert!(
        failure.message.contains("`skip-refreshing` outside a refresh"),
        "{failure}"
    );
}

#[test]
fn after_handlers_run_during_a_refresh_and_their_commands_are_dropped() {
    let mut host = order_host();
    host.exec("payment", "o1", "succeed", r#"{"amount":10}"#);
    host.exec("inventory", "o1", "reserve", r#"{"items":["book"]}"#);
    host.exec("payment", "o2", "succeed", r#"{"amount":10}"#);
    assert_eq!(shipped(&mut host), 1);

    let report = refresh(&mut host, "order-fulfillment");

    // on- and after- handlers of the three events ran; after-inventory-reserved
    // dispatched shipOrder again, which was dropped, and completed o1 again.
    assert_eq!((report.events, report.calls, report.dropped_commands), (3, 6, 1));
    assert_eq!(report.instances, 1, "o1 shipped and completed; o2 waits");
    assert_eq!(shipped(&mut host), 1, "a refresh never re-issues commands");
    let instances = host.runtime.instances("order-fulfillment", None, 10).unwrap();
    assert_eq!(instances.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["o2"]);
    let o2 = host
        .runtime
        .instance("order-fulfillment", "o2")
        .unwrap()
        .and_then(|(i, _)| i.state)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&o2).unwrap(),
        json!({"paymentReceived": true, "inventoryReserved": false})
    );
}

fn order_host() -> TestHost {
    TestHost::with(&[
        plugins::PAYMENT,
        plugins::INVENTORY,
        plugins::SHIPPING,
        plugins::ORDER_FULFILLMENT,
    ])
}

fn shipped(host: &mut TestHost) -> usize {
    host.log_names().iter().filter(|n| *n == "OrderShipped").count()
}

#[test]
fn an_order_ships_exactly_once_whichever_fact_comes_first() {
    let mut host = order_host();
    let payment_first = [
        ("payment", "succeed", r#"{"amount":10}"#),
        ("inventory", "reserve", r#"{"items":["a"]}"#),
    ];
    let inventory_first = [payment_first[1], payment_first[0]];
    for (order, steps) in [("o1", payment_first), ("o2", inventory_first)] {
        let first = host.exec(steps[0].0, order, steps[0].1, steps[0].2);
        assert!(
            first.events.iter().all(|e| e.name != "OrderShipped"),
            "{order}: not yet"
        );
        let second = host.exec(steps[1].0, order, steps[1].1, steps[1].2);
        assert!(second.is_ok(), "{:?}", second.failures);
        let names: Vec<&str> = second.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[1], "OrderShipped", "{order}: {names:?}");
        assert_eq!(second.events[1].stream(), format!("shipping:{order}"));
    }
    assert_eq!(shipped(&mut host), 2);
}

#[test]
fn an_order_with_only_one_fact_never_ships() {
    let mut host = order_host();
    host.exec("payment", "o1", "succeed", r#"{"amount":10}"#);
    host.exec("inventory", "o2", "reserve", r#"{"items":["a"]}"#);
    assert_eq!(shipped(&mut host), 0);
}

#[test]
fn state_survives_a_restart_without_replaying_history() {
    let mut host = user_counter_host();
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);

    let mut host = host.reopen(Options::default());

    assert_eq!(
        host.runtime.pipeline().handler_calls("user-counter"),
        Some(0),
        "no replay"
    );
    host.exec("users", "u2", "create", r#"{"name":"Ada"}"#);
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 2}));
}

#[test]
fn a_refresh_over_100k_events_finishes_and_its_progress_reaches_the_total() {
    let mut host = user_counter_host();
    let pipeline = host.runtime.pipeline();
    let commands: Vec<_> = (0..50_000)
        .map(|i| Command::new("users", &format!("u{i}"), "create", r#"{"name":"x"}"#))
        .collect();
    pipeline.submit_all(commands).unwrap();
    pipeline.run_until_idle().unwrap();

    let mut last = (0, 0);
    let report = pipeline
        .refresh("user-counter", None, &mut |done, total| last = (done, total))
        .unwrap();

    assert_eq!(report.through, 100_000);
    assert_eq!(last, (100_000, 100_000));
    assert_eq!(report.events, 50_000);
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 50_000}));
}

#[test]
fn refreshing_a_stateless_or_unknown_process_manager_is_a_clear_error() {
    let mut host = user_counter_host();
    let pipeline = host.runtime.pipeline();
    let err = pipeline.refresh("welcome", None, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "process manager `welcome` is stateless: it has no state to show or refresh"
    );
    let err = pipeline.refresh("nobody", None, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no process manager `nobody` is registered (registered: `welcome`, `user-counter`)"
    );
}

/// Issue #9, bugs 1 and 2: `fixture-refresh-exact` changes its state and
/// then fails for `bad`, and traps in its after-effect for `boom`. Live,
/// both calls are atomic; a refresh and a rebuild over the same events must
/// end in exactly the live state, report the failures, and live counting
/// must go on from there.
#[test]
fn a_refresh_that_meets_failures_and_traps_ends_in_exactly_the_live_state() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::FIXTURE_REFRESH_EXACT]);
    for (id, name) in [("u1", "a"), ("u2", "bad"), ("u3", "boom"), ("u4", "c")] {
        host.exec("users", id, "create", &format!(r#"{{"name":"{name}"}}"#));
    }
    let live = state(&mut host, "fixture-refresh-exact");
    assert_eq!(
        live,
        json!({"created": 3, "names": ["a", "boom", "c"], "afterSeen": ["a", "bad", "c"]})
    );

    // Both failures are parked: live they never took effect, so the
    // refresh leaves them out rather than calling them again.
    let report = refresh(&mut host, "fixture-refresh-exact");
    assert_eq!((report.parked, report.failures.len()), (2, 0), "{:?}", report.failures);
    assert_eq!(state(&mut host, "fixture-refresh-exact"), live);

    let reports = host.runtime.pipeline().rebuild(&mut |_, _, _| {}).unwrap();
    assert_eq!(reports[0].parked, 2);
    assert_eq!(state(&mut host, "fixture-refresh-exact"), live);

    // Skipped, they stay left out; with the parked entries gone (as after a
    // retry that failed again and was then skipped) the same holds.
    for (id, _) in host.runtime.pipeline().parked().unwrap() {
        host.runtime.pipeline().skip_parked(id, "test").unwrap();
    }
    assert_eq!(refresh(&mut host, "fixture-refresh-exact").parked, 2);
    assert_eq!(state(&mut host, "fixture-refresh-exact"), live);

    host.exec("users", "u5", "create", r#"{"name":"d"}"#);
    assert_eq!(
        state(&mut host, "fixture-refresh-exact"),
        json!({"created": 4, "names": ["a", "boom", "c", "d"], "afterSeen": ["a", "bad", "c", "d"]})
    );
}

#[test]
fn only_the_newest_versions_are_kept_and_a_forgotten_build_cannot_come_back() {
    let mut host = user_counter_host();
    let original = host.runtime.active_version("user-counter").unwrap().hash;
    let by_two = host.dir.path().join("user-counter.wasm");
    std::fs::copy(plugins::USER_COUNTER_BY_TWO, &by_two).unwrap();
    for _ in 0..cascade::KEPT_VERSIONS {
        host.runtime.add_plugin(&by_two).unwrap();
    }

    let (versions, active) = host.runtime.versions("user-counter").unwrap();
    assert_eq!(versions.len(), cascade::KEPT_VERSIONS);
    assert_eq!(active, cascade::KEPT_VERSIONS as u64 + 1);
    assert!(versions.iter().all(|v| v.hash != original), "version 1 is forgotten");

    // Every kept version can be rolled back to; the forgotten one cannot.
    let swap = cascade::Swap::default();
    for _ in 1..cascade::KEPT_VERSIONS {
        let back = host.runtime.rollback("user-counter", &swap).unwrap();
        assert_ne!(back.hash, original);
    }
    let err = host.runtime.rollback("user-counter", &swap).unwrap_err();
    assert!(err.to_string().contains("no version older"), "{err}");

    // The host still runs the kept build after the prune.
    host.exec("users", "u1", "create", r#"{"name":"Torsten"}"#);
    assert_eq!(state(&mut host, "user-counter"), json!({"usersCreated": 2}));
}
