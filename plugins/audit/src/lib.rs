//! Process manager `audit`: listens to events of both aggregates, `users` and
//! `accounts`, and logs each one with who caused it and in which cascade.

use cascade_sdk::{Context, Event, HandlerResult, info, process_manager};

struct Audit;

fn record(event: &Event) -> HandlerResult {
    let envelope = event
        .envelope()
        .ok_or("the host gave no envelope for the current event")?;
    info(&format!(
        "#{} {} {}:{} {} actor={} cascade={} cause={}",
        event.position,
        event.name,
        event.stream_type,
        event.stream_id,
        event.payload,
        envelope.actor_id.as_deref().unwrap_or("-"),
        envelope.correlation_id,
        envelope.causation_id,
    ));
    Ok(())
}

#[process_manager]
impl Audit {
    fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
        record(&event)
    }

    fn on_user_updated(event: Event, _ctx: Context) -> HandlerResult {
        record(&event)
    }

    fn on_account_opened(event: Event, _ctx: Context) -> HandlerResult {
        record(&event)
    }
}
