//! Stateful process manager `{{name}}`: counts new users. The state is saved
//! (as JSON) with the checkpoint; `cascade pm refresh {{name}}` rebuilds it
//! from history.

use cascade_sdk::{Context, Event, HandlerResult, process_manager};
use serde::{Deserialize, Serialize};

struct {{Struct}};

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    users_created: u64,
}

#[process_manager(state = State)]
impl {{Struct}} {
    fn on_user_created(state: &mut State, _event: Event, _ctx: Context) -> HandlerResult {
        state.users_created += 1;
        Ok(())
    }
}
