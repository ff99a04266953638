//! The example plugins' logic as native Rust: the baseline the benchmarks
//! compare the WASM guests against. Same state encoding (JSON), same payloads,
//! same schemas; only the sandbox boundary is missing.

use cascade::{Aggregate, AggregateDescription, Context, Decision, Effects, Event, EventDeclaration, Handler};
use cascade::{Command, HandlerError, InstanceKey, InstanceRule, InstanceRules, Listener, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn declaration(name: &str, schema: Value) -> EventDeclaration {
    EventDeclaration {
        name: name.into(),
        schema: schema.to_string(),
    }
}

/// Events with JSON payloads and the folded state, as the guest SDK returns them.
fn decision(events: Vec<(&str, Value)>, state: &impl Serialize) -> anyhow::Result<Decision> {
    Ok(Decision {
        events: events
            .into_iter()
            .map(|(name, payload)| NewEvent {
                name: name.into(),
                payload: payload.to_string(),
            })
            .collect(),
        state: serde_json::to_vec(state)?,
    })
}

fn load<T: Default + for<'de> Deserialize<'de>>(state: Option<&[u8]>) -> anyhow::Result<T> {
    Ok(state.map(serde_json::from_slice).transpose()?.unwrap_or_default())
}

#[derive(Default, Serialize, Deserialize)]
struct User {
    created: bool,
}

/// `plugins/users`, natively.
pub struct Users;

impl Aggregate for Users {
    fn describe(&mut self) -> anyhow::Result<AggregateDescription> {
        Ok(AggregateDescription {
            name: "users".into(),
            events: vec![
                declaration(
                    "UserCreated",
                    json!({"type": "object", "properties": {"name": {"type": "string", "minLength": 1}},
                           "required": ["name"], "additionalProperties": false}),
                ),
                declaration(
                    "UserUpdated",
                    json!({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}},
                           "required": ["age"], "additionalProperties": false}),
                ),
            ],
            commands: vec!["create".into(), "update".into()],
        })
    }

    fn handle(
        &mut self,
        state: Option<&[u8]>,
        _id: &str,
        command: &str,
        args: &str,
    ) -> anyhow::Result<Result<Decision, String>> {
        let mut user: User = load(state)?;
        let args: Value = serde_json::from_str(args)?;
        let events = match command {
            "create" if user.created => return Ok(Err("user already exists".into())),
            "create" => vec![("UserCreated", json!({"name": args["name"]}))],
            "update" if !user.created => return Ok(Err("user does not exist".into())),
            "update" => vec![("UserUpdated", json!({"age": args["age"]}))],
            other => return Ok(Err(format!("unknown command `{other}`"))),
        };
        // The same fold as the guest SDK: apply each decided event.
        for (name, _) in &events {
            if *name == "UserCreated" {
                user.created = true;
            }
        }
        Ok(Ok(decision(events, &user)?))
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Account {
    open: bool,
}

/// `plugins/accounts`, natively.
pub struct Accounts;

impl Aggregate for Accounts {
    fn describe(&mut self) -> anyhow::Result<AggregateDescription> {
        Ok(AggregateDescription {
            name: "accounts".into(),
            events: vec![declaration(
                "AccountOpened",
                json!({"type": "object", "properties": {"userId": {"type": "string"}},
                       "required": ["userId"], "additionalProperties": false}),
            )],
            commands: vec!["open".into()],
        })
    }

    fn handle(
        &mut self,
        state: Option<&[u8]>,
        id: &str,
        command: &str,
        args: &str,
    ) -> anyhow::Result<Result<Decision, String>> {
        let mut account: Account = load(state)?;
        let _args: Value = serde_json::from_str(args)?;
        let events = match command {
            "open" if account.open => return Ok(Err("account is already open".into())),
            "open" => vec![("AccountOpened", json!({"userId": id}))],
            other => return Ok(Err(format!("unknown command `{other}`"))),
        };
        account.open = true;
        Ok(Ok(decision(events, &account)?))
    }
}

/// `plugins/welcome`, natively.
pub struct Welcome {
    handlers: Vec<Handler>,
}

impl Welcome {
    pub fn new() -> Self {
        Welcome {
            handlers: vec![Handler::on("UserCreated")],
        }
    }
}

impl Listener for Welcome {
    fn name(&self) -> &str {
        "welcome"
    }

    fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    fn handle(&mut self, _: usize, event: &Event, _: Context, effects: &mut Effects) -> Result<(), HandlerError> {
        let args = serde_json::to_string(&json!({})).map_err(|e| HandlerError::Failed(e.to_string()))?;
        effects
            .commands
            .push(Command::new("accounts", &event.stream_id, "open", &args));
        Ok(())
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Count {
    users_created: u64,
}

/// `plugins/user-counter`, natively: a stateful listener with one instance.
pub struct UserCounter {
    handlers: Vec<Handler>,
    rules: InstanceRules,
}

impl UserCounter {
    pub fn new() -> Self {
        UserCounter {
            handlers: vec![Handler::on("UserCreated"), Handler::on("UserUpdated")],
            rules: InstanceRules::new(vec![InstanceRule {
                event: "*".into(),
                key: InstanceKey::Single,
                starts: true,
            }]),
        }
    }
}

impl Listener for UserCounter {
    fn name(&self) -> &str {
        "user-counter"
    }

    fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    fn handle(&mut self, _: usize, _: &Event, _: Context, effects: &mut Effects) -> Result<(), HandlerError> {
        let failed = |e: String| HandlerError::Failed(e);
        let instance = effects.instance.as_mut().ok_or_else(|| failed("no instance".into()))?;
        let mut count: Count = load(instance.state.as_deref()).map_err(|e| failed(e.to_string()))?;
        count.users_created += 1;
        instance.state = Some(serde_json::to_vec(&count).map_err(|e| failed(e.to_string()))?);
        instance.state_set = true;
        Ok(())
    }

    fn instance_rules(&self) -> Option<&InstanceRules> {
        Some(&self.rules)
    }
}

/// `plugins/projects`, natively, writing collection `name` (indexed by
/// `groupId`) through the same read-model handle the WASM projection uses.
pub struct Projects {
    name: String,
    handlers: Vec<Handler>,
    collections: Vec<cascade::Collection>,
    read_models: cascade::ReadModels,
}

impl Projects {
    pub fn new(name: &str, read_models: cascade::ReadModels) -> Self {
        Projects {
            name: name.into(),
            handlers: ["ProjectCreated", "ProjectUpdated", "ProjectDeleted"]
                .map(Handler::on)
                .to_vec(),
            collections: vec![cascade::Collection {
                name: name.into(),
                indexes: vec!["groupId".into()],
            }],
            read_models,
        }
    }
}

impl Listener for Projects {
    fn name(&self) -> &str {
        &self.name
    }

    fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    fn collections(&self) -> Option<&[cascade::Collection]> {
        Some(&self.collections)
    }

    fn handle(&mut self, handler: usize, event: &Event, _: Context, _: &mut Effects) -> Result<(), HandlerError> {
        let failed = |e: String| HandlerError::Failed(e);
        let payload: Value = serde_json::from_str(&event.payload).map_err(|e| failed(e.to_string()))?;
        let id = &event.stream_id;
        match handler {
            0 => {
                let doc = json!({"id": id, "name": payload["name"], "groupId": payload["groupId"]});
                self.read_models
                    .put(&self.name, &self.name, id, &doc.to_string())
                    .map_err(failed)
            }
            1 => {
                let doc = self
                    .read_models
                    .get(&self.name, id)
                    .map_err(|e| failed(e.to_string()))?;
                let doc = doc.ok_or_else(|| failed("missing project".into()))?;
                let mut doc: Value = serde_json::from_str(&doc).map_err(|e| failed(e.to_string()))?;
                doc["name"] = payload["name"].clone();
                self.read_models
                    .put(&self.name, &self.name, id, &doc.to_string())
                    .map_err(failed)
            }
            _ => self.read_models.delete(&self.name, &self.name, id).map_err(failed),
        }
    }
}
