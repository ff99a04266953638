//! Python and JavaScript guests (guest-sdk/python, guest-sdk/js), built from
//! source by tests/build.rs with the pinned toolchains: the same process
//! managers as the Rust ones pass the same tests, in both languages, and so
//! do an aggregate and a projection written in each.

use cascade::Failure;
use cascade_tests::{TestHost, only_command_error, only_handler_failure, plugins};
use serde_json::{Value, json};

/// One language's builds of the example plugins and the failing fixture.
struct Lang {
    suffix: &'static str,
    welcome: &'static str,
    order_fulfillment: &'static str,
    user_counter: &'static str,
    failing: &'static str,
    /// How the failing fixture's exception starts, with its type.
    exception: &'static str,
    /// Where the traceback or stack names the handler.
    in_handler: &'static str,
    /// The `notes` aggregate and `note-list` projection fixtures.
    notes: &'static str,
    note_list: &'static str,
    /// How the bug in the aggregate's `crash` command starts.
    bug: &'static str,
}

const PYTHON: Lang = Lang {
    suffix: "py",
    welcome: plugins::WELCOME_PY,
    order_fulfillment: plugins::ORDER_FULFILLMENT_PY,
    user_counter: plugins::USER_COUNTER_PY,
    failing: plugins::FIXTURE_FAILING_PY,
    exception: "failing.Refused: no users called 'bad'",
    in_handler: "in on_user_created",
    notes: plugins::FIXTURE_NOTES_PY,
    note_list: plugins::FIXTURE_NOTE_LIST_PY,
    bug: "KeyError: 'missing'",
};

const JAVASCRIPT: Lang = Lang {
    suffix: "js",
    welcome: plugins::WELCOME_JS,
    order_fulfillment: plugins::ORDER_FULFILLMENT_JS,
    user_counter: plugins::USER_COUNTER_JS,
    failing: plugins::FIXTURE_FAILING_JS,
    exception: "Refused: no users called 'bad'",
    in_handler: "onUserCreated",
    notes: plugins::FIXTURE_NOTES_JS,
    note_list: plugins::FIXTURE_NOTE_LIST_JS,
    bug: "TypeError",
};

fn state(host: &mut TestHost, name: &str) -> Value {
    host.instance_state(name, cascade::SINGLETON).expect("a stored state")
}

fn welcome_opens_an_account_for_every_new_user(lang: &Lang) {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, lang.welcome]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"Ada"}"#);
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
    assert_eq!(
        settled.commands[1].issued_by.as_deref(),
        Some(format!("welcome-{}", lang.suffix).as_str())
    );
}

fn order_fulfillment_ships_once_and_not_again_on_refresh(lang: &Lang) {
    let name = format!("order-fulfillment-{}", lang.suffix);
    let mut host = TestHost::with(&[
        plugins::PAYMENT,
        plugins::INVENTORY,
        plugins::SHIPPING,
        lang.order_fulfillment,
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

    // One instance per order; the shipped ones completed.
    let instances = |host: &mut TestHost| {
        let list = host.runtime.instances(&name, None, 10).unwrap();
        list.iter()
            .map(|i| {
                let state = host.runtime.instance(&name, &i.id).unwrap().unwrap().0.state.unwrap();
                (i.id.clone(), serde_json::from_slice::<Value>(&state).unwrap())
            })
            .collect::<Vec<_>>()
    };
    let before = instances(&mut host);
    assert_eq!(
        before,
        [(
            "o3".to_owned(),
            json!({"paymentReceived": true, "inventoryReserved": false})
        )]
    );
    let report = host.runtime.pipeline().refresh(&name, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.dropped_commands, 2, "the two shipments, dropped");
    assert_eq!(shipped(&mut host), 2);
    assert_eq!(instances(&mut host), before);
}

fn user_counter_keeps_the_same_state_as_the_rust_one(lang: &Lang) {
    let name = format!("user-counter-{}", lang.suffix);
    let mut host = TestHost::with(&[plugins::USERS, plugins::USER_COUNTER, lang.user_counter]);
    for id in ["u1", "u2", "u3"] {
        host.exec("users", id, "create", r#"{"name":"x"}"#);
    }
    host.exec("users", "u1", "update", r#"{"age":3}"#);
    assert_eq!(state(&mut host, &name), json!({"usersCreated": 4}));
    assert_eq!(state(&mut host, &name), state(&mut host, "user-counter"));
    host.runtime.pipeline().refresh(&name, None, &mut |_, _| {}).unwrap();
    assert_eq!(state(&mut host, &name), json!({"usersCreated": 4}));
    // After a restart it carries on from its stored state.
    let mut host = host.reopen(cascade::Options::default());
    host.exec("users", "u4", "create", r#"{"name":"x"}"#);
    assert_eq!(state(&mut host, &name), json!({"usersCreated": 5}));
}

fn an_exception_is_the_failure_with_its_message_and_stack(lang: &Lang) {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, lang.failing]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"bad"}"#);
    let failure = only_handler_failure(&settled);
    assert!(failure.message.starts_with(lang.exception), "{failure}");
    assert!(failure.message.contains(lang.in_handler), "the stack: {failure}");
}

fn a_dispatch_the_plugin_may_not_make_fails_with_the_hosts_reason(lang: &Lang) {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, lang.failing]);
    let settled = host.exec("users", "u1", "create", r#"{"name":"nogrant"}"#);
    let [Failure::Handler(failure)] = settled.failures.as_slice() else {
        panic!("{:?}", settled.failures)
    };
    // The host's own message, not the guest's account of the refusal.
    assert_eq!(
        failure.message,
        format!(
            "`fixture-failing-{}` may not dispatch `accounts.open` (granted: none); add it to `dispatch` \
             under [capabilities] in the plugin's manifest",
            lang.suffix
        )
    );
    assert_eq!(host.log_names(), ["UserCreated"]);
}

fn an_aggregate_and_a_projection_decide_and_keep_read_models(lang: &Lang) {
    let mut host = TestHost::with(&[lang.notes, lang.note_list]);
    let doc = |host: &mut TestHost, id: &str| -> Option<Value> {
        let body = host.runtime.pipeline().read_models().get("note-list", id).unwrap();
        body.map(|b| serde_json::from_str(&b).unwrap())
    };
    assert!(
        host.exec("notes", "n1", "add", r#"{"text":"hi","author":"ada"}"#)
            .is_ok()
    );
    assert!(
        host.exec("notes", "n2", "add", r#"{"text":"again","author":"ada"}"#)
            .is_ok()
    );
    assert_eq!(
        doc(&mut host, "n1"),
        Some(json!({"text": "hi", "author": "ada", "earlier": 0}))
    );
    assert_eq!(
        doc(&mut host, "n2"),
        Some(json!({"text": "again", "author": "ada", "earlier": 1}))
    );

    // Rejections carry the aggregate's reason; its state blob held `live`.
    let settled = host.exec("notes", "n1", "add", r#"{"text":"twice","author":"ada"}"#);
    assert!(
        only_command_error(&settled)
            .to_string()
            .ends_with("rejected it: note n1 exists")
    );
    let settled = host.exec("notes", "n3", "remove", "{}");
    assert!(
        only_command_error(&settled)
            .to_string()
            .ends_with("rejected it: note n3 does not exist")
    );
    // The host checks what the guest decided against the declared schema.
    let settled = host.exec("notes", "n3", "add", "{}");
    assert!(
        only_command_error(&settled)
            .to_string()
            .contains("breaks its schema at `/text`"),
        "{settled:?}"
    );
    // A bug rejects the command with the exception and where it was raised.
    let settled = host.exec("notes", "n4", "crash", "{}");
    let error = only_command_error(&settled).to_string();
    assert!(error.contains(lang.bug) && error.contains("handle"), "{error}");

    assert!(host.exec("notes", "n1", "remove", "{}").is_ok());
    assert_eq!(doc(&mut host, "n1"), None);
    // A projection that dispatches fails that call, saying why.
    let settled = host.exec("notes", "n5", "add", r#"{"text":"dispatch","author":"bob"}"#);
    let failure = only_handler_failure(&settled);
    assert!(
        failure.message.contains("dispatch is for process managers"),
        "{failure}"
    );
    assert_eq!(doc(&mut host, "n5"), None);
    assert_eq!(
        host.log_names(),
        ["NoteAdded", "NoteAdded", "NoteRemoved", "NoteAdded"],
        "nothing rejected was stored"
    );
}

macro_rules! in_both_languages {
    ($($test:ident),* $(,)?) => {
        mod python {
            $(#[test] fn $test() { super::$test(&super::PYTHON) })*
        }
        mod javascript {
            $(#[test] fn $test() { super::$test(&super::JAVASCRIPT) })*
        }
    };
}

in_both_languages!(
    welcome_opens_an_account_for_every_new_user,
    order_fulfillment_ships_once_and_not_again_on_refresh,
    user_counter_keeps_the_same_state_as_the_rust_one,
    an_exception_is_the_failure_with_its_message_and_stack,
    a_dispatch_the_plugin_may_not_make_fails_with_the_hosts_reason,
    an_aggregate_and_a_projection_decide_and_keep_read_models,
);
