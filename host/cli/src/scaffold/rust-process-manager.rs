//! Process manager `{{name}}`: reacts to every new user. Replace the handler
//! with your own: `on_<event>` runs with the projections, `after_<event>` once
//! every listener has handled the event; `dispatch(...)` sends a command
//! (grant it in cascade.toml).
//!
//! With `webhook-url` configured (`cascade plugin add {{name}}.wasm --config
//! webhook-url=URL --grant http=URL`), each new user is also POSTed there: the
//! host sends it after the handler's commit, with an `Idempotency-Key`, and
//! hands the answer to `on_effect_completed`.

use cascade_sdk::{Context, Event, HandlerResult, HttpRequest, config, info, process_manager, request};

struct {{Struct}};

#[process_manager]
impl {{Struct}} {
    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        info(&format!("{{name}} saw user {}", event.stream_id));
        Ok(())
    }

    fn after_user_created(event: Event, _ctx: Context) -> HandlerResult {
        match config::<String>("webhook-url")? {
            Some(url) => request("user-webhook", HttpRequest::post_json(&url, &event.stream_id)?),
            None => Ok(()),
        }
    }

    fn on_effect_completed(event: Event, _ctx: Context) -> HandlerResult {
        let outcome = event.effect()?;
        info(&format!("{{name}}: {} answered {:?}", outcome.effect, outcome.status));
        Ok(())
    }
}
