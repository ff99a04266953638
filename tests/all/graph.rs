//! The flow graph: drawn from the registered plugins' recorded exports and
//! dispatch grants, on the command line (`cascade graph`) and over HTTP
//! (`GET /graph`), with the cycles the loop guard would cut.

use cascade_tests::{ServerProcess, cli, plugins};
use serde_json::Value;

fn has_edge(graph: &Value, from: &str, to: &str, kind: &str) -> bool {
    graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["from"] == from && e["to"] == to && e["kind"] == kind)
}

#[test]
fn the_graph_links_commands_events_and_listeners_and_names_each_cycle() {
    let data = tempfile::tempdir().unwrap();
    let add = [
        "plugin",
        "add",
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::WELCOME,
        plugins::GROUP,
        plugins::PROJECT,
        plugins::PROJECT_CASCADE,
        plugins::PROJECTS,
    ];
    let (status, out) = cli(data.path(), &add);
    assert_eq!(status, 0, "{out}");

    let (status, out) = cli(data.path(), &["graph", "--format", "json"]);
    assert_eq!(status, 0, "{out}");
    let graph: Value = serde_json::from_str(&out).unwrap();
    assert!(
        has_edge(&graph, "command:users.create", "aggregate:users", "taken-by"),
        "{out}"
    );
    assert!(
        has_edge(&graph, "aggregate:users", "event:UserCreated", "emits"),
        "{out}"
    );
    assert!(
        has_edge(&graph, "event:UserCreated", "process-manager:welcome", "on"),
        "{out}"
    );
    assert!(
        has_edge(&graph, "process-manager:welcome", "command:accounts.open", "dispatches"),
        "{out}"
    );
    assert!(
        has_edge(&graph, "event:GroupDeleted", "process-manager:project-cascade", "on"),
        "{out}"
    );
    assert!(
        has_edge(&graph, "event:ProjectCreated", "projection:projects", "on"),
        "{out}"
    );
    assert_eq!(graph["cycles"], serde_json::json!([]), "no cycle yet");

    // A process manager that answers `UserUpdated` with `users.update` closes a loop.
    let (status, out) = cli(data.path(), &["plugin", "add", plugins::ECHO_UPDATE]);
    assert_eq!(status, 0, "{out}");
    let (status, dot) = cli(data.path(), &["graph"]);
    assert_eq!(status, 0, "{dot}");
    assert!(
        dot.starts_with("digraph cascade {") && dot.contains("// cycle: echo-update, users"),
        "{dot}"
    );
    assert!(
        dot.contains(r#""process-manager:echo-update" [label="echo-update", shape=component, color=red];"#),
        "{dot}"
    );

    // A server answers the same graph.
    let server = ServerProcess::start(data.path(), &[]);
    let answer = server.get("/graph");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["cycles"][0]["plugins"],
        serde_json::json!(["echo-update", "users"])
    );
    assert!(has_edge(
        &answer.body,
        "process-manager:echo-update",
        "command:users.update",
        "dispatches"
    ));
}
