//! The static flow graph of the registered plugins: which command each
//! aggregate takes, which events it emits, which listeners react to each
//! (`on-` and `after-`), and which commands they may dispatch — and where
//! that graph has a cycle, which the loop guard would cut at run time.
//!
//! Drawn from what the registry records (each version's exports and its
//! manifest's dispatch grants), so it needs no plugin loaded.

use std::collections::{BTreeMap, BTreeSet};

use heck::ToKebabCase;
use serde::Serialize;

use crate::records::PluginKind;

/// A plugin as the graph sees it.
#[derive(Clone, Debug)]
pub struct GraphPlugin {
    /// Its name (an aggregate's: its stream type).
    pub name: String,
    /// What it is.
    pub kind: PluginKind,
    /// An aggregate's commands.
    pub commands: Vec<String>,
    /// An aggregate's events.
    pub emits: Vec<String>,
    /// A listener's handler exports (`on-user-created`).
    pub handles: Vec<String>,
    /// A listener's dispatch grants (`accounts.open`, `accounts.*`).
    pub dispatch: Vec<String>,
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// `AGGREGATE.COMMAND`.
    Command,
    /// An aggregate, by stream type.
    Aggregate,
    /// An event, by name.
    Event,
    /// A process manager.
    ProcessManager,
    /// A projection.
    Projection,
}

/// One node: `id` is `KIND:NAME` (`command:users.create`, `event:UserCreated`,
/// `aggregate:users`, `process-manager:welcome`, `projection:projects`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    /// `KIND:NAME`, unique.
    pub id: String,
    /// What it is.
    pub kind: NodeKind,
    /// Its name.
    pub name: String,
}

/// What an edge means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A command to the aggregate that takes it.
    TakenBy,
    /// An aggregate to an event it emits.
    Emits,
    /// An event to a listener's `on-` handler.
    On,
    /// An event to a listener's `after-` handler.
    After,
    /// A listener to a command it may dispatch.
    Dispatches,
}

/// One edge, between node ids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// The node it leaves.
    pub from: String,
    /// The node it reaches.
    pub to: String,
    /// What it means.
    pub kind: EdgeKind,
}

/// A cycle: the nodes of one strongly connected part of the graph, and the
/// plugins among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// The plugins on it (aggregates and listeners), by name.
    pub plugins: Vec<String>,
    /// Every node on it, by id.
    pub nodes: Vec<String>,
}

/// The flow graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowGraph {
    /// Every node, by id.
    pub nodes: Vec<Node>,
    /// Every edge, by its ends.
    pub edges: Vec<Edge>,
    /// Every cycle.
    pub cycles: Vec<Cycle>,
}

fn node_id(kind: NodeKind, name: &str) -> String {
    let kind = match kind {
        NodeKind::Command => "command",
        NodeKind::Aggregate => "aggregate",
        NodeKind::Event => "event",
        NodeKind::ProcessManager => "process-manager",
        NodeKind::Projection => "projection",
    };
    format!("{kind}:{name}")
}

impl FlowGraph {
    /// The graph of `plugins`. A handler export names its event in kebab
    /// case: it is matched against the events the aggregates emit; one no
    /// aggregate declares (a host event such as `TimerFired`) gets a node of
    /// its own name.
    pub fn of(plugins: &[GraphPlugin]) -> FlowGraph {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut edges: BTreeSet<Edge> = BTreeSet::new();
        let mut add = |kind: NodeKind, name: &str| {
            let id = node_id(kind, name);
            nodes.entry(id.clone()).or_insert_with(|| Node {
                id: id.clone(),
                kind,
                name: name.to_owned(),
            });
            id
        };
        let mut events_by_export: BTreeMap<String, String> = BTreeMap::new();
        let mut commands_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in plugins.iter().filter(|p| p.kind == PluginKind::Aggregate) {
            let aggregate = add(NodeKind::Aggregate, &p.name);
            for command in &p.commands {
                let command = add(NodeKind::Command, &format!("{}.{command}", p.name));
                edges.insert(edge(command, aggregate.clone(), EdgeKind::TakenBy));
            }
            for event in &p.emits {
                events_by_export.insert(event.to_kebab_case(), event.clone());
                let event = add(NodeKind::Event, event);
                edges.insert(edge(aggregate.clone(), event, EdgeKind::Emits));
            }
            commands_of.insert(&p.name, p.commands.iter().map(String::as_str).collect());
        }
        for p in plugins {
            let kind = match p.kind {
                PluginKind::ProcessManager => NodeKind::ProcessManager,
                PluginKind::Projection => NodeKind::Projection,
                PluginKind::Aggregate => continue,
            };
            let listener = add(kind, &p.name);
            for export in &p.handles {
                let (phase, event) = match (export.strip_prefix("on-"), export.strip_prefix("after-")) {
                    (Some(event), _) => (EdgeKind::On, event),
                    (_, Some(event)) => (EdgeKind::After, event),
                    _ => continue,
                };
                let name = events_by_export
                    .get(event)
                    .cloned()
                    .unwrap_or_else(|| heck::AsUpperCamelCase(event).to_string());
                let event = add(NodeKind::Event, &name);
                edges.insert(edge(event, listener.clone(), phase));
            }
            for grant in &p.dispatch {
                let Some((aggregate, command)) = grant.split_once('.') else {
                    continue;
                };
                // `A.*` is every command A declares; when none is recorded
                // (an aggregate deployed before they were), the grant itself.
                let commands: Vec<String> = match (command, commands_of.get(aggregate)) {
                    ("*", Some(known)) if !known.is_empty() => {
                        known.iter().map(|c| format!("{aggregate}.{c}")).collect()
                    }
                    _ => vec![grant.clone()],
                };
                for command in commands {
                    let command = add(NodeKind::Command, &command);
                    edges.insert(edge(listener.clone(), command, EdgeKind::Dispatches));
                }
            }
        }
        let edges: Vec<Edge> = edges.into_iter().collect();
        let cycles = cycles(&nodes, &edges);
        FlowGraph {
            nodes: nodes.into_values().collect(),
            edges,
            cycles,
        }
    }

    /// The graph in Graphviz's DOT language, cycles in red.
    pub fn to_dot(&self) -> String {
        let on_cycle: BTreeSet<&str> = self
            .cycles
            .iter()
            .flat_map(|c| c.nodes.iter().map(String::as_str))
            .collect();
        let mut dot = String::from("digraph cascade {\n  rankdir=LR;\n");
        for cycle in &self.cycles {
            dot.push_str(&format!("  // cycle: {}\n", cycle.plugins.join(", ")));
        }
        for node in &self.nodes {
            let shape = match node.kind {
                NodeKind::Command => "cds",
                NodeKind::Aggregate => "box3d",
                NodeKind::Event => "ellipse",
                NodeKind::ProcessManager => "component",
                NodeKind::Projection => "cylinder",
            };
            let color = if on_cycle.contains(node.id.as_str()) {
                ", color=red"
            } else {
                ""
            };
            dot.push_str(&format!(
                "  {:?} [label={:?}, shape={shape}{color}];\n",
                node.id, node.name
            ));
        }
        for e in &self.edges {
            let label = match e.kind {
                EdgeKind::On => " [label=\"on\"]",
                EdgeKind::After => " [label=\"after\"]",
                _ => "",
            };
            dot.push_str(&format!("  {:?} -> {:?}{label};\n", e.from, e.to));
        }
        dot.push_str("}\n");
        dot
    }
}

fn edge(from: String, to: String, kind: EdgeKind) -> Edge {
    Edge { from, to, kind }
}

/// The strongly connected parts of more than one node (or a node with an
/// edge to itself): nodes that reach each other. The graph of a deployment
/// is small (hundreds of nodes), so each node's reach is searched in turn.
fn cycles(nodes: &BTreeMap<String, Node>, edges: &[Edge]) -> Vec<Cycle> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().push(&e.to);
    }
    let reach = |from: &str| {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = next.get(from).cloned().unwrap_or_default();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(next.get(id).into_iter().flatten());
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = nodes.keys().map(|id| (id.as_str(), reach(id))).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut cycles = Vec::new();
    for (id, reached) in &reaches {
        if placed.contains(id) || !reached.contains(id) {
            continue;
        }
        let part: Vec<&str> = reached
            .iter()
            .copied()
            .filter(|other| reaches[other].contains(id))
            .collect();
        placed.extend(part.iter().copied());
        let mut plugins: Vec<String> = part
            .iter()
            .filter(|n| !matches!(nodes[**n].kind, NodeKind::Command | NodeKind::Event))
            .map(|n| nodes[*n].name.clone())
            .collect();
        plugins.sort();
        cycles.push(Cycle {
            plugins,
            nodes: part.into_iter().map(str::to_owned).collect(),
        });
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(name: &str, commands: &[&str], emits: &[&str]) -> GraphPlugin {
        GraphPlugin {
            name: name.into(),
            kind: PluginKind::Aggregate,
            commands: commands.iter().map(|c| c.to_string()).collect(),
            emits: emits.iter().map(|e| e.to_string()).collect(),
            handles: Vec::new(),
            dispatch: Vec::new(),
        }
    }

    fn manager(name: &str, handles: &[&str], dispatch: &[&str]) -> GraphPlugin {
        GraphPlugin {
            name: name.into(),
            kind: PluginKind::ProcessManager,
            commands: Vec::new(),
            emits: Vec::new(),
            handles: handles.iter().map(|h| h.to_string()).collect(),
            dispatch: dispatch.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_chain_has_no_cycle_and_a_loop_through_two_plugins_is_one() {
        let chain = [
            aggregate("users", &["create"], &["UserCreated"]),
            aggregate("accounts", &["open"], &["AccountOpened"]),
            manager("welcome", &["on-user-created"], &["accounts.open"]),
        ];
        let graph = FlowGraph::of(&chain);
        assert!(graph.cycles.is_empty(), "{:?}", graph.cycles);
        assert!(graph.edges.contains(&edge(
            "event:UserCreated".into(),
            "process-manager:welcome".into(),
            EdgeKind::On
        )));
        assert!(graph.edges.contains(&edge(
            "process-manager:welcome".into(),
            "command:accounts.open".into(),
            EdgeKind::Dispatches
        )));

        let mut looped = chain.to_vec();
        looped.push(manager("echo", &["after-account-opened"], &["users.*"]));
        let graph = FlowGraph::of(&looped);
        assert_eq!(graph.cycles.len(), 1, "{:?}", graph.cycles);
        assert_eq!(graph.cycles[0].plugins, ["accounts", "echo", "users", "welcome"]);
        assert!(
            graph
                .to_dot()
                .contains("\"process-manager:echo\" [label=\"echo\", shape=component, color=red]")
        );
    }
}
