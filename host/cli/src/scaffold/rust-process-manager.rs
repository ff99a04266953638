//! Process manager `{{name}}`: reacts to every new user. Replace the handler
//! with your own: `on_<event>` runs with the projections, `after_<event>` once
//! every listener has handled the event; `dispatch(...)` sends a command
//! (grant it in cascade.toml).

use cascade_sdk::{Context, Event, HandlerResult, info, process_manager};

struct {{Struct}};

#[process_manager]
impl {{Struct}} {
    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        info(&format!("{{name}} saw user {}", event.stream_id));
        Ok(())
    }
}
