//! Plugin manifests: what a plugin is granted, and how it is limited.
//!
//! A manifest is a TOML file next to the component, with the same stem
//! (`welcome.wasm` → `welcome.toml`), read when the plugin is added and
//! stored with it. Every section is optional; a plugin without a manifest
//! may dispatch nothing and gets the default limits.
//!
//! ```toml
//! name = "welcome"          # the plugin's name (default: the file's stem)
//! start-from = "now"        # a new process manager: "now" or "origin"
//!
//! [capabilities]
//! # Commands the plugin may dispatch: `aggregate.command` or `aggregate.*`.
//! dispatch = ["accounts.open"]
//! # Read-model collections it may query (`"*"`: every one); a projection
//! # may always read the collections it writes.
//! read = ["profiles"]
//! # Where its effects may send HTTP requests: scheme, host, port, path prefix.
//! http = ["https://hooks.example.com/cascade"]
//!
//! [effects]
//! attempts = 5           # per effect, before it is parked
//! backoff-ms = 1000      # before the second attempt, doubling, at most a minute
//! timeout-ms = 10000     # per attempt
//! max-response-bytes = 65536  # of the body kept in the outcome
//! concurrency = 8        # of this plugin's effects in flight
//!
//! [limits]
//! time-budget-ms = 100   # per handler call
//! memory-mib = 64        # every memory and table of the instance together
//! max-dispatches = 1000  # commands per handler call
//! cascade-budget = 10000 # events + commands of a cascade it dispatches into
//! max-instances = 10000000 # live instances of a per-instance process manager
//! max-timers = 10000000  # pending timers of all its instances
//! max-effects = 100000   # its effects in the outbox, parked ones included
//! max-read-model-mib = 1024 # documents of the collections it writes (ids and bodies)
//!
//! [on-error]
//! attempts = 3           # calls of a failing handler per event
//! policy = "park"        # then park the event and go on, or "stop" the plugin
//!
//! [config]
//! deadline-ms = 1800000  # any values; the plugin reads them with `config.get`
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an operator adds to a plugin's manifest at deploy (`plugin add
/// --grant`, `--config`, `--secret`): on top of the manifest file, for that
/// deploy. Secrets not given again are carried over from the active version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ManifestAdditions {
    /// Grants as `KIND=VALUE`: `dispatch=AGGREGATE.COMMAND`,
    /// `read=COLLECTION`, `http=ORIGIN`.
    pub grants: Vec<String>,
    /// Configuration values: key → JSON text.
    pub config: std::collections::BTreeMap<String, String>,
    /// Secret values: key → JSON text.
    pub secrets: std::collections::BTreeMap<String, String>,
}

impl ManifestAdditions {
    /// `KEY=VALUE` of `--config` as a key and JSON text: VALUE when it is
    /// JSON, else VALUE as a JSON string.
    ///
    /// # Errors
    ///
    /// No `=`, or an empty key.
    pub fn config_pair(text: &str) -> Result<(String, String), String> {
        let (key, value) = text
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("`{text}` must be KEY=VALUE"))?;
        let json = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(_) => value.to_owned(),
            Err(_) => serde_json::Value::String(value.to_owned()).to_string(),
        };
        Ok((key.to_owned(), json))
    }
}

/// A plugin's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// What the plugin may do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Overrides of the default limits.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// What happens when a handler fails.
    #[serde(default)]
    pub on_error: OnError,
    /// How its effects are performed.
    #[serde(default)]
    pub effects: EffectPolicy,
    /// The `[config]` table and `--config` values: key → value as JSON text,
    /// for `config.get`.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// `--secret` values: key → value as JSON text, for `config.get` too.
    /// Never serialized with the manifest (so never shown); the registry
    /// stores them beside it. Not in a manifest file.
    #[serde(skip)]
    pub secrets: std::collections::BTreeMap<String, String>,
}

/// How a plugin's effects are performed (its manifest's `[effects]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EffectPolicy {
    /// Attempts per effect before it is parked.
    pub attempts: u32,
    /// Pause before the second attempt, doubling for each next one, at most a minute.
    pub backoff_ms: u64,
    /// Time one attempt may take, answer included.
    pub timeout_ms: u64,
    /// Bytes of the response body kept in the outcome; the rest is dropped.
    pub max_response_bytes: usize,
    /// Effects of this plugin in flight at once.
    pub concurrency: usize,
}

impl Default for EffectPolicy {
    fn default() -> Self {
        EffectPolicy {
            attempts: 5,
            backoff_ms: 1000,
            timeout_ms: 10_000,
            max_response_bytes: 64 << 10,
            concurrency: 8,
        }
    }
}

/// What the plugin may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Capabilities {
    /// Commands it may dispatch, as `aggregate.command` or `aggregate.*`.
    #[serde(default)]
    pub dispatch: Vec<String>,
    /// Read-model collections it may query (`get`, `find`, `list`), or
    /// `"*"` for every one. A projection may always read what it writes.
    #[serde(default)]
    pub read: Vec<String>,
    /// Where its effects may send requests: URLs whose scheme, host and port
    /// must match and whose path is a prefix (see [`crate::effect::Origin`]).
    #[serde(default)]
    pub http: Vec<String>,
}

/// What one plugin may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of one call before it is interrupted.
    pub time_budget: Duration,
    /// Every memory and table of the plugin's instance together, in bytes.
    pub memory_bytes: usize,
    /// Commands one handler call may dispatch.
    pub max_dispatches: usize,
    /// Bytes of one command's args a guest hands the host.
    pub max_message_bytes: usize,
    /// Bytes of a state blob a stateful process manager hands the host.
    pub max_state_bytes: usize,
    /// Log lines kept per call; the rest are counted and dropped.
    pub max_log_lines: usize,
    /// Bytes one call may hand the host in all: dispatched commands and log
    /// lines together. Past it, dispatches fail and log lines are dropped.
    pub max_call_bytes: usize,
    /// What it may accumulate in the store.
    pub quotas: Quotas,
}

/// What a plugin may accumulate in the store, so that one that writes
/// without end fills its quota, not the disk. A call that would go past
/// one fails, naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Live instances of a per-instance process manager (an event that
    /// would start one more is parked without a call).
    pub instances: u64,
    /// Pending timers of all its instances.
    pub timers: u64,
    /// Its effects in the outbox, parked ones included.
    pub effects: u64,
    /// Bytes (ids and bodies) of the documents of the collections it writes.
    pub read_model_bytes: u64,
}

impl Quotas {
    /// No quota: native listeners, which the embedding program trusts.
    pub const UNBOUNDED: Quotas = Quotas {
        instances: u64::MAX,
        timers: u64::MAX,
        effects: u64::MAX,
        read_model_bytes: u64::MAX,
    };
}

impl Default for Quotas {
    fn default() -> Self {
        // Above what the benchmarks keep (a million instances and timers).
        Quotas {
            instances: 10_000_000,
            timers: 10_000_000,
            effects: 100_000,
            read_model_bytes: 1 << 30,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_budget: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            max_dispatches: 1000,
            max_message_bytes: 1 << 20,
            max_state_bytes: 16 << 20,
            max_log_lines: 100,
            max_call_bytes: 4 << 20,
            quotas: Quotas::default(),
        }
    }
}

/// Limits that replace the defaults of [`Limits`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitOverrides {
    /// Time budget of one call, in milliseconds.
    pub time_budget_ms: Option<u64>,
    /// Memory cap, in MiB.
    pub memory_mib: Option<usize>,
    /// Commands one call may dispatch.
    pub max_dispatches: Option<usize>,
    /// Events and commands a cascade this plugin dispatches into may count
    /// (a command's own budget wins; the host's `--cascade-budget` else).
    pub cascade_budget: Option<usize>,
    /// Live instances of a per-instance process manager.
    pub max_instances: Option<u64>,
    /// Pending timers.
    pub max_timers: Option<u64>,
    /// Effects in the outbox.
    pub max_effects: Option<u64>,
    /// Documents of its collections, in MiB.
    pub max_read_model_mib: Option<u64>,
}

/// What happens when a handler fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OnError {
    /// How many times a failing handler is called for one event (with
    /// exponential backoff between calls) before the policy applies.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// What happens after the last attempt.
    #[serde(default)]
    pub policy: Policy,
}

/// What happens to a plugin whose handler failed every attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Park the event for the plugin (`cascade parked`) and go on with the
    /// next event.
    #[default]
    Park,
    /// Stop the plugin at the failing event; `cascade plugin start` resumes
    /// it from there.
    Stop,
}

fn default_attempts() -> u32 {
    3
}

impl Default for OnError {
    fn default() -> Self {
        OnError {
            attempts: default_attempts(),
            policy: Policy::Park,
        }
    }
}

/// What a manifest says about where a plugin goes, used when it is added
/// and not stored with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The plugin's name (`name = "..."`); the file's stem when absent. An
    /// aggregate is always named by its stream type.
    pub name: Option<String>,
    /// Where a process manager added for the first time starts.
    pub start_from: StartFrom,
}

/// Where a process manager added for the first time starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// At the head of the log: it sees only events appended from now on.
    #[default]
    Now,
    /// At the first event: a stateful process manager's state is built by a
    /// refresh (commands dropped) before it goes live.
    Origin,
}

impl Manifest {
    /// Parse manifest text.
    ///
    /// # Errors
    ///
    /// The TOML's own message: a syntax error, an unknown key, a wrong type.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse_with_placement(text).map(|(manifest, _)| manifest)
    }

    /// Parse manifest text, with its `name` and `start-from`.
    ///
    /// # Errors
    ///
    /// As [`Manifest::parse`]; a name that is empty or holds control
    /// characters; a `start-from` other than `now` or `origin`.
    pub fn parse_with_placement(text: &str) -> Result<(Manifest, Placement), String> {
        let one_line = |e: toml::de::Error| e.to_string().trim().replace('\n', " ");
        let mut table: toml::Table = toml::from_str(text).map_err(one_line)?;
        let name = match table.remove("name") {
            None => None,
            Some(toml::Value::String(name)) if !name.is_empty() && !name.chars().any(char::is_control) => Some(name),
            Some(other) => return Err(format!("`name` must be a non-empty string, found `{other}`")),
        };
        let start_from = match table.remove("start-from") {
            None => StartFrom::Now,
            Some(value) => value
                .try_into()
                .map_err(|_| "`start-from` must be \"now\" or \"origin\"".to_owned())?,
        };
        if table.contains_key("secrets") {
            return Err("secrets are given at deploy (`plugin add --secret KEY=@FILE`), never in a manifest".into());
        }
        let config = match table.remove("config") {
            None => Default::default(),
            Some(toml::Value::Table(config)) => config
                .into_iter()
                .map(|(key, value)| {
                    let json = serde_json::to_string(&value).expect("TOML values are JSON values");
                    (key, json)
                })
                .collect(),
            Some(other) => return Err(format!("`config` must be a table, found `{other}`")),
        };
        let mut manifest: Manifest = toml::Value::Table(table).try_into().map_err(one_line)?;
        manifest.config = config;
        if manifest.on_error.attempts == 0 {
            return Err("`on-error.attempts` must be at least 1".into());
        }
        let effects = &manifest.effects;
        if effects.attempts == 0 || effects.timeout_ms == 0 || !(1..=256).contains(&effects.concurrency) {
            return Err(
                "`effects.attempts` and `effects.timeout-ms` must be at least 1, `effects.concurrency` 1 to 256".into(),
            );
        }
        if effects.max_response_bytes > 16 << 20 {
            return Err("`effects.max-response-bytes` must be at most 16 MiB (16777216)".into());
        }
        for grant in &manifest.capabilities.http {
            crate::effect::Origin::parse(grant).map_err(|e| format!("capability http: {e}"))?;
        }
        for grant in &manifest.capabilities.dispatch {
            check_dispatch_grant(grant)?;
        }
        for grant in &manifest.capabilities.read {
            check_read_grant(grant)?;
        }
        Ok((manifest, Placement { name, start_from }))
    }

    /// The limits, defaults overridden.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            time_budget: self
                .limits
                .time_budget_ms
                .map_or(defaults.time_budget, Duration::from_millis),
            memory_bytes: self.limits.memory_mib.map_or(defaults.memory_bytes, |m| m << 20),
            max_dispatches: self.limits.max_dispatches.unwrap_or(defaults.max_dispatches),
            quotas: Quotas {
                instances: self.limits.max_instances.unwrap_or(defaults.quotas.instances),
                timers: self.limits.max_timers.unwrap_or(defaults.quotas.timers),
                effects: self.limits.max_effects.unwrap_or(defaults.quotas.effects),
                read_model_bytes: self
                    .limits
                    .max_read_model_mib
                    .map_or(defaults.quotas.read_model_bytes, |m| m.saturating_mul(1 << 20)),
            },
            ..defaults
        }
    }

    /// Add what an operator gave at deploy.
    ///
    /// # Errors
    ///
    /// A grant of an unknown kind, or one that does not parse; one line.
    pub fn add(&mut self, additions: &ManifestAdditions) -> Result<(), String> {
        for grant in &additions.grants {
            let (list, value) = match grant.split_once('=') {
                Some(("dispatch", command)) => {
                    check_dispatch_grant(command).map_err(|e| format!("--grant {grant}: {e}"))?;
                    (&mut self.capabilities.dispatch, command)
                }
                Some(("read", collection)) => {
                    check_read_grant(collection).map_err(|e| format!("--grant {grant}: {e}"))?;
                    (&mut self.capabilities.read, collection)
                }
                Some(("http", origin)) => {
                    crate::effect::Origin::parse(origin).map_err(|e| format!("--grant {grant}: {e}"))?;
                    (&mut self.capabilities.http, origin)
                }
                _ => {
                    return Err(format!(
                        "--grant `{grant}` must be dispatch=AGGREGATE.COMMAND, read=COLLECTION or http=ORIGIN, \
                         e.g. read=profiles"
                    ));
                }
            };
            if !list.iter().any(|g| g == value) {
                list.push(value.to_owned());
            }
        }
        self.config.extend(additions.config.clone());
        self.secrets.extend(additions.secrets.clone());
        Ok(())
    }

    /// The value of configuration key `key` as JSON text: a secret, else
    /// the `[config]` table's.
    pub fn config_value(&self, key: &str) -> Option<&String> {
        self.secrets.get(key).or_else(|| self.config.get(key))
    }

    /// Whether the plugin may query `collection`.
    pub fn may_read(&self, collection: &str) -> bool {
        self.capabilities
            .read
            .iter()
            .any(|grant| grant == "*" || grant == collection)
    }

    /// Whether the plugin may dispatch `command` to `aggregate`.
    pub fn may_dispatch(&self, aggregate: &str, command: &str) -> bool {
        self.capabilities
            .dispatch
            .iter()
            .any(|grant| match grant.split_once('.') {
                Some((a, "*")) => a == aggregate,
                Some((a, c)) => a == aggregate && c == command,
                None => false,
            })
    }
}

fn check_dispatch_grant(grant: &str) -> Result<(), String> {
    match grant.split_once('.') {
        Some((a, c)) if !a.is_empty() && !c.is_empty() => Ok(()),
        _ => Err(format!(
            "capability `{grant}` must be `aggregate.command` or `aggregate.*`, e.g. `accounts.open`"
        )),
    }
}

fn check_read_grant(grant: &str) -> Result<(), String> {
    match grant.is_empty() || grant.chars().any(char::is_control) {
        true => Err(format!(
            "read grant `{grant}` must name a collection, or be \"*\" for every one"
        )),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_manifest_grants_nothing_and_keeps_the_defaults() {
        let manifest = Manifest::parse("").unwrap();
        assert!(!manifest.may_dispatch("accounts", "open"));
        assert_eq!(manifest.limits(), Limits::default());
        assert_eq!(manifest.on_error.attempts, 3);
    }

    #[test]
    fn grants_name_a_command_or_every_command_of_an_aggregate() {
        let manifest = Manifest::parse(
            "[capabilities]\ndispatch = [\"accounts.open\", \"shipping.*\"]\n[limits]\ntime-budget-ms = 250\n",
        )
        .unwrap();
        assert!(manifest.may_dispatch("accounts", "open"));
        assert!(!manifest.may_dispatch("accounts", "close"));
        assert!(manifest.may_dispatch("shipping", "shipOrder"));
        assert_eq!(manifest.limits().time_budget, Duration::from_millis(250));
    }

    #[test]
    fn config_values_are_kept_as_json_text() {
        let manifest = Manifest::parse("[config]\ndeadline-ms = 1800000\nname = \"x\"\n").unwrap();
        assert_eq!(manifest.config["deadline-ms"], "1800000");
        assert_eq!(manifest.config["name"], "\"x\"");
        let err = Manifest::parse("config = 3\n").unwrap_err();
        assert!(err.starts_with("`config` must be a table"), "{err}");
    }

    #[test]
    fn unknown_keys_and_malformed_grants_are_refused_with_the_reason() {
        let err = Manifest::parse("[capabilities]\nsockets = true\n").unwrap_err();
        assert!(err.contains("unknown field `sockets`"), "{err}");
        let err = Manifest::parse("[capabilities]\ndispatch = [\"accounts\"]\n").unwrap_err();
        assert!(err.starts_with("capability `accounts` must be"), "{err}");
    }

    #[test]
    fn reads_are_granted_per_collection_and_added_at_deploy_like_every_grant() {
        let mut manifest = Manifest::parse("[capabilities]\nread = [\"profiles\"]\n").unwrap();
        assert!(manifest.may_read("profiles"));
        assert!(!manifest.may_read("projects"));
        let additions = ManifestAdditions {
            grants: vec!["read=projects".into(), "dispatch=accounts.open".into()],
            ..Default::default()
        };
        manifest.add(&additions).unwrap();
        assert!(manifest.may_read("projects"));
        assert!(manifest.may_dispatch("accounts", "open"));
        manifest.capabilities.read = vec!["*".into()];
        assert!(manifest.may_read("anything"));
        let bad = ManifestAdditions {
            grants: vec!["write=projects".into()],
            ..Default::default()
        };
        let err = manifest.add(&bad).unwrap_err();
        assert!(err.starts_with("--grant `write=projects` must be"), "{err}");
        let bad = ManifestAdditions {
            grants: vec!["dispatch=accounts".into()],
            ..Default::default()
        };
        assert!(manifest.add(&bad).unwrap_err().contains("must be `aggregate.command`"));
    }
}
