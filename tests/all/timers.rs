//! Instances and durable timers, end to end: the example `payment-deadline`
//! (release an order's inventory when its payment misses the deadline) run
//! by real `cascade` processes on the test clock (`CASCADE_TEST_CLOCK`), so
//! nothing sleeps for a timer; a real `cascade serve` killed -9 while timers
//! are pending, firing and refreshing: each fires once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cascade_tests::{ServerProcess, cascade_process_env, plugins};
use serde_json::{Value, json};

/// The test clock's start: 2027-01-15T08:00:00Z.
const T0: u64 = 1_800_000_000_000;
/// `payment-deadline`'s `deadline-ms` (its manifest's default).
const DEADLINE: u64 = 1_800_000;
const PLUGIN: &str = "payment-deadline";

fn clock(at: u64) -> Vec<(&'static str, String)> {
    vec![("CASCADE_TEST_CLOCK", at.to_string())]
}

/// Run `cascade` at test-clock time `at`; its stdout, asserting exit 0.
fn run_at(data: &std::path::Path, at: u64, args: &[&str]) -> String {
    let (status, out, err) = cascade_process_env(data, args, &clock(at));
    assert_eq!(status, 0, "cascade {args:?}: {out}{err}");
    out
}

fn json_at(data: &std::path::Path, at: u64, args: &[&str]) -> Value {
    serde_json::from_str(&run_at(data, at, args)).unwrap()
}

/// `cascade events --json`: one JSON object per line, as an array.
fn events_at(data: &std::path::Path, at: u64) -> Value {
    let out = run_at(data, at, &["events", "--json"]);
    out.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .collect()
}

/// Events by name, counted per stream.
fn counts(events: &Value) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for event in events.as_array().unwrap() {
        let key = (
            event["name"].as_str().unwrap().to_owned(),
            event["streamId"].as_str().unwrap().to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn count(counts: &BTreeMap<(String, String), u64>, name: &str) -> u64 {
    counts.iter().filter(|((n, _), _)| n == name).map(|(_, c)| c).sum()
}

fn reserve_args() -> &'static str {
    r#"{"items":["book"]}"#
}

/// A data directory with `inventory`, `payment` and `payment-deadline`.
fn deadline_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plugins = [plugins::INVENTORY, plugins::PAYMENT, plugins::PAYMENT_DEADLINE];
    run_at(dir.path(), T0, &[&["plugin", "add"][..], &plugins].concat());
    dir
}

/// `inventory.reserve` of `order` through the server, settled.
fn reserve(server: &ServerProcess, order: &str) {
    let answer = server.post(
        "/commands",
        &json!({"stream_type": "inventory", "stream_id": order, "command": "reserve", "args": {"items": ["book"]}}),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

#[test]
fn a_missed_payment_deadline_releases_the_inventory_once_and_a_payment_in_time_cancels_it() {
    let dir = deadline_data();
    let data = dir.path();
    run_at(data, T0, &["exec", "inventory", "o1", "reserve", reserve_args()]);
    run_at(data, T0 + 10, &["exec", "inventory", "o2", "reserve", reserve_args()]);
    run_at(data, T0 + 20, &["exec", "payment", "o2", "succeed", r#"{"amount":10}"#]);
    // A payment for an order with nothing reserved starts no instance.
    run_at(data, T0 + 30, &["exec", "payment", "o3", "succeed", r#"{"amount":10}"#]);

    // One pending timer, due by the reserving event's time, not the wall clock.
    let timers = json_at(data, T0, &["timers", "--json"]);
    assert_eq!(timers["pending"], 1, "{timers}");
    assert_eq!(
        timers["timers"][0],
        json!({"plugin": PLUGIN, "instance": "o1", "name": "payment-deadline", "due": T0 + DEADLINE, "payload": {}})
    );
    let instances = json_at(data, T0, &["pm", "instances", PLUGIN, "--json"]);
    let ids: Vec<&str> = instances["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["o1"], "o2 completed when paid, o3 never started");
    assert_eq!(instances["instances"][0]["timers"], 1);
    let o1 = json_at(data, T0, &["pm", "state", PLUGIN, "--instance", "o1", "--json"]);
    assert_eq!(o1["state"]["due"], T0 + DEADLINE, "the handler saw the event's time");

    // A millisecond early: nothing fires.
    run_at(data, T0 + DEADLINE - 1, &["clock", "advance", "0"]);
    let events = events_at(data, T0);
    assert_eq!(count(&counts(&events), "TimerFired"), 0);

    // Due: it fires, the reservation is released, the instance completes.
    run_at(data, T0 + DEADLINE, &["clock", "advance", "0"]);
    // Much later, again: nothing fires twice.
    run_at(data, T0 + 10 * DEADLINE, &["clock", "advance", "0"]);
    let counted = counts(&events_at(data, T0));
    assert_eq!(counted[&("TimerFired".into(), format!("timers/{PLUGIN}"))], 1);
    assert_eq!(counted[&("InventoryReleased".into(), "o1".into())], 1);
    assert!(
        !counted.contains_key(&("InventoryReleased".into(), "o2".into())),
        "o2 paid in time"
    );
    assert_eq!(json_at(data, T0, &["timers", "--json"])["pending"], 0);
    let instances = json_at(data, T0, &["pm", "instances", PLUGIN, "--json"]);
    assert_eq!(instances["instances"], json!([]));

    // A refresh replays the fired timer as it happened and fires nothing.
    let report = json_at(data, T0 + 20 * DEADLINE, &["pm", "refresh", PLUGIN, "--json"]);
    assert_eq!(
        (report[0]["instances"].clone(), report[0]["timers"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(report[0]["droppedCommands"], 1, "the release, dropped");
    assert_eq!(counts(&events_at(data, T0)), counted);
}

#[test]
fn the_clock_only_moves_on_a_host_started_with_the_test_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out, _) = cascade_process_env(dir.path(), &["plugin", "add", plugins::INVENTORY], &[]);
    assert!(out.contains("inventory"), "{out}");
    let (status, _, err) = cascade_process_env(dir.path(), &["clock", "advance", "1000"], &[]);
    assert_eq!(status, 2);
    assert!(err.contains("CASCADE_TEST_CLOCK"), "{err}");
    let (status, _, err) = cascade_process_env(dir.path(), &["timers"], &[("CASCADE_TEST_CLOCK", "soon".to_owned())]);
    assert_eq!(status, 2);
    assert!(err.contains("CASCADE_TEST_CLOCK must be milliseconds"), "{err}");
}

/// `cascade serve` on the test clock: the route moves the clock and the
/// writer fires what fell due; instances, timers and metrics report it.
#[test]
fn a_server_fires_due_timers_and_reports_instances_timers_and_lateness() {
    let dir = deadline_data();
    let server = ServerProcess::start_with_env(dir.path(), &[], &clock(T0));
    for order in ["o1", "o2", "o3"] {
        reserve(&server, order);
    }
    let page = server.get(&format!("/plugins/{PLUGIN}/instances?limit=2"));
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["instances"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["next"], "o2");
    let rest = server.get(&format!("/plugins/{PLUGIN}/instances?after=o2"));
    assert_eq!(rest.body["instances"][0]["id"], "o3");
    assert_eq!(server.get("/timers").body["pending"], 3);

    let moved = server.post("/clock/advance", &json!({"millis": DEADLINE + 250}));
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    assert_eq!(moved.body["now"], T0 + DEADLINE + 250);

    let timers = server.get("/timers");
    assert_eq!(timers.body["pending"], 0, "{:?}", timers.body);
    let events = server.get("/events?limit=1000").body["events"].clone();
    assert_eq!(count(&counts(&events), "InventoryReleased"), 3);
    let metrics = server.get("/metrics").body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("cascade_timers_fired_total 3"), "{metrics}");
    assert!(metrics.contains("cascade_timers_pending 0"), "{metrics}");
    assert!(
        metrics.contains(&format!("cascade_instances{{plugin=\"{PLUGIN}\"}} 0")),
        "{metrics}"
    );
    // 250 ms late each, in the test clock's time.
    assert!(metrics.contains("cascade_timer_lateness_seconds_sum 0.75"), "{metrics}");
    assert!(
        metrics.contains("cascade_timer_lateness_seconds_bucket{le=\"0.1\"} 0"),
        "{metrics}"
    );
}

/// Wait (bounded) until the server has no pending timer.
fn until_no_timer_is_pending(server: &ServerProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = server.get("/timers").body["pending"].as_u64().unwrap();
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} timer(s) still pending after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every order of `orders` released exactly once, and its timer fired once.
fn released_once(server: &ServerProcess, orders: &[String]) {
    let events = server.get("/events?limit=10000").body["events"].clone();
    let counted = counts(&events);
    for order in orders {
        assert_eq!(
            counted.get(&("InventoryReleased".into(), order.clone())),
            Some(&1),
            "order {order}: {counted:?}"
        );
    }
    assert_eq!(count(&counted, "InventoryReleased"), orders.len() as u64);
    let fired: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "TimerFired")
        .map(|e| e["payload"]["instance"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = fired.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(fired.len(), unique.len(), "a timer fired twice: {fired:?}");
    assert_eq!(fired.len(), orders.len());
}

/// kill -9 between scheduling and firing, while due timers fire (at
/// several points of a start that fires them late), and during a refresh:
/// after the restarts, every timer has fired exactly once and every
/// reservation was released once.
#[test]
fn timers_fire_exactly_once_across_kill_9_while_scheduled_firing_and_refreshing() {
    let dir = deadline_data();
    let orders: Vec<String> = (0..40).map(|i| format!("o{i}")).collect();
    let server = ServerProcess::start_with_env(dir.path(), &[], &clock(T0));
    for order in &orders {
        reserve(&server, order);
    }
    // Scheduled, not due: killed.
    server.kill9();

    // Late: they fire as the host starts; killed at points along the way.
    let late = T0 + DEADLINE + 5;
    for pause in [0, 2, 5, 9, 15, 25, 40] {
        let server = ServerProcess::start_with_env(dir.path(), &[], &clock(late));
        std::thread::sleep(Duration::from_millis(pause));
        server.kill9();
    }
    let server = ServerProcess::start_with_env(dir.path(), &[], &clock(late));
    until_no_timer_is_pending(&server);
    released_once(&server, &orders);

    // A second round of timers, pending while a refresh is killed -9.
    let later: Vec<String> = (40..60).map(|i| format!("o{i}")).collect();
    for order in &later {
        reserve(&server, order);
    }
    assert_eq!(server.get("/timers").body["pending"], 20);
    let url = format!("{}/pm/{PLUGIN}/refresh", server.url);
    let refresh = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let _ = agent.post(&url).header("content-type", "application/json").send("{}");
    });
    std::thread::sleep(Duration::from_millis(3));
    server.kill9();
    let _ = refresh.join();

    // Restarted past their due time: each fires once.
    let server = ServerProcess::start_with_env(dir.path(), &[], &clock(late + DEADLINE));
    until_no_timer_is_pending(&server);
    let all: Vec<String> = orders.iter().chain(&later).cloned().collect();
    released_once(&server, &all);

    // A refresh now ends where the live run is: no instance, no timer, and
    // the log unchanged.
    let before = server.get("/events?limit=10000").body["events"]
        .as_array()
        .unwrap()
        .len();
    let refreshed = server.post(&format!("/pm/{PLUGIN}/refresh"), &json!({}));
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(
        (refreshed.body["instances"].clone(), refreshed.body["timers"].clone()),
        (json!(0), json!(0))
    );
    let after = server.get("/events?limit=10000").body["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "a refresh fires no timer");
    let verify = cascade_tests::cascade_process(dir.path(), &["verify"]);
    assert_eq!(verify.0, 0, "{}{}", verify.1, verify.2);
}

/// A per-instance refresh replays one instance's events only and leaves the
/// others alone; the state and timers it rebuilds equal the live ones.
#[test]
fn refreshing_one_instance_rebuilds_it_and_leaves_the_others() {
    let dir = deadline_data();
    let data = dir.path();
    for (i, order) in ["a", "b", "c"].iter().enumerate() {
        run_at(
            data,
            T0 + i as u64,
            &["exec", "inventory", order, "reserve", reserve_args()],
        );
    }
    let live_b = json_at(data, T0, &["pm", "state", PLUGIN, "--instance", "b", "--json"]);
    let live_timers = json_at(data, T0, &["timers", "--json"]);

    let report = json_at(data, T0 + 99, &["pm", "refresh", PLUGIN, "--instance", "b", "--json"]);

    assert_eq!(report[0]["events"], 1, "only b's reservation: {report}");
    assert_eq!(report[0]["state"], live_b["state"]);
    assert_eq!(
        json_at(data, T0, &["pm", "state", PLUGIN, "--instance", "b", "--json"]),
        live_b
    );
    assert_eq!(json_at(data, T0, &["timers", "--json"]), live_timers);
    let instances = json_at(data, T0, &["pm", "instances", PLUGIN, "--json"]);
    assert_eq!(instances["instances"].as_array().unwrap().len(), 3);
}

/// The timers of a stopped plugin wait until it has handled the events
/// before them: a payment that arrived while it was stopped, before the
/// deadline, still cancels the timer once it is started, so it never fires.
#[test]
fn a_stopped_plugins_timer_waits_for_the_events_before_it_and_a_late_cancel_wins() {
    let dir = deadline_data();
    let data = dir.path();
    run_at(data, T0, &["exec", "inventory", "o1", "reserve", reserve_args()]);
    run_at(data, T0, &["plugin", "stop", PLUGIN, "--by", "ops"]);
    run_at(
        data,
        T0 + DEADLINE - 1,
        &["exec", "payment", "o1", "succeed", r#"{"amount":10}"#],
    );

    // Past the deadline: the timer is due but its plugin has an event before it.
    run_at(data, T0 + DEADLINE + 1, &["clock", "advance", "0"]);
    assert_eq!(
        json_at(data, T0, &["timers", "--json"])["pending"],
        1,
        "held, not fired"
    );
    run_at(data, T0 + DEADLINE + 2, &["plugin", "start", PLUGIN]);
    run_at(data, T0 + 2 * DEADLINE, &["clock", "advance", "0"]);

    let counted = counts(&events_at(data, T0));
    assert_eq!(count(&counted, "TimerFired"), 0, "{counted:?}");
    assert_eq!(count(&counted, "InventoryReleased"), 0, "{counted:?}");
    assert_eq!(json_at(data, T0, &["timers", "--json"])["pending"], 0);
    let instances = json_at(data, T0, &["pm", "instances", PLUGIN, "--json"]);
    assert_eq!(instances["instances"], json!([]), "completed by the payment");
}

/// Python and JavaScript process managers keep instances, read their
/// configuration, schedule timers and complete, as the Rust SDK does.
#[test]
fn python_and_javascript_process_managers_keep_instances_and_timers() {
    for (component, name) in [
        (plugins::FIXTURE_REMINDER_PY, "fixture-reminder-py"),
        (plugins::FIXTURE_REMINDER_JS, "fixture-reminder-js"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        run_at(
            data,
            T0,
            &["plugin", "add", plugins::USERS, plugins::ACCOUNTS, component],
        );
        run_at(data, T0, &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
        let u1 = json_at(data, T0, &["pm", "state", name, "--instance", "u1", "--json"]);
        assert_eq!(u1["state"]["name"], "Ada", "{name}: {u1}");
        assert_eq!(u1["timers"][0]["due"], T0 + 5_000, "{name}: the config's delay-ms");
        assert_eq!(u1["timers"][0]["payload"], json!({"name": "Ada"}), "{name}");

        run_at(data, T0 + 4_999, &["clock", "advance", "0"]);
        assert_eq!(count(&counts(&events_at(data, T0)), "AccountOpened"), 0, "{name}");
        run_at(data, T0 + 5_000, &["clock", "advance", "0"]);
        run_at(data, T0 + 9_000, &["clock", "advance", "0"]);

        let counted = counts(&events_at(data, T0));
        assert_eq!(
            counted.get(&("AccountOpened".into(), "u1".into())),
            Some(&1),
            "{name}: {counted:?}"
        );
        let instances = json_at(data, T0, &["pm", "instances", name, "--json"]);
        assert_eq!(instances["instances"], json!([]), "{name}: completed");
    }
}
