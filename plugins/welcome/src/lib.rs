//! Process manager `welcome`: every new user gets an account with the same id.

use cascade_sdk::{Context, Event, HandlerResult, dispatch, process_manager};
use serde_json::json;

struct Welcome;

#[process_manager]
impl Welcome {
    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        dispatch("accounts", &event.stream_id, "open", json!({}))
    }
}
