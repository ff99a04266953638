//! Cascade on PostgreSQL (`--store postgres://…`): the real `cascade` binary
//! and real `cascade serve` processes on a database of the test's own on
//! the test server (`CASCADE_TEST_POSTGRES`), dropped afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use cascade_tests::postgres::TestDatabase;
use cascade_tests::{ServerProcess, cascade_bin, cascade_process, plugins};
use serde_json::{Value, json};

/// `cascade --store URL ARGS…` on `data`.
fn on(url: &str, data: &Path, args: &[&str]) -> (i32, String, String) {
    let args: Vec<&str> = ["--store", url].into_iter().chain(args.iter().copied()).collect();
    cascade_process(data, &args)
}

fn add_plugins(url: &str, data: &Path) {
    let (status, out, err) = on(
        url,
        data,
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
}

#[test]
fn the_command_line_keeps_everything_in_the_database_and_state_equals_refresh() {
    let db = TestDatabase::new("cli");
    let data = tempfile::tempdir().unwrap();
    add_plugins(&db.url, data.path());
    for id in ["ada", "bo", "cy"] {
        let (status, out, err) = on(
            &db.url,
            data.path(),
            &["exec", "users", id, "create", r#"{"name":"x"}"#],
        );
        assert_eq!(status, 0, "{out}{err}");
    }
    assert!(
        !data.path().join(cascade::DATA_FILE).exists(),
        "no redb file: the database holds everything"
    );
    // Another data directory, the same database: the same log and state.
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, out, err) = on(&db.url, elsewhere.path(), &["events", "--json"]);
    assert_eq!(status, 0, "{err}");
    let names: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "UserCreated").count(), 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "AccountOpened").count(), 3, "{names:?}");
    let state = |data: &Path| {
        let (status, out, err) = on(&db.url, data, &["pm", "state", "user-counter"]);
        assert_eq!(status, 0, "{err}");
        out
    };
    let live = state(elsewhere.path());
    assert!(
        live.contains("\"usersCreated\": 3") || live.contains("\"usersCreated\":3"),
        "{live}"
    );
    let (status, out, err) = on(&db.url, data.path(), &["pm", "refresh", "user-counter"]);
    assert_eq!(status, 0, "{out}{err}");
    assert_eq!(state(data.path()), live, "the live state equals its refresh");
    let (status, out, err) = on(&db.url, data.path(), &["verify"]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("no problem found"), "{out}");
}

#[test]
fn a_store_that_is_not_postgres_or_does_not_answer_is_one_line_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let (status, _, err) = on("mysql://root:secret@127.0.0.1/x", data.path(), &["events"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("takes a PostgreSQL URL"), "{err}");
    assert!(err.contains("not a `mysql://` URL"), "{err}");
    assert!(!err.contains("secret"), "the password is never printed: {err}");
    let (status, _, err) = on("postgres://ada:secret@127.0.0.1:1/nowhere", data.path(), &["events"]);
    assert_eq!(status, i32::from(cascade_cli::EXIT_STORAGE), "{err}");
    assert!(
        err.contains("store `postgres://ada@127.0.0.1:1/nowhere` is unavailable"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password is never printed: {err}");
}

/// One host writes; a second one started on the same database waits for
/// it and takes over when it is killed: queued work resumes, a command
/// retried with its idempotency key is not run twice, every version is
/// the same.
#[test]
fn a_standby_host_takes_over_when_the_writer_is_killed() {
    let db = TestDatabase::new("failover");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    add_plugins(&db.url, a.path());
    let writer = ServerProcess::start(a.path(), &["--store", &db.url]);
    let create = |server: &ServerProcess, id: &str| {
        server.post(
            "/commands",
            &json!({"stream_type": "users", "stream_id": id, "command": "create",
                    "args": {"name": id}, "idempotency_key": format!("create-{id}")}),
        )
    };
    let first = create(&writer, "u1");
    assert_eq!(first.status, 200, "{:?}", first.body);

    // The standby waits for the database (up to a minute) instead of failing.
    let mut standby = std::process::Command::new(cascade_bin())
        .args([
            "--data",
            b.path().to_str().unwrap(),
            "--store",
            &db.url,
            "--lock-timeout",
            "60",
        ])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let second = create(&writer, "u2");
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert!(
        standby.try_wait().unwrap().is_none() && !b.path().join("server.json").exists(),
        "the standby does not serve while the writer holds the database"
    );

    writer.kill9();
    let started = Instant::now();
    let address = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the standby did not take over in 30 s"
        );
        assert!(standby.try_wait().unwrap().is_none(), "the standby exited");
        let info = std::fs::read(b.path().join("server.json")).ok();
        if let Some(info) = info.and_then(|text| serde_json::from_slice::<Value>(&text).ok()) {
            break info["address"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |body: Value| -> Value {
        let mut answer = agent
            .post(format!("http://{address}/commands"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap()
    };
    let retried = post(json!({"stream_type": "users", "stream_id": "u2", "command": "create",
                              "args": {"name": "u2"}, "idempotency_key": "create-u2"}));
    assert_eq!(
        retried["correlationId"], second.body["correlationId"],
        "a retry after the failover answers with the first cascade: {retried}"
    );
    let third = post(json!({"stream_type": "users", "stream_id": "u3", "command": "create", "args": {"name": "u3"}}));
    assert_eq!(third["events"].as_array().map(Vec::len), Some(2), "{third}");
    standby.kill().unwrap();
    standby.wait().unwrap();

    let (status, out, err) = on(&db.url, b.path(), &["events", "--json"]);
    assert_eq!(status, 0, "{err}");
    let created: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["name"] == "UserCreated")
        .map(|e| e["streamId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created, ["u1", "u2", "u3"], "every command ran exactly once");
    let (status, out, err) = on(&db.url, b.path(), &["verify"]);
    assert_eq!(status, 0, "{out}{err}");
}
