//! Projection `groups`: the `groups` collection, one document per live group.

use cascade_sdk::{Collection, Context, Event, HandlerResult, collection, delete, projection, put};
use serde::Deserialize;
use serde_json::json;

struct Groups;

#[derive(Deserialize)]
struct GroupCreated {
    name: String,
}

#[projection]
impl Groups {
    fn collections() -> Vec<Collection> {
        vec![collection("groups", &[])]
    }

    fn on_group_created(event: Event, _ctx: Context) -> HandlerResult {
        let created: GroupCreated = event.payload()?;
        put(
            "groups",
            &event.stream_id,
            json!({"id": event.stream_id, "name": created.name}),
        )
    }

    fn on_group_deleted(event: Event, _ctx: Context) -> HandlerResult {
        delete("groups", &event.stream_id)
    }
}
