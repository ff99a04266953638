//! Process manager `audit`: listens to events of both aggregates, `users` and
//! `accounts`, and logs each one.

use cascade_sdk::{Context, Event, HandlerResult, info, process_manager};

struct Audit;

fn record(event: &Event) -> HandlerResult {
    info(&format!(
        "#{} {} {}:{} {}",
        event.position, event.name, event.stream_type, event.stream_id, event.payload
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
