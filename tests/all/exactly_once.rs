//! Exactly once for a stateful process manager's state: whatever fails
//! (an error or a trap, in either phase, under every error policy), however
//! often the host restarts or is killed, the live state equals a model of
//! the calls that succeeded, one failure parks one entry, and `pm refresh`
//! computes the live state from the log.
//!
//! The fixture `flaky` counts users in `on-user-created` and records their
//! names in `after-user-created`, and fails where the user's name says
//! (`on-fail`, `on-trap`, `after-fail`, `after-trap`); its `fixed` build
//! never fails.

use std::collections::BTreeSet;
use std::path::Path;

use cascade::{Command, Options};
use cascade_tests::{ServerProcess, TestHost, cascade_process, plugins};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const FLAKY: &str = "flaky";

/// A copy of `component` named `flaky`, with a manifest for `policy`.
fn flaky_plugin(dir: &Path, component: &str, policy: Policy) -> String {
    let path = dir.join("flaky.wasm");
    std::fs::copy(component, &path).unwrap();
    let (attempts, policy) = match policy {
        Policy::Park => (1, "park"),
        Policy::RetryThenPark => (3, "park"),
        Policy::Stop => (1, "stop"),
    };
    std::fs::write(
        path.with_extension("toml"),
        format!("[on-error]\nattempts = {attempts}\npolicy = \"{policy}\"\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// The three ways a plugin takes a failure: parked at once, parked after
/// retries on a timer, or stopped at the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Park,
    RetryThenPark,
    Stop,
}

/// How a user's handlers behave: the name's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    OnFail,
    OnTrap,
    AfterFail,
    AfterTrap,
}

impl Fault {
    fn suffix(self) -> &'static str {
        match self {
            Fault::None => "ok",
            Fault::OnFail => "on-fail",
            Fault::OnTrap => "on-trap",
            Fault::AfterFail => "after-fail",
            Fault::AfterTrap => "after-trap",
        }
    }

    fn fails(self, phase: Phase) -> bool {
        match phase {
            Phase::On => matches!(self, Fault::OnFail | Fault::OnTrap),
            Phase::After => matches!(self, Fault::AfterFail | Fault::AfterTrap),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    On,
    After,
}

impl Phase {
    fn export(self) -> &'static str {
        match self {
            Phase::On => "on-user-created",
            Phase::After => "after-user-created",
        }
    }
}

/// What an operator or the world does next.
#[derive(Clone, Debug)]
enum Step {
    /// `users.create` for a new user whose handlers behave so.
    Create(Fault),
    /// The host goes away and opens the data directory again.
    Reopen,
    /// Deploy the fixed build, then retry every parked entry (or skip
    /// every other one) and start the plugin if it stopped.
    Fix { skip_some: bool },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let fault = prop_oneof![
        3 => Just(Fault::None),
        1 => Just(Fault::OnFail),
        1 => Just(Fault::OnTrap),
        1 => Just(Fault::AfterFail),
        1 => Just(Fault::AfterTrap),
    ];
    let step = prop_oneof![
        8 => fault.prop_map(Step::Create),
        2 => Just(Step::Reopen),
        1 => any::<bool>().prop_map(|skip_some| Step::Fix { skip_some }),
    ];
    proptest::collection::vec(step, 1..14)
}

/// The model: which calls took effect, which are parked, where a stopped
/// plugin stands.
#[derive(Default)]
struct Model {
    fixed: bool,
    created: u64,
    after_seen: Vec<String>,
    /// (handler, position, name) of each parked call.
    parked: BTreeSet<(&'static str, u64, String)>,
    /// Stopped by its policy: `backlog` waits, the first event from its
    /// `after-` handler if `after_pending` (the `on-` one ran).
    stopped: bool,
    backlog: Vec<(u64, String, Fault)>,
    after_pending: bool,
}

impl Model {
    /// The plugin handles event `position` (or it waits, if stopped).
    fn handle(&mut self, policy: Policy, position: u64, name: &str, fault: Fault) {
        if self.stopped {
            self.backlog.push((position, name.to_owned(), fault));
            return;
        }
        self.run(policy, position, name, fault, Phase::On);
    }

    fn run(&mut self, policy: Policy, position: u64, name: &str, fault: Fault, from: Phase) {
        for phase in [Phase::On, Phase::After].into_iter().filter(|&p| p >= from) {
            if fault.fails(phase) && !self.fixed {
                if policy == Policy::Stop {
                    self.stopped = true;
                    self.backlog.insert(0, (position, name.to_owned(), fault));
                    self.after_pending = phase == Phase::After;
                    return;
                }
                self.parked.insert((phase.export(), position, name.to_owned()));
                continue;
            }
            self.apply(phase, name);
        }
    }

    fn apply(&mut self, phase: Phase, name: &str) {
        match phase {
            Phase::On => self.created += 1,
            Phase::After => self.after_seen.push(name.to_owned()),
        }
    }

    /// `plugin start`: the backlog, from the `after-` handler if the `on-`
    /// one had run.
    fn start(&mut self, policy: Policy) {
        if !std::mem::take(&mut self.stopped) {
            return;
        }
        let backlog = std::mem::take(&mut self.backlog);
        let mut from = if std::mem::take(&mut self.after_pending) {
            Phase::After
        } else {
            Phase::On
        };
        for (i, (position, name, fault)) in backlog.iter().enumerate() {
            self.run(policy, *position, name, *fault, from);
            from = Phase::On;
            if self.stopped {
                // Stopped again: the rest waits behind the event it stopped at.
                self.backlog.extend(backlog[i + 1..].iter().cloned());
                return;
            }
        }
    }

    /// The state as compared: names as a sorted multiset, since a retried
    /// call lands after events that came later.
    fn state(&self) -> Value {
        let mut seen = self.after_seen.clone();
        seen.sort();
        json!({ "created": self.created, "afterSeen": seen })
    }
}

/// A stored state, its names sorted like [`Model::state`].
fn normalized(mut state: Value) -> Value {
    if let Some(seen) = state["afterSeen"].as_array_mut() {
        seen.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    state
}

fn live_state(host: &mut TestHost) -> Value {
    match host
        .runtime
        .pipeline()
        .instance_state(FLAKY, cascade::SINGLETON)
        .unwrap()
        .and_then(|i| i.state)
    {
        Some(blob) => normalized(serde_json::from_slice(&blob).unwrap()),
        None => json!({ "created": 0, "afterSeen": [] }),
    }
}

fn parked(host: &mut TestHost) -> BTreeSet<(String, u64)> {
    let parked = host.runtime.pipeline().parked().unwrap();
    let set: BTreeSet<(String, u64)> = parked.iter().map(|(_, p)| (p.handler.clone(), p.position)).collect();
    assert_eq!(set.len(), parked.len(), "one failure parks one entry: {parked:?}");
    set
}

fn run_case(policy: Policy, steps: &[Step]) -> Result<(), TestCaseError> {
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, policy);
    let mut host = TestHost::with(&[plugins::USERS, &flaky]);
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Create(fault) => {
                let name = format!("u{i}-{}", fault.suffix());
                let settled = host
                    .runtime
                    .pipeline()
                    .execute(Command::new(
                        "users",
                        &name,
                        "create",
                        &json!({ "name": name }).to_string(),
                    ))
                    .unwrap();
                let position = settled.events[0].position;
                model.handle(policy, position, &name, *fault);
            }
            Step::Reopen => host = host.reopen(Options::default()),
            Step::Fix { skip_some } => {
                let fixed = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY_FIXED, policy);
                host.runtime.add_plugin(Path::new(&fixed)).unwrap();
                model.fixed = true;
                let entries = host.runtime.pipeline().parked().unwrap();
                for (n, (id, entry)) in entries.into_iter().enumerate() {
                    let name = model
                        .parked
                        .iter()
                        .find(|(h, p, _)| *h == entry.handler && *p == entry.position)
                        .map(|(_, _, name)| name.clone())
                        .expect("every parked entry is in the model");
                    model
                        .parked
                        .retain(|(h, p, _)| !(*h == entry.handler && *p == entry.position));
                    if *skip_some && n % 2 == 0 {
                        host.runtime.pipeline().skip_parked(id, "test").unwrap();
                    } else {
                        let again = host.runtime.pipeline().retry_parked(id).unwrap();
                        prop_assert_eq!(again, None, "the fixed build succeeds");
                        let phase = if entry.handler == Phase::On.export() {
                            Phase::On
                        } else {
                            Phase::After
                        };
                        model.apply(phase, &name);
                    }
                }
                host.runtime.pipeline().start_listener(FLAKY).unwrap();
                model.start(policy);
            }
        }
        prop_assert_eq!(live_state(&mut host), model.state(), "after step {} ({:?})", i, step);
        let expected: BTreeSet<(String, u64)> = model.parked.iter().map(|(h, p, _)| ((*h).to_owned(), *p)).collect();
        prop_assert_eq!(parked(&mut host), expected, "parked after step {} ({:?})", i, step);
    }
    // A refresh computes the live state from the log (a stopped plugin's
    // refresh would replay events it has not handled yet).
    if !model.stopped {
        let live = live_state(&mut host);
        host.runtime.pipeline().refresh(FLAKY, None, &mut |_, _| {}).unwrap();
        prop_assert_eq!(live_state(&mut host), live);
    }
    Ok(())
}

/// The property, for each policy: any sequence of failing and succeeding
/// users, restarts, fixes, retries and skips keeps the live state equal to
/// the model and to a refresh, with one parked entry per failure.
#[test]
fn live_state_equals_the_model_and_the_refresh_at_every_step_under_every_policy() {
    for policy in [Policy::Park, Policy::RetryThenPark, Policy::Stop] {
        let mut runner = TestRunner::new(Config {
            cases: 12,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&steps(), |steps| run_case(policy, &steps))
            .unwrap_or_else(|e| panic!("{policy:?}: {e}"));
    }
}

/// The issue's own scenario, each command its own `cascade` process: a
/// failing after-effect parks once, later commands neither park it again
/// nor count anything twice, and retrying it with the fixed build applies
/// it once.
#[test]
fn a_failing_after_effect_parks_once_across_processes_and_a_retry_applies_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, Policy::RetryThenPark);
    let run = |args: &[&str]| cascade_process(dir.path(), args);
    let (status, out, err) = run(&["plugin", "add", plugins::USERS, &flaky]);
    assert_eq!(status, 0, "{out}{err}");
    for name in ["u1", "boom-after-trap", "boom2", "u2"] {
        let args = json!({ "name": name }).to_string();
        let (status, out, err) = run(&["exec", "users", name, "create", &args]);
        let expected = if name.contains("trap") { 1 } else { 0 };
        assert_eq!(status, expected, "{name}: {out}{err}");
    }
    let state = || {
        let (status, out, err) = run(&["pm", "state", FLAKY]);
        assert_eq!(status, 0, "{out}{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    assert_eq!(state(), json!({ "created": 4, "afterSeen": ["u1", "boom2", "u2"] }));
    let (_, out, _) = run(&["parked", "--json"]);
    let parked: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parked.as_array().map(Vec::len), Some(1), "{parked}");

    let fixed = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY_FIXED, Policy::RetryThenPark);
    let (status, out, err) = run(&["plugin", "add", &fixed]);
    assert_eq!(status, 0, "{out}{err}");
    let (status, out, err) = run(&["parked", "retry", "1"]);
    assert_eq!(status, 0, "{out}{err}");
    assert_eq!(
        state(),
        json!({ "created": 4, "afterSeen": ["u1", "boom2", "u2", "boom-after-trap"] })
    );
    let (_, out, _) = run(&["parked", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));
    // The refresh replays the retried call at its event's place.
    let (status, out, err) = run(&["pm", "refresh", FLAKY, "--json"]);
    assert_eq!(status, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[0]["instances"], 1, "{report}");
    assert_eq!(
        state(),
        json!({ "created": 4, "afterSeen": ["u1", "boom-after-trap", "boom2", "u2"] })
    );
}

/// The same through `cascade serve`, killed (-9) after the failure parked:
/// the restarted server neither calls the `on-` handler again nor parks
/// the event a second time, and a skip leaves the state as if the call
/// never happened.
#[test]
fn a_server_killed_after_a_failure_parks_nothing_twice_and_a_skip_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, Policy::RetryThenPark);
    let (status, out, err) = cascade_process(dir.path(), &["plugin", "add", plugins::USERS, &flaky]);
    assert_eq!(status, 0, "{out}{err}");
    let create = |server: &ServerProcess, name: &str| {
        let answer = server.post(
            "/commands",
            &json!({ "stream_type": "users", "stream_id": name, "command": "create", "args": { "name": name } }),
        );
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body
    };
    let server = ServerProcess::start(dir.path(), &[]);
    create(&server, "u1");
    let failed = create(&server, "boom-after-fail");
    assert_eq!(failed["failures"].as_array().map(Vec::len), Some(1), "{failed}");
    server.kill9();

    let server = ServerProcess::start(dir.path(), &[]);
    create(&server, "u2");
    let state = server.get(&format!("/pm/{FLAKY}/state"));
    assert_eq!(state.body["state"], json!({ "created": 3, "afterSeen": ["u1", "u2"] }));
    let parked = server.get("/parked");
    let entries = parked.body.as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{:?}", parked.body);
    let id = entries[0]["id"].as_u64().unwrap();
    let skipped = server.post(&format!("/parked/{id}/skip?by=ops"), &json!({}));
    assert_eq!(skipped.status, 200, "{:?}", skipped.body);
    let refreshed = server.post(&format!("/pm/{FLAKY}/refresh"), &json!({}));
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let state = server.get(&format!("/pm/{FLAKY}/state"));
    assert_eq!(state.body["state"], json!({ "created": 3, "afterSeen": ["u1", "u2"] }));
}

/// A host that goes away while a failed `after-` handler waits for its
/// retry (its `on-` handler's effect already committed) resumes with the
/// `after-` handler alone.
#[test]
fn a_restart_while_an_after_handler_waits_to_retry_does_not_call_the_on_handler_again() {
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, Policy::RetryThenPark);
    let mut host = TestHost::with(&[plugins::USERS, &flaky]);
    let name = "u-after-fail";
    let id = host
        .runtime
        .pipeline()
        .submit(
            Command::new("users", name, "create", &json!({ "name": name }).to_string()),
            None,
        )
        .unwrap();
    // One batch: the command, its event, `on-` done, `after-` failed once
    // and waiting on a timer.
    host.runtime.pipeline().step().unwrap();
    assert_eq!(live_state(&mut host), json!({ "created": 1, "afterSeen": [] }));
    assert!(
        host.runtime.pipeline().settled(&id).unwrap().is_none(),
        "waits for the retry"
    );

    let mut host = host.reopen(Options::default());
    let settled = host.runtime.pipeline().run_until_settled(&id).unwrap();
    assert_eq!(settled.failures.len(), 1, "{:?}", settled.failures);
    assert_eq!(live_state(&mut host), json!({ "created": 1, "afterSeen": [] }));
    let parked = parked(&mut host);
    assert_eq!(
        parked.into_iter().map(|(h, _)| h).collect::<Vec<_>>(),
        ["after-user-created"]
    );
    let report = host.runtime.pipeline().refresh(FLAKY, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.parked, 1);
    assert_eq!(live_state(&mut host), json!({ "created": 1, "afterSeen": [] }));
}

/// `POST /commands` that stops waiting answers 202 with the cascade's id;
/// the cascade goes on (here: an `after-` handler retried on a timer, at
/// least 30 ms) and settles once, parked once.
#[test]
fn a_command_that_outlasts_its_timeout_is_pending_and_then_settles_once() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, Policy::RetryThenPark);
    let (status, out, err) = cascade_process(dir.path(), &["plugin", "add", plugins::USERS, &flaky]);
    assert_eq!(status, 0, "{out}{err}");
    let server = ServerProcess::start(dir.path(), &[]);
    let name = "slow-after-fail";
    let answer = server.post(
        "/commands?timeout=0.005",
        &json!({ "stream_type": "users", "stream_id": name, "command": "create", "args": { "name": name } }),
    );
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "pending");
    let id = answer.body["correlationId"].as_str().unwrap().to_owned();
    let settled = server.get(&format!("/cascades/{id}?timeout=30"));
    assert_eq!(settled.status, 200, "{:?}", settled.body);
    assert_eq!(settled.body["failures"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.get("/parked").body.as_array().map(Vec::len), Some(1));
    let state = server.get(&format!("/pm/{FLAKY}/state"));
    assert_eq!(state.body["state"], json!({ "created": 1, "afterSeen": [] }));
}

/// The same property through a real `cascade serve`, killed (-9) and
/// restarted where the embedded one reopens; fixes, retries, skips and
/// starts go through the command line and HTTP. Fewer cases: each step is a
/// process or a request.
#[test]
fn through_cascade_serve_killed_at_random_the_state_equals_the_model_at_every_step() {
    for policy in [Policy::Park, Policy::RetryThenPark, Policy::Stop] {
        let mut runner = TestRunner::new(Config {
            cases: 8,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&steps(), |steps| serve_case(policy, &steps))
            .unwrap_or_else(|e| panic!("{policy:?}: {e}"));
    }
}

fn serve_case(policy: Policy, steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    let flaky = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY, policy);
    let (status, out, err) = cascade_process(dir.path(), &["plugin", "add", plugins::USERS, &flaky]);
    prop_assert_eq!(status, 0, "{}{}", out, err);
    let mut server = ServerProcess::start(dir.path(), &[]);
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Create(fault) => {
                let name = format!("u{i}-{}", fault.suffix());
                let answer = server.post(
                    "/commands",
                    &json!({ "stream_type": "users", "stream_id": name, "command": "create", "args": { "name": name } }),
                );
                prop_assert_eq!(answer.status, 200, "{:?}", answer.body);
                let position = answer.body["events"][0]["position"].as_u64().unwrap();
                model.handle(policy, position, &name, *fault);
            }
            Step::Reopen => {
                server.kill9();
                server = ServerProcess::start(dir.path(), &[]);
            }
            Step::Fix { skip_some } => {
                let fixed = flaky_plugin(plugin_dir.path(), plugins::FIXTURE_FLAKY_FIXED, policy);
                let (status, out, err) = cascade_process(dir.path(), &["plugin", "add", &fixed]);
                prop_assert_eq!(status, 0, "{}{}", out, err);
                model.fixed = true;
                let entries = server.get("/parked").body.as_array().cloned().unwrap_or_default();
                for (n, entry) in entries.iter().enumerate() {
                    let (handler, position) = (entry["handler"].as_str().unwrap(), entry["position"].as_u64().unwrap());
                    let name = model
                        .parked
                        .iter()
                        .find(|(h, p, _)| *h == handler && *p == position)
                        .map(|(_, _, name)| name.clone())
                        .expect("every parked entry is in the model");
                    model.parked.retain(|(h, p, _)| !(*h == handler && *p == position));
                    let id = entry["id"].as_u64().unwrap();
                    if *skip_some && n % 2 == 0 {
                        prop_assert_eq!(
                            server.post(&format!("/parked/{id}/skip?by=test"), &json!({})).status,
                            200
                        );
                    } else {
                        let retried = server.post(&format!("/parked/{id}/retry"), &json!({}));
                        prop_assert_eq!(&retried.body["status"], "succeeded", "{:?}", retried.body);
                        let phase = if handler == Phase::On.export() {
                            Phase::On
                        } else {
                            Phase::After
                        };
                        model.apply(phase, &name);
                    }
                }
                let (status, out, err) = cascade_process(dir.path(), &["plugin", "start", FLAKY]);
                prop_assert_eq!(status, 0, "{}{}", out, err);
                model.start(policy);
            }
        }
        let state = server.get(&format!("/pm/{FLAKY}/state")).body["state"].clone();
        let live = if state.is_null() {
            json!({ "created": 0, "afterSeen": [] })
        } else {
            normalized(state)
        };
        prop_assert_eq!(live, model.state(), "after step {} ({:?})", i, step);
        let parked = server.get("/parked").body.as_array().map(Vec::len).unwrap_or(0);
        prop_assert_eq!(parked, model.parked.len(), "parked after step {} ({:?})", i, step);
    }
    if !model.stopped {
        let live = server.get(&format!("/pm/{FLAKY}/state")).body["state"].clone();
        let refreshed = server.post(&format!("/pm/{FLAKY}/refresh"), &json!({}));
        prop_assert_eq!(refreshed.status, 200);
        let after = server.get(&format!("/pm/{FLAKY}/state")).body["state"].clone();
        // A retried call applied live after later events replays at its
        // event's place: the same set of names.
        prop_assert_eq!(normalized(after), normalized(live));
    }
    Ok(())
}
