//! Effects, end to end: real plugins request HTTP calls, a real `cascade
//! serve` performs them against a real receiver on 127.0.0.1 that records
//! every request and its `Idempotency-Key`; killed -9 with effects in
//! flight, every effect arrives at least once and only ever under its own
//! key; a refresh and a rebuild send nothing; an origin not granted is
//! refused; a hanging endpoint holds up no one else.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use cascade_tests::receiver::{Behaviour, Receiver};
use cascade_tests::{ServerProcess, cascade_process_env, cli, plugins};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Run `cascade` (a real process), asserting exit 0; its stdout.
fn run(data: &Path, args: &[&str]) -> String {
    let (status, out, err) = cascade_process_env(data, args, &[]);
    assert_eq!(status, 0, "cascade {args:?}: {out}{err}");
    out
}

/// A data directory with users, accounts and welcome, and `notifications`
/// deployed from `dir` as `name` (a copy of the example, with `manifest`)
/// with the `extra` flags of `plugin add`.
fn with_notifications(data: &Path, name: &str, manifest: &str, extra: &[&str]) {
    if !data.join("cascade.redb").exists() {
        run(
            data,
            &["plugin", "add", plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME],
        );
    }
    let copy = data.parent().unwrap().join(format!("{name}.wasm"));
    std::fs::copy(plugins::NOTIFICATIONS, &copy).unwrap();
    std::fs::write(copy.with_extension("toml"), manifest).unwrap();
    run(data, &[&["plugin", "add", copy.to_str().unwrap()][..], extra].concat());
}

/// A fresh data directory inside its own temporary directory (the copies
/// of plugins go beside it).
fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    (dir, data)
}

/// Wait until the outbox holds no effect of `plugin`.
fn wait_outbox_empty(server: &ServerProcess, plugin: &str) -> Value {
    let until = Instant::now() + WAIT;
    loop {
        let effects = server.get("/effects").body;
        let left = effects["effects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["plugin"] == plugin)
            .count();
        if left == 0 {
            return effects;
        }
        assert!(
            Instant::now() < until,
            "effects of {plugin} still in the outbox: {effects}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An event's payload as JSON, whether the listing gives it as text or as a value.
fn payload_of(event: &Value) -> Value {
    match &event["payload"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    }
}

/// Every event named `name` in the log, through `cascade events --json` on the server.
fn events_named(server: &ServerProcess, name: &str) -> Vec<Value> {
    let page = server.get("/events?limit=10000").body;
    let events = page["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| page.as_array().unwrap().clone());
    events.into_iter().filter(|e| e["name"] == name).collect()
}

#[test]
fn notifications_posts_each_new_user_once_with_a_stable_key_and_gets_the_answer() {
    let receiver = Receiver::start();
    let (dir, data) = data_dir();
    let secret = dir.path().join("token.txt");
    std::fs::write(&secret, "s3cr3t-value\n").unwrap();
    let webhook = format!("webhook-url={}/hooks/users", receiver.url);
    let grant = format!("http={}/hooks", receiver.url);
    let secret_flag = format!("token=@{}", secret.display());
    with_notifications(
        &data,
        "notifications",
        "",
        &["--config", &webhook, "--grant", &grant, "--secret", &secret_flag],
    );
    let server = ServerProcess::start(&data, &[]);
    for id in ["u1", "u2"] {
        assert_eq!(server.create_user(id).status, 200);
    }
    let received = receiver.wait_for(WAIT, |r| r.len() >= 2);
    assert_eq!(received.len(), 2, "{received:?}");
    for (request, id) in received.iter().zip(["u1", "u2"]) {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/hooks/users")
        );
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, json!({"event": "user-created", "userId": id, "name": id}));
        let key = request.key.as_deref().unwrap();
        assert!(
            key.starts_with("notifications-") && key.ends_with("-after-user-created-0"),
            "{key}"
        );
    }
    assert_ne!(received[0].key, received[1].key);
    wait_outbox_empty(&server, "notifications");

    // The outcome came back to the plugin as an event, once per effect.
    let completed = events_named(&server, "EffectCompleted");
    assert_eq!(completed.len(), 2, "{completed:?}");
    for event in &completed {
        assert_eq!(
            (event["streamType"].as_str(), event["streamId"].as_str()),
            (Some("cascade"), Some("effects/notifications"))
        );
        let payload = payload_of(event);
        assert_eq!(
            (payload["ok"].clone(), payload["status"].clone()),
            (json!(true), json!(200))
        );
        assert_eq!(payload["effect"], "welcome-webhook");
        assert_eq!(payload["body"], r#"{"received":true}"#);
    }
    let metrics = server.get("/metrics").body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("cascade_effects_performed_total{plugin=\"notifications\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("cascade_effects_pending 0"), "{metrics}");

    // The grant and the configuration are shown; the secret's value never is.
    let plugins = server.get("/plugins").body.to_string();
    assert!(plugins.contains(&grant[5..]), "{plugins}");
    assert!(!plugins.contains("s3cr3t"), "{plugins}");
    let log = server.get("/events?limit=10000").body.to_string();
    assert!(!log.contains("s3cr3t"), "the log holds no secret");
}

#[test]
fn an_origin_not_granted_is_refused_with_the_grant_to_add_and_nothing_is_sent() {
    let receiver = Receiver::start();
    let (_dir, data) = data_dir();
    let webhook = format!("webhook-url={}/hooks/users", receiver.url);
    // Granted another path only.
    let grant = format!("http={}/other", receiver.url);
    with_notifications(&data, "notifications", "", &["--config", &webhook, "--grant", &grant]);
    let (status, out) = cli(&data, &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_ne!(status, 0, "{out}");
    let (_, parked) = cli(&data, &["parked", "--json"]);
    let parked: Value = serde_json::from_str(&parked).unwrap();
    let message = parked[0]["message"].as_str().unwrap();
    assert!(
        message.contains("may not call") && message.contains(&format!("--grant http={}", receiver.url)),
        "{message}"
    );
    let (_, effects) = cli(&data, &["effects", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&effects).unwrap(), json!([]));
    assert!(receiver.received().is_empty());
    // `plugin list` shows what the plugin may call.
    let (_, list) = cli(&data, &["plugin", "list"]);
    assert!(list.contains(&format!("may call {}/other", receiver.url)), "{list}");

    // A bad grant is refused at deploy, in one line.
    let copy = data.parent().unwrap().join("notifications.wasm");
    let (status, out) = cli(
        &data,
        &["plugin", "add", copy.to_str().unwrap(), "--grant", "http=ftp://x"],
    );
    assert_eq!(status, 2);
    assert!(out.contains("http://") && out.lines().count() == 1, "{out}");
}

/// A manifest that retries fast.
const QUICK: &str = "[effects]\nattempts = 3\nbackoff-ms = 20\ntimeout-ms = 5000\n";

#[test]
fn a_failing_endpoint_is_retried_under_one_key_then_parked_until_retried_or_skipped() {
    let receiver = Receiver::start_with(Behaviour {
        fail_first: 3,
        ..Behaviour::default()
    });
    let (_dir, data) = data_dir();
    let webhook = format!("webhook-url={}/hooks/users", receiver.url);
    let grant = format!("http={}", receiver.url);
    with_notifications(
        &data,
        "notifications",
        QUICK,
        &["--config", &webhook, "--grant", &grant],
    );
    let server = ServerProcess::start(&data, &[]);
    assert_eq!(server.create_user("u1").status, 200);
    let until = Instant::now() + WAIT;
    let parked = loop {
        let failed = server.get("/effects?status=failed").body;
        if let Some(effect) = failed["effects"].as_array().unwrap().first() {
            break effect.clone();
        }
        assert!(Instant::now() < until, "never parked: {:?}", receiver.received());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(parked["attempts"], 3);
    assert!(parked["error"].as_str().unwrap().contains("answered 500"), "{parked}");
    let key = parked["key"].as_str().unwrap().to_owned();
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(|r| r.key.as_deref() == Some(key.as_str())),
        "one key for every attempt"
    );
    assert!(
        events_named(&server, "EffectCompleted").is_empty(),
        "a parked effect is not delivered"
    );

    // Retried once the endpoint works: sent again with the same key.
    let retried = server.post(&format!("/effects/{key}/retry"), &json!({}));
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    receiver.wait_for(WAIT, |r| r.len() == 4);
    wait_outbox_empty(&server, "notifications");
    assert_eq!(receiver.received()[3].key.as_deref(), Some(key.as_str()));
    let unknown = server.post(&format!("/effects/{key}/retry"), &json!({}));
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);

    // Skipped: the plugin gets the failure as the outcome.
    receiver.set(Behaviour {
        fail_first: 100,
        ..Behaviour::default()
    });
    assert_eq!(server.create_user("u2").status, 200);
    let until = Instant::now() + WAIT;
    let key = loop {
        let failed = server.get("/effects?status=failed").body;
        if let Some(effect) = failed["effects"].as_array().unwrap().first() {
            break effect["key"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(50));
    };
    let skipped = server.post(&format!("/effects/{key}/skip?by=ops"), &json!({}));
    assert_eq!(skipped.status, 200, "{:?}", skipped.body);
    let completed = events_named(&server, "EffectCompleted");
    assert_eq!(completed.len(), 2);
    let payload = payload_of(&completed[1]);
    assert_eq!(payload["ok"], false);
    assert!(
        payload["error"].as_str().unwrap().starts_with("skipped by ops"),
        "{payload}"
    );
    assert_eq!(server.get("/effects").body["total"], 0);
}

#[test]
fn killed_with_effects_in_flight_every_effect_arrives_at_least_once_and_only_under_its_key() {
    let receiver = Receiver::start_with(Behaviour {
        delay: Duration::from_millis(150),
        ..Behaviour::default()
    });
    let (_dir, data) = data_dir();
    let webhook = format!("webhook-url={}/hooks/users", receiver.url);
    let grant = format!("http={}", receiver.url);
    let manifest = "[effects]\nconcurrency = 4\nbackoff-ms = 50\n";
    with_notifications(
        &data,
        "notifications",
        manifest,
        &["--config", &webhook, "--grant", &grant],
    );
    let users: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let mut server = ServerProcess::start(&data, &[]);
    for id in &users {
        assert_eq!(server.create_user(id).status, 200);
    }
    // Some arrived, most are still waiting or in flight: kill it, twice.
    for round in 0..2 {
        receiver.wait_for(WAIT, |r| r.len() >= 4 + 8 * round);
        server.kill9();
        server = ServerProcess::start(&data, &[]);
    }
    wait_outbox_empty(&server, "notifications");
    let received = receiver.received();
    let keys: BTreeSet<&str> = received.iter().map(|r| r.key.as_deref().unwrap()).collect();
    assert_eq!(keys.len(), users.len(), "every effect arrived: {received:?}");
    // Duplicates only ever repeat a key with the same body.
    for key in &keys {
        let bodies: BTreeSet<&str> = received
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .map(|r| r.body.as_str())
            .collect();
        assert_eq!(bodies.len(), 1, "{key}");
    }
    let names: BTreeSet<String> = received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
            body["userId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, users.iter().cloned().collect());
    // Each outcome recorded once.
    let completed = events_named(&server, "EffectCompleted");
    let completed_keys: BTreeSet<String> = completed
        .iter()
        .map(|e| payload_of(e)["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(completed.len(), users.len());
    assert_eq!(completed_keys.iter().map(String::as_str).collect::<BTreeSet<_>>(), keys);
    let verify = run(&data.parent().unwrap().join("data"), &["verify"]);
    assert!(!verify.is_empty());
}

#[test]
fn a_hanging_endpoint_holds_up_no_other_plugin() {
    let receiver = Receiver::start();
    let (_dir, data) = data_dir();
    let grant = format!("http={}", receiver.url);
    let hang = format!("webhook-url={}/hang", receiver.url);
    let fast = format!("webhook-url={}/fast", receiver.url);
    with_notifications(
        &data,
        "notifications-slow",
        "name = \"notifications-slow\"\n[effects]\ntimeout-ms = 600000\n",
        &["--config", &hang, "--grant", &grant],
    );
    with_notifications(&data, "notifications", "", &["--config", &fast, "--grant", &grant]);
    let server = ServerProcess::start(&data, &[]);
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    for id in &users {
        assert_eq!(server.create_user(id).status, 200, "commands settle while effects hang");
    }
    // Every fast effect got its answer while every slow one still hangs.
    wait_outbox_empty(&server, "notifications");
    let pending = server.get("/effects?status=pending").body;
    let slow = pending["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["plugin"] == "notifications-slow")
        .count();
    assert_eq!(slow, users.len());
    let fast_received = receiver.received().iter().filter(|r| r.path == "/fast").count();
    assert_eq!(fast_received, users.len());
    assert_eq!(events_named(&server, "EffectCompleted").len(), users.len());
}

/// `payment-deadline` tells the shop of a missed payment through an effect:
/// requested when the timer fires (here by a command-line process on the
/// test clock, which leaves it in the outbox), performed by the server,
/// answered to the order's instance, which then completes. A refresh and a
/// rebuild replay all of it and send nothing.
#[test]
fn a_refresh_and_a_rebuild_replay_the_outcome_and_send_nothing() {
    const T0: u64 = 1_800_000_000_000;
    let clock = |at: u64| vec![("CASCADE_TEST_CLOCK", at.to_string())];
    let receiver = Receiver::start();
    let (_dir, data) = data_dir();
    let at = |when: u64, args: &[&str]| {
        let (status, out, err) = cascade_process_env(&data, args, &clock(when));
        assert_eq!(status, 0, "{args:?}: {out}{err}");
        out
    };
    at(T0, &["plugin", "add", plugins::INVENTORY, plugins::PAYMENT]);
    let notify = format!("notify-url={}/shop/missed", receiver.url);
    let grant = format!("http={}/shop", receiver.url);
    at(
        T0,
        &[
            "plugin",
            "add",
            plugins::PAYMENT_DEADLINE,
            "--config",
            &notify,
            "--grant",
            &grant,
        ],
    );
    at(T0, &["exec", "inventory", "o1", "reserve", r#"{"items":["book"]}"#]);
    at(T0 + 1_800_000, &["clock", "advance", "0"]);
    let effects: Value = serde_json::from_str(&at(T0, &["effects", "--pending", "--json"])).unwrap();
    assert_eq!(effects.as_array().unwrap().len(), 1, "{effects}");
    assert_eq!(effects[0]["name"], "payment-missed");
    assert_eq!(effects[0]["instance"], "o1");
    assert!(
        receiver.received().is_empty(),
        "a command-line process performs no effect"
    );

    let server = ServerProcess::start_with_env(&data, &[], &clock(T0 + 1_800_000));
    receiver.wait_for(WAIT, |r| !r.is_empty());
    wait_outbox_empty(&server, "payment-deadline");
    let until = Instant::now() + WAIT;
    while server.get("/plugins/payment-deadline/instances").body["instances"] != json!([]) {
        assert!(Instant::now() < until, "the instance never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.terminate().code(), Some(0));
    let body: Value = serde_json::from_str(&receiver.received()[0].body).unwrap();
    assert_eq!(body["orderId"], "o1");

    let report: Value = serde_json::from_str(&at(T0, &["pm", "refresh", "payment-deadline", "--json"])).unwrap();
    assert_eq!(report[0]["droppedEffects"], 1, "{report}");
    assert_eq!(report[0]["instances"], 0, "the replayed outcome completed it again");
    at(T0, &["rebuild"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 1, "nothing sent again");
    let effects: Value = serde_json::from_str(&at(T0, &["effects", "--json"])).unwrap();
    assert_eq!(effects, json!([]));
}

/// Python and JavaScript process managers request effects and get their
/// outcomes, as the Rust SDK does.
#[test]
fn python_and_javascript_process_managers_request_effects() {
    const T0: u64 = 1_800_000_000_000;
    for (component, name) in [
        (plugins::FIXTURE_REMINDER_PY, "fixture-reminder-py"),
        (plugins::FIXTURE_REMINDER_JS, "fixture-reminder-js"),
    ] {
        let receiver = Receiver::start();
        let (_dir, data) = data_dir();
        let clock = |at: u64| vec![("CASCADE_TEST_CLOCK", at.to_string())];
        let at = |when: u64, args: &[&str]| {
            let (status, out, err) = cascade_process_env(&data, args, &clock(when));
            assert_eq!(status, 0, "{name} {args:?}: {out}{err}");
        };
        let notify = format!("notify-url={}/remind", receiver.url);
        let grant = format!("http={}", receiver.url);
        at(T0, &["plugin", "add", plugins::USERS, plugins::ACCOUNTS]);
        at(
            T0,
            &["plugin", "add", component, "--config", &notify, "--grant", &grant],
        );
        at(T0, &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
        // The server's clock is past the reminder: it fires, then calls out.
        let server = ServerProcess::start_with_env(&data, &[], &clock(T0 + 5_000));
        let received = receiver.wait_for(WAIT, |r| !r.is_empty());
        let body: Value = serde_json::from_str(&received[0].body).unwrap();
        assert_eq!(body, json!({"user": "u1", "name": "Ada"}), "{name}");
        assert!(
            received[0].key.as_deref().unwrap().starts_with(&format!("{name}-")),
            "{name}"
        );
        let until = Instant::now() + WAIT;
        while server.get(&format!("/plugins/{name}/instances")).body["instances"] != json!([]) {
            assert!(Instant::now() < until, "{name}: the instance never completed");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(receiver.received().len(), 1, "{name}");
    }
}
