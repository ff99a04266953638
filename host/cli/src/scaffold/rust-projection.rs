//! Projection `{{name}}`: one document per user in collection `{{name}}`,
//! indexed by `name`. Read it with `cascade read {{name}}`.

use cascade_sdk::{Collection, Context, Event, HandlerResult, collection, projection, put};
use serde_json::{Value, json};

struct {{Struct}};

#[projection]
impl {{Struct}} {
    fn collections() -> Vec<Collection> {
        vec![collection("{{name}}", &["name"])]
    }

    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        let created: Value = event.payload()?;
        put("{{name}}", &event.stream_id, json!({"name": created["name"]}))
    }
}
