//! Per-instance process manager `payment-deadline`: once inventory is
//! reserved for an order, the payment has `deadline-ms` (the manifest's
//! `[config]`, 30 minutes by default) to arrive. If the timer fires first,
//! the reservation is released; a payment in time cancels the timer. Either
//! way the order's instance completes.
//!
//! One instance per order (the stream id of `inventory:<order>` and
//! `payment:<order>`). Only a reservation starts one: a payment for an order
//! with nothing reserved, or one that already timed out, is ignored.

use cascade_sdk::{
    Context, Event, HandlerResult, InstanceRule, cancel_timer, complete, config, dispatch, info, process_manager,
    schedule_after,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The timer's name within an order's instance.
const DEADLINE: &str = "payment-deadline";
/// When the manifest sets no `deadline-ms`.
const DEFAULT_DEADLINE_MS: u64 = 30 * 60 * 1000;

struct PaymentDeadline;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    /// When the payment is due, in milliseconds since the Unix epoch.
    due: u64,
}

#[process_manager(state = Order)]
impl PaymentDeadline {
    fn instances() -> Vec<InstanceRule> {
        vec![
            InstanceRule::by_stream_id("InventoryReserved"),
            InstanceRule::by_stream_id("PaymentSucceeded").no_start(),
        ]
    }

    fn on_inventory_reserved(order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        let deadline = config::<u64>("deadline-ms")?.unwrap_or(DEFAULT_DEADLINE_MS);
        order.due = event.created_at + deadline;
        schedule_after(DEADLINE, deadline, json!({}))
    }

    fn on_payment_succeeded(_order: &mut Order, _event: Event, _ctx: Context) -> HandlerResult {
        cancel_timer(DEADLINE);
        complete();
        Ok(())
    }

    fn on_timer_fired(_order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        let timer = event.timer()?;
        info(&format!(
            "payment for order `{}` missed its deadline; releasing",
            timer.instance
        ));
        dispatch("inventory", &timer.instance, "release", json!({}))?;
        complete();
        Ok(())
    }
}
