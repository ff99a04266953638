//! Process manager `notifications`: logs a new user in phase 1 and again in
//! phase 2, once every listener has handled the event.

use cascade_sdk::{Context, Event, HandlerResult, info, process_manager};
use serde::Deserialize;

struct Notifications;

#[derive(Deserialize)]
struct UserCreated {
    name: String,
}

#[process_manager]
impl Notifications {
    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        let user: UserCreated = event.payload()?;
        info(&format!("new user {} ({})", user.name, event.stream_id));
        Ok(())
    }

    fn after_user_created(event: Event, _ctx: Context) -> HandlerResult {
        info(&format!("welcome mail queued for {}", event.stream_id));
        Ok(())
    }
}
