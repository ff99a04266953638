//! Per-instance process manager `payment-deadline`: once inventory is
//! reserved for an order, the payment has `deadline-ms` (the manifest's
//! `[config]`, 30 minutes by default) to arrive. If the timer fires first,
//! the reservation is released; a payment in time cancels the timer. Either
//! way the order's instance completes.
//!
//! One instance per order (the stream id of `inventory:<order>` and
//! `payment:<order>`). Only a reservation starts one: a payment for an order
//! with nothing reserved, or one that already timed out, is ignored.
//!
//! With `notify-url` configured (`plugin add --config notify-url=URL
//! --grant http=URL`), a missed deadline is also POSTed there as an effect;
//! the instance completes once the shop has answered.

use cascade_sdk::{
    Context, Event, HandlerResult, HttpRequest, InstanceRule, cancel_timer, complete, config, dispatch, info,
    instance_id, process_manager, request, schedule_after,
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

    fn on_timer_fired(order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        let timer = event.timer()?;
        info(&format!(
            "payment for order `{}` missed its deadline; releasing",
            timer.instance
        ));
        dispatch("inventory", &timer.instance, "release", json!({}))?;
        match config::<String>("notify-url")? {
            Some(url) => {
                let body = json!({ "event": "payment-missed", "orderId": timer.instance, "due": order.due });
                request("payment-missed", HttpRequest::post_json(&url, body)?)
            }
            None => {
                complete();
                Ok(())
            }
        }
    }

    fn on_effect_completed(_order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        let outcome = event.effect()?;
        info(&format!(
            "the shop was told of order `{}`: {}",
            instance_id(),
            outcome
                .status
                .map_or_else(|| "no answer".to_owned(), |s| format!("status {s}"))
        ));
        complete();
        Ok(())
    }
}
