//! The console in a real headless Chromium (scripts/browser.sh installs it)
//! against a real `cascade serve`: the page loads with no error, lists the
//! plugins, shows a command in the live tail, draws the flow graph with its
//! cycle, tells a cascade's story, and retries parked work after asking.
//! Screenshots of each view go to `target/tmp/console/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_tests::browser::Browser;
use cascade_tests::{ServerProcess, cli, plugins};
use serde_json::json;

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console")
}

/// `flaky` parks at its first failure (one attempt).
fn flaky_build(dir: &Path, component: &str) -> String {
    let copy = dir.join("flaky.wasm");
    std::fs::copy(component, &copy).unwrap();
    std::fs::write(
        copy.with_extension("toml"),
        "[on-error]\nattempts = 1\npolicy = \"park\"\n",
    )
    .unwrap();
    copy.to_str().unwrap().to_owned()
}

/// Wait for `script`; on a timeout, fail with a screenshot to look at.
fn expect(browser: &Browser, what: &str, script: &str) {
    if !browser.wait_for(script, Duration::from_secs(10)) {
        browser.screenshot(&screenshots().join("failed.png"));
        panic!("the console did not show {what}; see target/tmp/console/failed.png");
    }
}

#[test]
fn the_console_shows_the_plugins_the_live_tail_the_flow_graph_a_story_and_retries_parked_work() {
    let data = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let flaky = flaky_build(builds.path(), plugins::FIXTURE_FLAKY);
    let add = [
        "plugin",
        "add",
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::WELCOME,
        plugins::ECHO_UPDATE,
        &flaky,
    ];
    let (status, out) = cli(data.path(), &add);
    assert_eq!(status, 0, "{out}");
    let server = ServerProcess::start(data.path(), &["--trace"]);
    let browser = Browser::start();
    browser.goto(&format!("{}/", server.url));

    // The overview lists every plugin.
    expect(
        &browser,
        "the plugins",
        "return document.querySelectorAll('#overview-table tbody tr').length === 5",
    );
    expect(
        &browser,
        "welcome's row",
        "return !!document.querySelector('#overview-table tr[data-plugin=\"welcome\"]')",
    );

    // A command sent over HTTP appears in the live tail.
    let answer = server.post(
        "/commands",
        &json!({"stream_type": "accounts", "stream_id": "a1", "command": "open", "args": {}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    expect(
        &browser,
        "the command's event in the live tail",
        "return [...document.querySelectorAll('#tail li')].some(li => li.textContent.includes('AccountOpened accounts:a1'))",
    );
    browser.screenshot(&screenshots().join("overview.png"));

    // The flow graph: the example cascade, and the cycle echo-update closes.
    browser.click("nav button[data-view=graph]");
    for id in [
        "command:users.create",
        "aggregate:users",
        "event:UserCreated",
        "process-manager:welcome",
        "command:accounts.open",
    ] {
        expect(
            &browser,
            id,
            &format!("return !!document.querySelector('#graph g.node[data-id=\"{id}\"]')"),
        );
    }
    expect(
        &browser,
        "the cycle",
        "return !!document.querySelector('#graph g.node.cycle[data-id=\"process-manager:echo-update\"]') \
         && document.querySelector('.cycle-note').textContent.includes('echo-update, users')",
    );
    assert!(
        browser.eval("return !document.querySelector('#graph g.node.cycle[data-id=\"process-manager:welcome\"]')")
            == json!(true),
        "welcome is on no cycle"
    );
    browser.screenshot(&screenshots().join("graph.png"));
    // Clicking a node filters the other views.
    browser.click("#graph g.node[data-id=\"process-manager:welcome\"]");
    browser.click("nav button[data-view=overview]");
    expect(
        &browser,
        "the overview filtered to welcome",
        "return document.querySelectorAll('#overview-table tbody tr').length === 1",
    );
    browser.click("#filter button");

    // A user whose name makes `flaky` fail: its event is parked.
    let answer = server.post(
        "/commands",
        &json!({"stream_type": "users", "stream_id": "u1", "command": "create", "args": {"name": "ada on-fail"}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let correlation = answer.body["correlationId"].as_str().unwrap().to_owned();

    // Its story: the command, its event, welcome's command, the failure inline.
    browser.click("nav button[data-view=events]");
    expect(
        &browser,
        "the user's event in the tail",
        "return [...document.querySelectorAll('#tail li')].some(li => li.textContent.includes('UserCreated users:u1'))",
    );
    // The log, filtered by cascade through the API.
    browser.eval(&format!(
        "document.querySelector('#f-correlation').value = '{correlation}'; return null"
    ));
    browser.click("#f-go");
    expect(
        &browser,
        "the cascade's two events in the log",
        "return [...document.querySelectorAll('#log li')].map(li => li.textContent.split(' ')[1]).join() \
         === 'UserCreated,AccountOpened'",
    );
    let first = server.get("/events?name=AccountOpened&limit=1");
    assert_eq!(first.body["events"][0]["streamId"], "a1", "{}", first.body);
    let next = first.body["next"].as_u64().unwrap();
    let second = server.get(&format!("/events?name=AccountOpened&from={next}"));
    assert_eq!(second.body["events"][0]["streamId"], "u1", "{}", second.body);
    assert_eq!(second.body["next"], json!(null));
    browser.screenshot(&screenshots().join("events.png"));
    browser.click(&format!("#tail li a[data-correlation=\"{correlation}\"]"));
    expect(
        &browser,
        "the story",
        "return document.querySelectorAll('#story .event').length === 2 \
         && document.querySelector('#story .failure').textContent.includes('flaky') \
         && [...document.querySelectorAll('#story .call')].some(c => c.textContent.startsWith('welcome on-user-created ok'))",
    );
    browser.screenshot(&screenshots().join("cascade.png"));

    // Fixed and redeployed, the parked event is retried from the page, after asking.
    let fixed = flaky_build(builds.path(), plugins::FIXTURE_FLAKY_FIXED);
    let answer = server.send(
        "PUT",
        "/plugins/flaky",
        "application/wasm",
        std::fs::read(fixed).unwrap(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    browser.click("nav button[data-view=operations]");
    expect(
        &browser,
        "the parked event",
        "return document.querySelectorAll('#parked tbody tr').length === 1",
    );
    browser.screenshot(&screenshots().join("operations.png"));
    browser.click("#parked tbody tr button.retry");
    expect(
        &browser,
        "the question before acting",
        "return document.querySelector('#confirm').classList.contains('open')",
    );
    assert_eq!(
        server.get("/parked").body.as_array().unwrap().len(),
        1,
        "nothing is done before the answer"
    );
    browser.click("#confirm-yes");
    expect(
        &browser,
        "an empty parked list",
        "return document.querySelectorAll('#parked tbody tr').length === 0",
    );
    assert_eq!(server.get("/parked").body, json!([]));

    assert_eq!(
        browser.eval("return window.__errors"),
        json!([]),
        "no error in the page"
    );
}

#[test]
fn with_a_token_the_page_loads_asks_for_it_once_and_then_shows_the_plugins() {
    let data = tempfile::tempdir().unwrap();
    let (status, out) = cli(data.path(), &["plugin", "add", plugins::USERS, plugins::WELCOME]);
    assert_eq!(status, 0, "{out}");
    let token_file = data.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = ServerProcess::start(data.path(), &["--token-file", token_file.to_str().unwrap()]);
    let browser = Browser::start();
    browser.goto(&format!("{}/", server.url));

    expect(
        &browser,
        "the question for the token",
        "return document.querySelector('#token-bar').classList.contains('open')",
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#overview-table tbody tr').length"),
        json!(0)
    );
    browser.eval("document.querySelector('#token-input').value = 's3cret'; return null");
    browser.click("#token-save");
    expect(
        &browser,
        "the plugins",
        "return document.querySelectorAll('#overview-table tbody tr').length === 2",
    );
    expect(
        &browser,
        "the bar closed",
        "return !document.querySelector('#token-bar').classList.contains('open')",
    );
}
