//! Process manager `notifications`: logs a new user in phase 1; in phase 2,
//! once every listener has handled the event, it POSTs the new user as JSON
//! to the URL in its configuration key `webhook-url` (deploy it with
//! `--config webhook-url=URL --grant http=URL`). Without that key it only
//! logs. The host performs the request after the commit, with an
//! `Idempotency-Key`, and hands the answer back to `on_effect_completed`.

use cascade_sdk::{Context, Event, HandlerResult, HttpRequest, config, info, log, process_manager, request};
use serde::Deserialize;
use serde_json::json;

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
        let Some(url) = config::<String>("webhook-url")? else {
            info(&format!("welcome mail queued for {}", event.stream_id));
            return Ok(());
        };
        let user: UserCreated = event.payload()?;
        let body = json!({ "event": "user-created", "userId": event.stream_id, "name": user.name });
        request("welcome-webhook", HttpRequest::post_json(&url, body)?)
    }

    fn on_effect_completed(event: Event, _ctx: Context) -> HandlerResult {
        let outcome = event.effect()?;
        let level = match outcome.ok {
            true => cascade_sdk::Level::Info,
            false => cascade_sdk::Level::Warn,
        };
        let answer = match (outcome.status, &outcome.error) {
            (Some(status), _) => format!("answered {status}"),
            (None, Some(error)) => format!("failed: {error}"),
            (None, None) => "no answer".to_owned(),
        };
        log(
            level,
            &format!("{} {answer} after {} attempt(s)", outcome.effect, outcome.attempts),
        );
        Ok(())
    }
}
