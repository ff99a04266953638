//! What a plugin receives and may do, in one view: the [`Reach`] that
//! `plugin add` prints and `plugin list` reports, that a redeploy compares
//! with the active version's (widening needs the operator's consent), and
//! that the audit trail on `cascade:plugins` records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::records::Exports;

/// The host stream (`cascade:plugins`) that records every grant change.
pub const GRANTS_STREAM: &str = "plugins";
/// The event a grant change appends to it.
pub const GRANTS_CHANGED: &str = "GrantsChanged";

/// Everything a plugin receives and may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    /// Its handler exports (`on-user-created`); none for an aggregate, and
    /// `None` when not recorded (deployed before Cascade recorded it).
    pub handles: Option<Vec<String>>,
    /// Commands it may dispatch.
    pub dispatch: Vec<String>,
    /// Collections it may query (`*`: every one).
    pub read: Vec<String>,
    /// Collections it writes; `None` when not recorded.
    pub writes: Option<Vec<String>>,
    /// Origins its effects may call.
    pub http: Vec<String>,
    /// Its limits: per call (`time-budget-ms`, `memory-mib`,
    /// `max-dispatches`), its quotas (`max-instances`, `max-timers`,
    /// `max-effects`, `max-read-model-mib`) and, when set, `cascade-budget`.
    pub limits: BTreeMap<String, u64>,
}

impl Reach {
    /// The reach of a plugin with `manifest` whose component exports `exports`.
    pub fn of(manifest: &Manifest, exports: Option<&Exports>) -> Reach {
        let limits = manifest.limits();
        let mut table: BTreeMap<String, u64> = [
            ("time-budget-ms", limits.time_budget.as_millis() as u64),
            ("memory-mib", (limits.memory_bytes >> 20) as u64),
            ("max-dispatches", limits.max_dispatches as u64),
            ("max-instances", limits.quotas.instances),
            ("max-timers", limits.quotas.timers),
            ("max-effects", limits.quotas.effects),
            ("max-read-model-mib", limits.quotas.read_model_bytes >> 20),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(budget) = manifest.limits.cascade_budget {
            table.insert("cascade-budget".into(), budget as u64);
        }
        Reach {
            handles: exports.map(|e| e.handles.clone()),
            dispatch: manifest.capabilities.dispatch.clone(),
            read: manifest.capabilities.read.clone(),
            writes: exports.map(|e| e.writes.clone()),
            http: manifest.capabilities.http.clone(),
            limits: table,
        }
    }

    /// What `next` allows that `self` does not, one item each
    /// (`dispatch accounts.close`, `memory-mib 64 -> 128`): an item counts
    /// only when no grant of `self` covers it (`read *` covers every read,
    /// `dispatch accounts.*` every command of `accounts`, an origin every
    /// path under it). Exports not recorded on either side are not compared.
    /// Setting or unsetting `cascade-budget` counts both ways: the host's
    /// budget is not known here.
    pub fn widened_to(&self, next: &Reach) -> Vec<String> {
        let mut wider = Vec::new();
        let mut added = |kind: &str, old: &[String], new: &[String], covers: fn(&str, &str) -> bool| {
            for item in new.iter().filter(|n| !old.iter().any(|o| covers(o, n))) {
                wider.push(format!("{kind} {item}"));
            }
        };
        if let (Some(old), Some(new)) = (&self.handles, &next.handles) {
            added("handles", old, new, |o, n| o == n);
        }
        added("dispatch", &self.dispatch, &next.dispatch, covers_dispatch);
        added("read", &self.read, &next.read, |o, n| o == "*" || o == n);
        if let (Some(old), Some(new)) = (&self.writes, &next.writes) {
            added("writes", old, new, |o, n| o == n);
        }
        added("http", &self.http, &next.http, covers_origin);
        let keys: std::collections::BTreeSet<&String> = self.limits.keys().chain(next.limits.keys()).collect();
        for key in keys {
            match (self.limits.get(key), next.limits.get(key)) {
                (Some(old), Some(new)) if old >= new => {}
                (Some(old), Some(new)) => wider.push(format!("{key} {old} -> {new}")),
                (None, Some(new)) => wider.push(format!("{key} host -> {new}")),
                (Some(old), None) => wider.push(format!("{key} {old} -> host")),
                (None, None) => {}
            }
        }
        wider
    }
}

/// Whether dispatch grant `old` allows everything grant `new` does.
fn covers_dispatch(old: &str, new: &str) -> bool {
    match (old.split_once('.'), new.split_once('.')) {
        (Some((a, "*")), Some((b, _))) => a == b,
        _ => old == new,
    }
}

/// Whether origin grant `old` allows every URL grant `new` does.
fn covers_origin(old: &str, new: &str) -> bool {
    match (crate::effect::Origin::parse(old), crate::effect::Origin::parse(new)) {
        (Ok(old), Ok(new)) => old.permits(&new),
        _ => old == new,
    }
}

/// How a redeploy changes a plugin's reach: what the audit trail records.
/// (A first deploy's grants are its first version's manifest, `plugin
/// versions`; it appends nothing, so positions stay the application's.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantChange {
    /// The plugin.
    pub plugin: String,
    /// `widened`, `narrowed`, or `changed` (both).
    pub change: &'static str,
    /// Who deployed it.
    pub by: String,
    /// What it may do now that it could not.
    pub widened: Vec<String>,
    /// What it could do and may not now.
    pub narrowed: Vec<String>,
    /// Its reach now.
    pub reach: Reach,
}

impl GrantChange {
    /// The change from `before` to `after`; `None` when nothing changed.
    pub fn between(plugin: &str, by: &str, before: &Reach, after: &Reach) -> Option<GrantChange> {
        let (widened, narrowed) = (before.widened_to(after), after.widened_to(before));
        let change = match (widened.is_empty(), narrowed.is_empty()) {
            (true, true) => return None,
            (false, true) => "widened",
            (true, false) => "narrowed",
            (false, false) => "changed",
        };
        Some(GrantChange {
            plugin: plugin.to_owned(),
            change,
            by: by.to_owned(),
            widened,
            narrowed,
            reach: after.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(manifest: &str, handles: &[&str]) -> Reach {
        let exports = Exports {
            handles: handles.iter().map(|h| h.to_string()).collect(),
            ..Exports::default()
        };
        Reach::of(&Manifest::parse(manifest).unwrap(), Some(&exports))
    }

    #[test]
    fn a_redeploy_that_asks_for_more_is_a_widening_item_by_item() {
        let before = reach("[capabilities]\ndispatch = [\"accounts.open\"]\n", &["on-user-created"]);
        let after = reach(
            "[capabilities]\ndispatch = [\"accounts.open\", \"accounts.close\"]\nread = [\"profiles\"]\n\
             [limits]\nmemory-mib = 128\n",
            &["on-user-created", "on-user-deleted"],
        );
        assert_eq!(
            before.widened_to(&after),
            [
                "handles on-user-deleted",
                "dispatch accounts.close",
                "read profiles",
                "memory-mib 64 -> 128"
            ]
        );
        assert!(after.widened_to(&before).is_empty(), "the way back only narrows");
        let change = GrantChange::between("welcome", "ada", &before, &after).unwrap();
        assert_eq!(change.change, "widened");
        assert!(GrantChange::between("welcome", "ada", &after, &after).is_none());
        let narrowed = GrantChange::between("welcome", "ada", &after, &before).unwrap();
        assert_eq!(narrowed.change, "narrowed");
        assert_eq!(narrowed.narrowed.len(), 4, "{:?}", narrowed.narrowed);
    }

    #[test]
    fn a_grant_covered_by_a_wider_one_is_a_narrowing_not_a_widening() {
        let everything = reach(
            "[capabilities]\nread = [\"*\"]\ndispatch = [\"accounts.*\"]\nhttp = [\"https://h.example.com/a\"]\n",
            &[],
        );
        let listed = reach(
            "[capabilities]\nread = [\"projects\"]\ndispatch = [\"accounts.open\"]\n\
             http = [\"https://h.example.com/a/b\"]\n",
            &[],
        );
        assert!(
            everything.widened_to(&listed).is_empty(),
            "{:?}",
            everything.widened_to(&listed)
        );
        let change = GrantChange::between("p", "ada", &everything, &listed).unwrap();
        assert_eq!(change.change, "narrowed");
        assert_eq!(
            change.narrowed,
            ["dispatch accounts.*", "read *", "http https://h.example.com/a"]
        );
        let other = reach("[capabilities]\ndispatch = [\"inventory.open\"]\n", &[]);
        assert_eq!(everything.widened_to(&other), ["dispatch inventory.open"]);
    }

    #[test]
    fn setting_or_unsetting_the_cascade_budget_is_a_change_either_way() {
        let host = reach("", &[]);
        let set = reach("[limits]\ncascade-budget = 1000000\n", &[]);
        assert_eq!(host.widened_to(&set), ["cascade-budget host -> 1000000"]);
        assert_eq!(set.widened_to(&host), ["cascade-budget 1000000 -> host"]);
    }

    #[test]
    fn exports_not_recorded_are_not_compared() {
        let manifest = Manifest::parse("").unwrap();
        let unknown = Reach::of(&manifest, None);
        let known = reach("", &["on-user-created"]);
        assert!(unknown.widened_to(&known).is_empty());
        assert!(GrantChange::between("p", "ada", &unknown, &known).is_none());
    }
}
