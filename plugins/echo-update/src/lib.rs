//! Process manager `echo-update`: on `UserUpdated` it dispatches `update`
//! with the same age to the same user, which would produce the very event it
//! reacts to. The host refuses that command with `InfiniteLoopError`.

use cascade_sdk::{Context, Event, HandlerResult, dispatch, process_manager};
use serde::Deserialize;
use serde_json::json;

struct EchoUpdate;

#[derive(Deserialize)]
struct UserUpdated {
    age: u64,
}

#[process_manager]
impl EchoUpdate {
    fn on_user_updated(event: Event, _ctx: Context) -> HandlerResult {
        let update: UserUpdated = event.payload()?;
        dispatch("users", &event.stream_id, "update", json!({"age": update.age}))
    }
}
