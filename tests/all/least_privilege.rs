//! Least privilege: a third party's plugin (`fixture-tenant`) sees only what
//! it was granted. Every reach past a grant is refused with a message naming
//! what was denied, and nothing else is affected; a redeploy that widens its
//! grants needs the operator's `--accept-grants`, embedded and through a real
//! `cascade serve`; every grant change is on `cascade:plugins`.

use std::path::Path;

use cascade_tests::{ServerProcess, TestHost, cli, only_handler_failure, plugins};
use serde_json::Value;

/// A host with users, accounts, groups and projects (both collections
/// filled), and the tenant, granted `accounts.open` and `groups` only.
fn tenant_host() -> TestHost {
    let mut host = TestHost::with(&[
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::GROUP,
        plugins::PROJECT,
        plugins::GROUPS,
        plugins::PROJECTS,
        plugins::FIXTURE_TENANT,
    ]);
    assert!(host.exec("group", "g1", "create", r#"{"name":"G"}"#).is_ok());
    assert!(
        host.exec("project", "p1", "create", r#"{"name":"Secret","groupId":"g1"}"#)
            .is_ok()
    );
    host
}

fn user(host: &mut TestHost, id: &str, name: &str) -> cascade::Settled {
    host.exec("users", id, "create", &format!(r#"{{"name":"{name}"}}"#))
}

#[test]
fn every_reach_past_a_grant_is_refused_naming_it_and_nothing_else_is_affected() {
    let mut host = tenant_host();
    let projects_before = host
        .runtime
        .pipeline()
        .read_models()
        .list("projects", None, 100)
        .unwrap();

    let read = user(&mut host, "u1", "read");
    let failure = only_handler_failure(&read);
    assert_eq!(failure.plugin, "fixture-tenant");
    assert!(
        failure
            .message
            .contains("`fixture-tenant` may not read collection `projects` (granted: `groups`)")
            && failure.message.contains("--grant read=projects"),
        "{failure}"
    );

    let dispatch = user(&mut host, "u2", "dispatch");
    let failure = only_handler_failure(&dispatch);
    assert!(
        failure.message.contains("may not dispatch `accounts.close`"),
        "{failure}"
    );

    // Ignoring the refusal does not make it succeed.
    let swallowed = user(&mut host, "u3", "swallow");
    let failure = only_handler_failure(&swallowed);
    assert!(
        failure.message.contains("may not dispatch `accounts.close`"),
        "{failure}"
    );

    // Guessing positions yields nothing but its own event's envelope.
    let envelopes = user(&mut host, "u4", "envelopes");
    assert!(envelopes.is_ok(), "{:?}", envelopes.failures);

    // Within its grants it works.
    let granted = user(&mut host, "u5", "ada");
    assert!(granted.is_ok(), "{:?}", granted.failures);

    let names = host.log_names();
    assert_eq!(names.iter().filter(|n| *n == "AccountOpened").count(), 1, "{names:?}");
    assert!(!names.iter().any(|n| n == "AccountClosed"), "{names:?}");
    assert_eq!(
        host.runtime
            .pipeline()
            .read_models()
            .list("projects", None, 100)
            .unwrap(),
        projects_before
    );
}

/// A copy of the tenant with `manifest`, to deploy as a new version.
fn tenant_build(dir: &Path, manifest: &str) -> String {
    let copy = dir.join("fixture-tenant.wasm");
    std::fs::copy(plugins::FIXTURE_TENANT, &copy).unwrap();
    std::fs::write(copy.with_extension("toml"), manifest).unwrap();
    copy.to_str().unwrap().to_owned()
}

/// The `GrantsChanged` events on `cascade:plugins`, as JSON payloads.
fn grant_changes(data: &Path) -> Vec<Value> {
    let (status, out) = cli(data, &["events", "--stream", "cascade:plugins", "--json"]);
    assert_eq!(status, 0, "{out}");
    out.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|event| {
            assert_eq!(event["name"], "GrantsChanged", "{event}");
            event["payload"].clone()
        })
        .collect()
}

/// The plugin `name` in a list as `plugin list --json` and `GET /plugins` give it.
fn plugin_named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

const GRANTED: &str = "[capabilities]\ndispatch = [\"accounts.open\"]\nread = [\"groups\"]\n";
const WIDER: &str = "[capabilities]\ndispatch = [\"accounts.open\"]\nread = [\"groups\", \"projects\"]\n";

#[test]
fn a_redeploy_that_widens_grants_needs_consent_and_every_change_is_recorded() {
    let data = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let (status, out) = cli(data.path(), &["plugin", "add", plugins::USERS, plugins::ACCOUNTS]);
    assert_eq!(status, 0, "{out}");
    let first = tenant_build(builds.path(), GRANTED);
    let (status, out) = cli(data.path(), &["plugin", "add", &first, "--by", "ops"]);
    assert_eq!(status, 0, "{out}");
    // `plugin add` says everything it will receive and may do.
    assert!(
        out.contains("handles on-user-created; may dispatch accounts.open, read groups; limits "),
        "{out}"
    );

    let wider = tenant_build(builds.path(), WIDER);
    let (status, out) = cli(data.path(), &["plugin", "add", &wider, "--by", "vendor"]);
    assert_ne!(status, 0, "{out}");
    assert!(
        out.contains("`fixture-tenant` would get more than its active version: read projects")
            && out.contains("--accept-grants"),
        "{out}"
    );
    let (_, versions) = cli(data.path(), &["plugin", "versions", "fixture-tenant"]);
    assert_eq!(versions.lines().count(), 1, "nothing deployed: {versions}");

    let (status, out) = cli(
        data.path(),
        &["plugin", "add", &wider, "--accept-grants", "--by", "alice"],
    );
    assert_eq!(status, 0, "{out}");
    // Narrowing back needs no consent.
    let narrower = tenant_build(builds.path(), GRANTED);
    let (status, out) = cli(data.path(), &["plugin", "add", &narrower, "--by", "bob"]);
    assert_eq!(status, 0, "{out}");
    // Nor does the same again, which records nothing.
    let (status, out) = cli(data.path(), &["plugin", "add", &narrower, "--by", "bob"]);
    assert_eq!(status, 0, "{out}");

    let changes = grant_changes(data.path());
    let tenant: Vec<(&str, &str, &Value, &Value)> = changes
        .iter()
        .filter(|c| c["plugin"] == "fixture-tenant")
        .map(|c| {
            (
                c["change"].as_str().unwrap(),
                c["by"].as_str().unwrap(),
                &c["widened"],
                &c["narrowed"],
            )
        })
        .collect();
    // The first deploy's grants are its first version's; each change after
    // it is an event.
    assert_eq!(tenant.len(), 2, "{changes:?}");
    assert_eq!((tenant[0].0, tenant[0].1), ("widened", "alice"));
    assert_eq!(tenant[0].2, &serde_json::json!(["read projects"]));
    assert_eq!((tenant[1].0, tenant[1].1), ("narrowed", "bob"));
    assert_eq!(tenant[1].3, &serde_json::json!(["read projects"]));
    let (_, versions) = cli(data.path(), &["plugin", "versions", "fixture-tenant", "--json"]);
    let versions: Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(versions[0]["deployedBy"], "ops");
    assert_eq!(
        versions[0]["manifest"]["capabilities"]["read"],
        serde_json::json!(["groups"])
    );
    // Removed and added again, it is compared with its last version.
    let (status, out) = cli(data.path(), &["plugin", "remove", "fixture-tenant"]);
    assert_eq!(status, 0, "{out}");
    let wider = tenant_build(builds.path(), WIDER);
    let (status, out) = cli(data.path(), &["plugin", "add", &wider]);
    assert_ne!(status, 0, "{out}");
    assert!(
        out.contains("would get more than its active version: read projects"),
        "{out}"
    );
    let narrower = tenant_build(builds.path(), GRANTED);
    let (status, out) = cli(data.path(), &["plugin", "add", &narrower]);
    assert_eq!(status, 0, "{out}");
    // `plugin list --json` reports the reach.
    let (_, list) = cli(data.path(), &["plugin", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    let tenant = plugin_named(&list, "fixture-tenant");
    assert_eq!(tenant["reach"]["read"], serde_json::json!(["groups"]));
    assert_eq!(tenant["reach"]["handles"], serde_json::json!(["on-user-created"]));
    assert_eq!(tenant["reach"]["dispatch"], serde_json::json!(["accounts.open"]));
}

#[test]
fn through_a_server_a_widening_deploy_is_refused_without_consent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let first = tenant_build(dir.path(), GRANTED);
    let (status, out) = cli(&data, &["plugin", "add", plugins::USERS, plugins::ACCOUNTS, &first]);
    assert_eq!(status, 0, "{out}");
    let server = ServerProcess::start(&data, &[]);
    let wider = tenant_build(dir.path(), WIDER);

    let (status, out, err) = cascade_tests::cascade_process(&data, &["plugin", "add", &wider]);
    assert_ne!(status, 0, "{out}");
    assert!(
        err.contains("409") && err.contains("would get more than its active version: read projects"),
        "{err}"
    );
    let (status, out, err) = cascade_tests::cascade_process(&data, &["plugin", "add", &wider, "--accept-grants"]);
    assert_eq!(status, 0, "{out}{err}");

    let plugins = server.get("/plugins").body;
    let tenant = plugin_named(&plugins, "fixture-tenant");
    assert_eq!(tenant["reach"]["read"], serde_json::json!(["groups", "projects"]));
    let log = server.get("/events?stream=cascade:plugins").body;
    let changes: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["payload"])
        .filter(|p| p["plugin"] == "fixture-tenant")
        .map(|p| p["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["widened"]);
}

/// A copy of `order-fulfillment` whose manifest says `max-instances = max`.
fn order_fulfillment_with_quota(dir: &Path, max: u64) -> std::path::PathBuf {
    let copy = dir.join("order-fulfillment.wasm");
    std::fs::copy(plugins::ORDER_FULFILLMENT, &copy).unwrap();
    let manifest = format!("[capabilities]\ndispatch = [\"shipping.shipOrder\"]\n[limits]\nmax-instances = {max}\n");
    std::fs::write(copy.with_extension("toml"), manifest).unwrap();
    copy
}

#[test]
fn a_process_manager_that_starts_instances_without_end_fills_its_quota_not_the_disk() {
    let builds = tempfile::tempdir().unwrap();
    let mut host = TestHost::with(&[plugins::PAYMENT, plugins::INVENTORY, plugins::SHIPPING]);
    host.runtime
        .add_plugin(&order_fulfillment_with_quota(builds.path(), 2))
        .unwrap();
    for order in ["o1", "o2"] {
        assert!(host.exec("payment", order, "succeed", r#"{"amount":10}"#).is_ok());
    }

    let third = host.exec("payment", "o3", "succeed", r#"{"amount":10}"#);

    // Both phases of the third order are refused, neither handler called.
    assert_eq!(third.failures.len(), 2, "{:?}", third.failures);
    for failure in &third.failures {
        let message = failure.to_string();
        assert!(
            message.contains("`order-fulfillment` has 2 live instances, its quota")
                && message.contains("`max-instances`"),
            "{message}"
        );
    }
    let parked = host.runtime.pipeline_ref().parked().unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(host.runtime.instances("order-fulfillment", None, 10).unwrap().len(), 2);
    // An existing instance goes on: o1 ships, completes, and frees a place.
    assert!(host.exec("inventory", "o1", "reserve", r#"{"items":["book"]}"#).is_ok());
    assert!(host.log_names().iter().any(|n| n == "OrderShipped"));
    assert_eq!(host.runtime.instances("order-fulfillment", None, 10).unwrap().len(), 1);

    // Raised by the operator, the parked order starts on retry.
    host.runtime
        .add_plugin(&order_fulfillment_with_quota(builds.path(), 10))
        .unwrap();
    for (id, _) in parked {
        assert_eq!(host.runtime.pipeline().retry_parked(id).unwrap(), None, "retried");
    }
    let ids: Vec<String> = host
        .runtime
        .instances("order-fulfillment", None, 10)
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["o2", "o3"]);
}

/// A copy of the plugin at `wasm`, named `name`, with `manifest`.
fn copy_with_manifest(dir: &Path, wasm: &str, name: &str, manifest: &str) -> String {
    let copy = dir.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &copy).unwrap();
    std::fs::write(copy.with_extension("toml"), manifest).unwrap();
    copy.to_str().unwrap().to_owned()
}

/// `cascade exec`; returns its status and output.
fn exec(data: &Path, stream_type: &str, id: &str, command: &str, args: &str) -> (u8, String) {
    cli(data, &["exec", stream_type, id, command, args])
}

#[test]
fn plugins_that_write_without_end_fill_their_quotas_of_timers_effects_and_documents_not_the_disk() {
    let data = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let data = data.path();
    let deadline = copy_with_manifest(
        builds.path(),
        plugins::PAYMENT_DEADLINE,
        "payment-deadline",
        "[capabilities]\ndispatch = [\"inventory.release\"]\n[limits]\nmax-timers = 2\n",
    );
    let notifications = copy_with_manifest(
        builds.path(),
        plugins::NOTIFICATIONS,
        "notifications",
        "[capabilities]\nhttp = [\"http://127.0.0.1:9/\"]\n[config]\nwebhook-url = \"http://127.0.0.1:9/hook\"\n\
         [limits]\nmax-effects = 2\n",
    );
    let projects = copy_with_manifest(
        builds.path(),
        plugins::PROJECTS,
        "projects",
        "[limits]\nmax-read-model-mib = 1\n",
    );
    let add = [
        "plugin",
        "add",
        plugins::USERS,
        plugins::PAYMENT,
        plugins::INVENTORY,
        plugins::GROUP,
        plugins::PROJECT,
        &deadline,
        &notifications,
        &projects,
    ];
    let (status, out) = cli(data, &add);
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("max-timers 2") && out.contains("max-read-model-mib 1"),
        "{out}"
    );

    // Timers: each reserved order waits for its payment on a timer.
    for order in ["o1", "o2"] {
        let (status, out) = exec(data, "inventory", order, "reserve", r#"{"items":["book"]}"#);
        assert_eq!(status, 0, "{out}");
    }
    let (_, out) = exec(data, "inventory", "o3", "reserve", r#"{"items":["book"]}"#);
    assert!(
        out.contains("`payment-deadline` has 2 pending timers, its quota") && out.contains("raise `max-timers`"),
        "{out}"
    );
    // Effects: a command-line process leaves them in the outbox.
    for user in ["u1", "u2"] {
        let (status, out) = exec(data, "users", user, "create", r#"{"name":"Ada"}"#);
        assert_eq!(status, 0, "{out}");
    }
    let (_, out) = exec(data, "users", "u3", "create", r#"{"name":"Ada"}"#);
    assert!(
        out.contains("`notifications` has 2 effects in the outbox, its quota") && out.contains("raise `max-effects`"),
        "{out}"
    );
    // Documents: three projects of 300 KiB fit in 1 MiB, a fourth does not.
    let (status, out) = exec(data, "group", "g1", "create", r#"{"name":"G"}"#);
    assert_eq!(status, 0, "{out}");
    let big = |n: usize| format!(r#"{{"name":"{}","groupId":"g1"}}"#, n.to_string().repeat(300 << 10));
    for n in 1..=3 {
        let (status, out) = exec(data, "project", &format!("p{n}"), "create", &big(n));
        assert_eq!(status, 0, "{out}");
    }
    let (_, out) = exec(data, "project", "p4", "create", &big(4));
    assert!(
        out.contains("`projects` would own 1.17 MiB of documents with `p4` in `projects`, past its quota of 1 MiB")
            && out.contains("raise `max-read-model-mib`"),
        "{out}"
    );
    // A rename is no growth: it is written.
    let (status, out) = exec(
        data,
        "project",
        "p1",
        "update",
        &big(5).replace(r#","groupId":"g1""#, ""),
    );
    assert_eq!(status, 0, "{out}");

    // Each refused call parked its event; nothing past a quota was stored,
    // and `plugin list` shows each plugin's use against its quota.
    let (_, parked) = cli(data, &["parked", "--json"]);
    let parked: Vec<Value> = serde_json::from_str(&parked).unwrap();
    let plugins_parked: Vec<&str> = parked.iter().map(|p| p["plugin"].as_str().unwrap()).collect();
    assert_eq!(
        plugins_parked,
        ["payment-deadline", "notifications", "projects"],
        "{parked:?}"
    );
    let (_, list) = cli(data, &["plugin", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(plugin_named(&list, "payment-deadline")["timers"], 2);
    assert_eq!(plugin_named(&list, "notifications")["effects"], 2);
    let bytes = plugin_named(&list, "projects")["readModelBytes"].as_u64().unwrap();
    assert!((3 * (300 << 10)..1 << 20).contains(&bytes), "{bytes}");
    let (_, text) = cli(data, &["plugin", "list"]);
    assert!(
        text.contains("2 of 2 timer(s)") && text.contains("2 of 2 effect(s)"),
        "{text}"
    );
    assert!(text.contains(" of 1 MiB of documents"), "{text}");
    let (_, docs) = cli(data, &["read", "projects", "--json"]);
    let ids: Vec<String> = docs
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["p1", "p2", "p3"]);

    // Raised by the operator (a widening: consent), the parked work goes through.
    let raised = copy_with_manifest(
        builds.path(),
        plugins::PAYMENT_DEADLINE,
        "payment-deadline",
        "[capabilities]\ndispatch = [\"inventory.release\"]\n[limits]\nmax-timers = 3\n",
    );
    let (status, out) = cli(data, &["plugin", "add", &raised]);
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("max-timers"), "{out}");
    let (status, out) = cli(data, &["plugin", "add", &raised, "--accept-grants"]);
    assert_eq!(status, 0, "{out}");
    let (status, out) = cli(data, &["parked", "retry", &parked[0]["id"].to_string()]);
    assert_eq!(status, 0, "{out}");
    let (_, list) = cli(data, &["plugin", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(plugin_named(&list, "payment-deadline")["timers"], 3);
}

#[test]
fn a_projection_that_writes_another_projections_collection_fails_whole_even_if_it_ignores_the_refusal() {
    let mut host = tenant_host();
    host.runtime.add_plugin(Path::new(plugins::FIXTURE_POACHER)).unwrap();

    let settled = host.exec("project", "p2", "create", r#"{"name":"Next","groupId":"g1"}"#);

    let failure = only_handler_failure(&settled);
    assert_eq!(failure.plugin, "fixture-poacher");
    assert!(
        failure
            .message
            .contains("`fixture-poacher` cannot write collection `projects`: it belongs to projection `projects`"),
        "{failure}"
    );
    let read_models = host.runtime.pipeline().read_models();
    let p2 = read_models.get("projects", "p2").unwrap().unwrap();
    assert!(p2.contains("Next"), "the owner's write stands: {p2}");
    // The failed call is atomic: its own write is undone too.
    assert_eq!(read_models.get("sightings", "p2").unwrap(), None);
    assert_eq!(host.runtime.pipeline_ref().parked().unwrap().len(), 1);
}
