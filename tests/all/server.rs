//! `cascade serve`: a real server process on an ephemeral 127.0.0.1 port over
//! a real redb file, driven over HTTP and through the `cascade` binary.
//! Traffic goes to 127.0.0.1 only, with bounded counts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

use cascade::Backend;
use cascade_tests::{ServerProcess, cascade_process, plugins};
use serde_json::{Value, json};

/// A data directory with users, accounts, welcome and user-counter.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = cascade_process(
        dir.path(),
        &[
            "plugin",
            "add",
            plugins::USERS,
            plugins::ACCOUNTS,
            plugins::WELCOME,
            plugins::USER_COUNTER,
        ],
    );
    assert_eq!(status, 0, "{out}{err}");
    dir
}

fn log(server: &ServerProcess) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = server.get(&format!("/events?from={from}&limit=10000"));
        assert_eq!(page.status, 200, "{:?}", page.body);
        events.extend(page.body["events"].as_array().unwrap().iter().cloned());
        match page.body["next"].as_u64() {
            Some(next) => from = next,
            None => return events,
        }
    }
}

fn positions_are_gapless(events: &[Value]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["position"].as_u64(), Some(i as u64 + 1), "gap at {i}");
    }
}

fn counter(server: &ServerProcess) -> u64 {
    let state = server.get("/pm/user-counter/state");
    assert_eq!(state.status, 200, "{:?}", state.body);
    state.body["state"]["usersCreated"].as_u64().unwrap()
}

#[test]
fn concurrent_clients_all_settle_with_exact_counts() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let (clients, each) = (32, 500);
    std::thread::scope(|scope| {
        for client in 0..clients {
            let server = &server;
            scope.spawn(move || {
                for i in 0..each {
                    let id = format!("u{client}-{i}");
                    let answer = server.create_user(&id);
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                    assert_eq!(answer.body["status"], "settled");
                    assert_eq!(answer.body["failures"], json!([]));
                    let names: Vec<&str> = answer.body["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["name"].as_str().unwrap())
                        .collect();
                    assert_eq!(names, ["UserCreated", "AccountOpened"], "{id}");
                }
            });
        }
    });
    let events = log(&server);
    assert_eq!(events.len(), 2 * clients * each);
    positions_are_gapless(&events);
    let streams: BTreeSet<String> = events
        .iter()
        .filter(|e| e["name"] == "UserCreated")
        .map(|e| e["streamId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streams.len(), clients * each);
    assert_eq!(counter(&server), (clients * each) as u64);
    assert_eq!(server.terminate().code(), Some(0));
}

/// While 4 clients create 5,000 users, `user-counter` is replaced by the
/// build that counts by two, carrying its state. The deploy answers the
/// position of the swap: the old build saw every UserCreated up to it, the
/// new one every UserCreated after it. The carried count is exact only if
/// no event was handled twice or skipped across the swap.
#[test]
fn a_hot_swap_under_load_handles_no_event_twice_and_skips_none() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let (clients, each) = (4, 1250);
    let by_two = std::fs::read(plugins::USER_COUNTER_BY_TWO).unwrap();
    let swapped_at = std::thread::scope(|scope| {
        for client in 0..clients {
            let server = &server;
            scope.spawn(move || {
                for i in 0..each {
                    let answer = server.create_user(&format!("u{client}-{i}"));
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                }
            });
        }
        // Deploy once the load is well under way.
        while server.get("/events?limit=1&from=1000").body["events"] == json!([]) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let deployed = server.send(
            "PUT",
            "/plugins/user-counter?state=carry",
            "application/wasm",
            by_two.clone(),
        );
        assert_eq!(deployed.status, 200, "{:?}", deployed.body);
        assert_eq!(deployed.body["version"], 2);
        deployed.body["position"].as_u64().unwrap()
    });
    let events = log(&server);
    positions_are_gapless(&events);
    let created: Vec<u64> = events
        .iter()
        .filter(|e| e["name"] == "UserCreated")
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    let total = (clients * each) as u64;
    assert_eq!(created.len() as u64, total);
    let before = created.iter().filter(|&&p| p <= swapped_at).count() as u64;
    assert!(
        before > 0 && before < total,
        "the swap happened under load ({before} of {total})"
    );
    assert_eq!(counter(&server), before + 2 * (total - before));
    // Its checkpoint is the head of the log.
    let plugins = server.get("/plugins").body;
    let counter_plugin = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "user-counter")
        .unwrap();
    assert_eq!(counter_plugin["checkpoint"].as_u64(), Some(events.len() as u64));
    assert_eq!(counter_plugin["lag"], 0);
    // The server has its instance loaded: the memory it holds is reported.
    assert!(counter_plugin["memoryBytes"].as_u64().unwrap() > 0, "{counter_plugin}");
    // A refresh replays all history with the new build's logic.
    let refreshed = server.post("/pm/user-counter/refresh", &json!({}));
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["instances"], 1);
    assert_eq!(counter(&server), 2 * total);
    // Versions are kept; a rollback goes back to the first build.
    let versions = server.get("/plugins/user-counter/versions").body;
    assert_eq!(versions["active"], 2);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let rolled = server.post("/plugins/user-counter/rollback", &json!({}));
    assert_eq!(rolled.status, 200, "{:?}", rolled.body);
    assert_eq!(rolled.body["active"], 1);
    server.create_user("after-rollback");
    assert_eq!(counter(&server), 2 * total + 1);
}

#[test]
fn a_deploy_that_does_not_validate_leaves_the_old_version_running() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let refused = server.send("PUT", "/plugins/user-counter", "application/wasm", b"not wasm".to_vec());
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "invalid_plugin");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("is not a WebAssembly component"), "{message}");
    // A handler for an event no aggregate declares is refused too.
    let unknown = std::fs::read(plugins::FIXTURE_UNKNOWN_EVENT).unwrap();
    let refused = server.send("PUT", "/plugins/user-counter", "application/wasm", unknown);
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(server.create_user("u1").status, 200);
    assert_eq!(counter(&server), 1);
    assert_eq!(server.get("/plugins/user-counter/versions").body["active"], 1);
}

/// Commands are sent with idempotency keys; the server is killed with
/// SIGKILL under load and restarted; then every command is sent again with
/// its key. Each command that got a 200 before the kill answers with the
/// same cascade and runs nothing again; every user exists exactly once.
#[test]
fn after_kill_9_every_answered_command_is_stored_once_and_resends_run_nothing_twice() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let (clients, each) = (4, 400);
    let command = |id: &str| {
        json!({
            "stream_type": "users", "stream_id": id, "command": "create",
            "args": {"name": id}, "idempotency_key": format!("key-{id}")
        })
    };
    let answered: BTreeMap<String, String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let server = &server;
                scope.spawn(move || {
                    let mut answered = BTreeMap::new();
                    for i in 0..each {
                        let id = format!("u{client}-{i}");
                        // After the kill, requests fail to connect: stop.
                        let body = command(&id).to_string().into_bytes();
                        let Ok(answer) = server.try_send("POST", "/commands", "application/json", body) else {
                            break;
                        };
                        if answer.status == 200 {
                            let correlation = answer.body["correlationId"].as_str().unwrap().to_owned();
                            answered.insert(id, correlation);
                        }
                    }
                    answered
                })
            })
            .collect();
        while server.get("/events?limit=1&from=300").body["events"] == json!([]) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::process::Command::new("kill")
            .args(["-KILL", &pid_of(&server.data).to_string()])
            .status()
            .unwrap();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    drop(server);
    assert!(!answered.is_empty());
    let server = ServerProcess::start(dir.path(), &[]);
    for client in 0..clients {
        for i in 0..each {
            let id = format!("u{client}-{i}");
            let answer = server.post("/commands", &command(&id));
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            if let Some(first) = answered.get(&id) {
                assert_eq!(answer.body["correlationId"].as_str(), Some(first.as_str()), "{id}");
            }
            // A run-again would be refused as "user already exists".
            assert_eq!(answer.body["failures"], json!([]), "{id}");
        }
    }
    let events = log(&server);
    positions_are_gapless(&events);
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e["name"] == "UserCreated") {
        *created.entry(e["streamId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(created.len(), clients * each);
    assert!(created.values().all(|&n| n == 1));
    assert_eq!(counter(&server), (clients * each) as u64);
}

fn pid_of(data: &Path) -> u64 {
    let info: Value = serde_json::from_slice(&std::fs::read(data.join("server.json")).unwrap()).unwrap();
    info["pid"].as_u64().unwrap()
}

/// Read server-sent events from `url` until `last` is seen or the stream
/// ends; returns the ids seen.
fn read_live(url: &str, last_event_id: Option<u64>, until: u64) -> Vec<u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(url);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last.to_string());
    }
    let response = request.call().unwrap();
    assert_eq!(response.status(), 200);
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let mut ids = Vec::new();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("id: ") {
            let id: u64 = id.parse().unwrap();
            ids.push(id);
            if id >= until {
                break;
            }
        }
    }
    ids
}

#[test]
fn a_live_consumer_across_a_restart_sees_every_position_exactly_once() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    for i in 0..50 {
        assert_eq!(server.create_user(&format!("a{i}")).status, 200);
    }
    // 100 events now; read the first 60 live, then the server restarts.
    let first = read_live(&format!("{}/events/live?from=1", server.url), None, 60);
    assert_eq!(server.terminate().code(), Some(0));
    let server = ServerProcess::start(dir.path(), &[]);
    let url = format!("{}/events/live", server.url);
    let consumer = std::thread::spawn(move || read_live(&url, Some(60), 200));
    for i in 0..50 {
        assert_eq!(server.create_user(&format!("b{i}")).status, 200);
    }
    let second = consumer.join().unwrap();
    let all: Vec<u64> = first.into_iter().chain(second).collect();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
}

#[test]
fn the_watched_folder_swaps_in_new_builds_and_refuses_broken_ones() {
    let dir = data_dir();
    let watched = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--watch", watched.path().to_str().unwrap()]);
    let wait_for_version = |want: u64| {
        for _ in 0..400 {
            if server.get("/plugins/user-counter/versions").body["active"] == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("user-counter never reached version {want}");
    };
    assert_eq!(server.create_user("u1").status, 200);
    std::fs::copy(plugins::USER_COUNTER_BY_TWO, watched.path().join("user-counter.wasm")).unwrap();
    wait_for_version(2);
    assert_eq!(server.create_user("u2").status, 200);
    assert_eq!(counter(&server), 1 + 2);
    // A broken build is refused; the old version keeps running.
    std::fs::write(watched.path().join("user-counter.wasm"), b"broken").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.as_str().unwrap().contains("cascade_swaps_refused_total 1"),
        "{metrics}"
    );
    assert_eq!(server.get("/plugins/user-counter/versions").body["active"], 2);
    assert_eq!(server.create_user("u3").status, 200);
    assert_eq!(counter(&server), 1 + 2 + 2);
    // A new plugin copied in is deployed under its file name.
    std::fs::copy(plugins::NOTIFICATIONS, watched.path().join("notifications.wasm")).unwrap();
    for _ in 0..400 {
        let plugins = server.get("/plugins").body;
        if plugins.as_array().unwrap().iter().any(|p| p["name"] == "notifications") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("notifications was never deployed");
}

#[test]
fn with_a_token_every_route_but_healthz_answers_401_without_it() {
    let dir = data_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = ServerProcess::start(dir.path(), &["--token-file", token_file.to_str().unwrap()]);
    let wasm = std::fs::read(plugins::USER_COUNTER).unwrap();
    let mutating = [
        server.post(
            "/commands",
            &json!({"stream_type": "users", "stream_id": "u1", "command": "create"}),
        ),
        server.send("PUT", "/plugins/user-counter", "application/wasm", wasm.clone()),
        server.post("/plugins/user-counter/rollback", &json!({})),
        server.post("/pm/user-counter/refresh", &json!({})),
        server.post("/parked/1/retry", &json!({})),
        server.post("/parked/1/skip", &json!({})),
        server.post("/cli", &json!({})),
    ];
    for answer in &mutating {
        assert_eq!(answer.status, 401, "{:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], "unauthorized");
    }
    assert_eq!(server.get("/events").status, 401);
    assert_eq!(server.get("/healthz").status, 200);
    let mut server = server;
    server.set_token(Some("wrong"));
    assert_eq!(server.get("/events").status, 401);
    server.set_token(Some("s3cret"));
    assert_eq!(server.create_user("u1").status, 200);
    // The CLI finds the token through the server's record.
    let (status, out, err) = cascade_process(dir.path(), &["events"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("UserCreated"), "{out}");
}

/// The body is announced, not sent: the server refuses it from its length,
/// as a client using `Expect: 100-continue` would see.
#[test]
fn request_bodies_over_the_limit_get_a_json_413() {
    use std::io::{Read, Write};
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &["--max-body-mib", "1"]);
    let address = server.url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "PUT /plugins/big HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("}}") {
        match socket.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(r#""code":"payload_too_large""#), "{response}");
}

#[test]
fn bad_requests_get_a_stable_code_and_a_message() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let cases = [
        (
            server.send("POST", "/commands", "application/json", b"{".to_vec()),
            400,
            "invalid_json",
        ),
        (
            server.post(
                "/commands",
                &json!({"stream_type": "nope", "stream_id": "x", "command": "create"}),
            ),
            404,
            "unknown_aggregate",
        ),
        (
            server.post(
                "/commands",
                &json!({"stream_type": "users", "stream_id": "x", "command": "fly"}),
            ),
            404,
            "unknown_command",
        ),
        (server.get("/cascades/c999"), 404, "unknown_cascade"),
        (server.get("/pm/nobody/state"), 404, "unknown_plugin"),
        (server.get("/read/nothing"), 404, "unknown_collection"),
        (server.get("/no/such/route"), 404, "not_found"),
    ];
    for (answer, status, code) in cases {
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], code, "{:?}", answer.body);
        assert!(!answer.body["error"]["message"].as_str().unwrap().is_empty());
    }
}

/// A command accepted with `wait=false` before SIGTERM is finished by the
/// restarted server; the first server exits 0; the cascade can be asked
/// for by its correlation id later.
#[test]
fn sigterm_exits_cleanly_and_a_restart_resumes_queued_work() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let accepted = server.post(
        "/commands?wait=false",
        &json!({"stream_type": "users", "stream_id": "u1", "command": "create", "args": {"name": "A"}}),
    );
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let correlation = accepted.body["correlationId"].as_str().unwrap().to_owned();
    assert_eq!(server.terminate().code(), Some(0));
    assert!(!dir.path().join("server.json").exists());
    let server = ServerProcess::start(dir.path(), &[]);
    let answer = server.get(&format!("/cascades/{correlation}?timeout=10"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(counter(&server), 1);
}

#[test]
fn the_cli_talks_to_a_running_server_with_the_same_output_and_exit_codes() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    let (status, out, err) = cascade_process(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.starts_with("cascade c1 settled: 2 event(s), 2 command(s), 0 failure(s)"),
        "{out}"
    );
    let (status, out, _) = cascade_process(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("user already exists"), "{out}");
    let (status, _, err) = cascade_process(dir.path(), &["exec", "nope", "u1", "create"]);
    assert_eq!(status, 2);
    assert!(
        err.starts_with("cascade: ") && err.contains("no aggregate `nope`"),
        "{err}"
    );
    // The server sees what the CLI did, and the other way round.
    assert_eq!(server.get("/events").body["events"].as_array().unwrap().len(), 2);
    let (status, out, _) = cascade_process(dir.path(), &["pm", "state", "user-counter"]);
    assert_eq!(status, 0);
    assert!(out.contains("\"usersCreated\": 1"), "{out}");
    // `plugin add` through the server registers a plugin live.
    let (status, out, err) = cascade_process(dir.path(), &["plugin", "add", plugins::USER_COUNTER_BY_TWO]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("added process-manager `user-counter-by-two`"), "{out}");
    let (status, out, _) = cascade_process(dir.path(), &["plugin", "versions", "user-counter"]);
    assert_eq!(status, 0);
    assert!(out.starts_with("* v1"), "{out}");
}

#[test]
fn reading_commands_share_the_data_file_and_never_write_to_it() {
    let dir = data_dir();
    let (status, _, err) = cascade_process(dir.path(), &["exec", "users", "u1", "create", r#"{"name":"Ada"}"#]);
    assert_eq!(status, 0, "{err}");
    let file = dir.path().join(cascade::DATA_FILE);
    let before = std::fs::read(&file).unwrap();
    // An embedded reader holds the file; reading commands still run at once.
    let reading = cascade::Options {
        read_only: true,
        load: cascade::Load::None,
        ..cascade::Options::default()
    };
    let held = cascade::Runtime::open(dir.path(), reading).unwrap();
    for args in [
        &["events"][..],
        &["plugin", "list"],
        &["pm", "state", "user-counter"],
        &["verify"],
        &["plugin", "versions", "users"],
    ] {
        let mut with_timeout = vec!["--lock-timeout", "0"];
        with_timeout.extend_from_slice(args);
        let (status, out, err) = cascade_process(dir.path(), &with_timeout);
        assert_eq!(status, 0, "{args:?}: {err}");
        assert!(!out.is_empty(), "{args:?}");
    }
    // A writer waits for the readers, then says so.
    let (status, _, err) = cascade_process(
        dir.path(),
        &[
            "--lock-timeout",
            "0",
            "exec",
            "users",
            "u2",
            "create",
            r#"{"name":"Bo"}"#,
        ],
    );
    assert_eq!(status, 3, "{err}");
    assert!(err.contains("is busy"), "{err}");
    let refused = held
        .pipeline_ref()
        .store()
        .write(|tx| tx.set_checkpoint("user-counter", 0))
        .unwrap_err();
    assert!(matches!(refused, cascade::StoreError::ReadOnly), "{refused}");
    drop(held);
    assert!(
        std::fs::read(&file).unwrap() == before,
        "reading changed no byte of the file"
    );
    // A read-only open loads every plugin too: registering one that is
    // already known writes nothing.
    let reader = cascade::Runtime::open(
        dir.path(),
        cascade::Options {
            read_only: true,
            ..cascade::Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        reader.pipeline_ref().listener_names().len(),
        2,
        "welcome and user-counter loaded"
    );
    drop(reader);
    let (status, _, err) = cascade_process(dir.path(), &["exec", "users", "u2", "create", r#"{"name":"Bo"}"#]);
    assert_eq!(status, 0, "{err}");
}

#[test]
fn a_second_embedded_process_waits_for_the_lock_then_says_what_holds_it() {
    let dir = data_dir();
    let held = cascade::Runtime::open(dir.path(), cascade::Options::default()).unwrap();
    let started = std::time::Instant::now();
    let (status, _, err) = cascade_process(dir.path(), &["--lock-timeout", "0.5", "events"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    assert_eq!(status, 3, "{err}");
    assert!(err.starts_with("cascade: ") && err.contains("is busy"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(held);
    let (status, _, err) = cascade_process(dir.path(), &["events"]);
    assert_eq!(status, 0, "{err}");
}

/// After a `kill -9` of the writer an operator's first move is to look:
/// every reading command works on the file that needs redb's repair; the
/// first repairs it (saying so once, on one line) and nothing committed is
/// lost.
#[test]
fn after_kill_9_every_reading_command_works_and_the_first_repairs_the_file() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path(), &[]);
    // Killed mid-cascade: a client is still sending commands.
    let answered = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let mut answered = 0;
            for i in 0..10_000 {
                let body = json!({
                    "stream_type": "users", "stream_id": format!("u{i}"), "command": "create", "args": {"name": "x"}
                });
                match server.try_send("POST", "/commands", "application/json", body.to_string().into_bytes()) {
                    Ok(answer) if answer.status == 200 => answered += 1,
                    _ => break,
                }
            }
            answered
        });
        while server.get("/events?limit=1&from=40").body["events"] == json!([]) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::process::Command::new("kill")
            .args(["-KILL", &pid_of(&server.data).to_string()])
            .status()
            .unwrap();
        client.join().unwrap()
    });
    drop(server);
    let reads: [&[&str]; 7] = [
        &["events", "--json"],
        &["plugin", "list"],
        &["plugin", "versions", "welcome"],
        &["pm", "state", "user-counter"],
        &["parked"],
        &["queue"],
        &["verify"],
    ];
    for (i, args) in reads.iter().enumerate() {
        let (status, out, err) = cascade_process(dir.path(), args);
        assert_eq!(status, 0, "{args:?}: {out}{err}");
        assert!(!err.contains("repair aborted"), "{args:?}: {err}");
        let repaired = err.lines().filter(|l| l.contains("repaired")).count();
        assert_eq!(repaired, usize::from(i == 0), "{args:?}: {err}");
        if args[0] == "events" {
            // One JSON event per line: every answered user and its account.
            assert!(out.lines().count() >= 2 * answered, "{answered} answered: {out}");
        }
    }
}
