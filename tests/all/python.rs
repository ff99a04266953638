//! Python guests (guest-sdk/python), built from source by tests/build.rs
//! with the pinned componentize-py: the same process managers as the Rust
//! ones pass the same tests.

use cascade::Failure;
use cascade_tests::{TestHost, only_handler_failure, plugins};
use serde_json::{Value, json};

fn state(host: &mut TestHost, name: &str) -> Value {
    let blob = host.runtime.pipeline().pm_state(name).unwrap().expect("a stored state");
    serde_json::from_slice(&blob).unwrap()
}

#[test]
fn welcome_in_python_opens_an_account_for_every_new_user() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME_PY]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"Ada"}"#);
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
    assert_eq!(settled.commands[1].issued_by.as_deref(), Some("welcome-py"));
}

#[test]
fn order_fulfillment_in_python_ships_once_whichever_fact_comes_first_and_not_again_on_refresh() {
    let mut host = TestHost::with(&[
        plugins::PAYMENT,
        plugins::INVENTORY,
        plugins::SHIPPING,
        plugins::ORDER_FULFILLMENT_PY,
    ]);
    let payment = ("payment", "succeed", r#"{"amount":10}"#);
    let inventory = ("inventory", "reserve", r#"{"items":["a"]}"#);
    for (order, steps) in [("o1", [payment, inventory]), ("o2", [inventory, payment])] {
        let first = host.exec(steps[0].0, order, steps[0].1, steps[0].2);
        assert!(
            first.events.iter().all(|e| e.name != "OrderShipped"),
            "{order}: not yet"
        );
        let second = host.exec(steps[1].0, order, steps[1].1, steps[1].2);
        assert!(second.is_ok(), "{:?}", second.failures);
        let names: Vec<&str> = second.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [second.events[0].name.as_str(), "OrderShipped"], "{order}");
    }
    // One fact alone never ships.
    host.exec("payment", "o3", "succeed", r#"{"amount":10}"#);
    let shipped = |host: &mut TestHost| host.log_names().iter().filter(|n| *n == "OrderShipped").count();
    assert_eq!(shipped(&mut host), 2);

    let before = state(&mut host, "order-fulfillment-py");
    let report = host
        .runtime
        .pipeline()
        .refresh("order-fulfillment-py", &mut |_, _| {})
        .unwrap();
    assert_eq!(report.dropped_commands, 2, "the two shipments, dropped");
    assert_eq!(shipped(&mut host), 2);
    assert_eq!(state(&mut host, "order-fulfillment-py"), before);
    assert_eq!(
        before["orders"]["o3"],
        json!({"paymentReceived": true, "inventoryReserved": false})
    );
}

#[test]
fn user_counter_in_python_keeps_the_same_state_as_the_rust_one() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::USER_COUNTER, plugins::USER_COUNTER_PY]);
    for id in ["u1", "u2", "u3"] {
        host.exec("users", id, "create", r#"{"name":"x"}"#);
    }
    host.exec("users", "u1", "update", r#"{"age":3}"#);
    assert_eq!(state(&mut host, "user-counter-py"), json!({"usersCreated": 4}));
    assert_eq!(state(&mut host, "user-counter-py"), state(&mut host, "user-counter"));
    host.runtime
        .pipeline()
        .refresh("user-counter-py", &mut |_, _| {})
        .unwrap();
    assert_eq!(state(&mut host, "user-counter-py"), json!({"usersCreated": 4}));
    // After a restart it carries on from its stored state.
    let mut host = host.reopen(cascade::Options::default());
    host.exec("users", "u4", "create", r#"{"name":"x"}"#);
    assert_eq!(state(&mut host, "user-counter-py"), json!({"usersCreated": 5}));
}

#[test]
fn a_python_exception_is_the_failure_with_its_type_message_and_traceback() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAILING_PY]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"bad"}"#);
    let failure = only_handler_failure(&settled);
    assert!(
        failure.message.starts_with("failing.Refused: no users called 'bad'"),
        "{failure}"
    );
    assert!(
        failure.message.contains("in on_user_created"),
        "the traceback: {failure}"
    );
}

#[test]
fn a_dispatch_the_python_plugin_may_not_make_fails_with_the_hosts_reason() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::FIXTURE_FAILING_PY]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"nogrant"}"#);
    let [Failure::Handler(failure)] = settled.failures.as_slice() else {
        panic!("{:?}", settled.failures)
    };
    // The host's own message, not a Python traceback of the refusal.
    assert_eq!(
        failure.message,
        "`fixture-failing-py` may not dispatch `accounts.open` (granted: none); add it to `dispatch` \
         under [capabilities] in the plugin's manifest"
    );
    assert_eq!(host.log_names(), ["UserCreated"]);
}
