//! Per-instance process manager `{{name}}`: one instance per user (the
//! event's stream id), counting the user's updates. Each instance's state is
//! saved (as JSON) with the checkpoint; `cascade pm instances {{name}}` lists
//! them and `cascade pm refresh {{name}}` rebuilds them from history.

use cascade_sdk::{Context, Event, HandlerResult, process_manager};
use serde::{Deserialize, Serialize};

struct {{Struct}};

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    name: String,
    updates: u64,
}

#[derive(Deserialize)]
struct UserCreated {
    name: String,
}

#[process_manager(state = User)]
impl {{Struct}} {
    fn on_user_created(user: &mut User, event: Event, _ctx: Context) -> HandlerResult {
        user.name = event.payload::<UserCreated>()?.name;
        Ok(())
    }

    fn on_user_updated(user: &mut User, _event: Event, _ctx: Context) -> HandlerResult {
        user.updates += 1;
        Ok(())
    }
}
