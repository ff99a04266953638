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
