//! Per-instance process manager `order-fulfillment`: when payment and
//! inventory are both done for an order, ship it — whichever comes first.
//!
//! One instance per order: `payment:<order>` and `inventory:<order>` share
//! the order id as their stream id, the default instance key. The `on-`
//! handlers record the facts; the `after-` handlers decide, so the decision
//! sees every listener's phase-1 work for the same event. Once it ships the
//! order it completes the instance: the host deletes its state.

use cascade_sdk::{Context, Event, HandlerResult, complete, dispatch, process_manager};
use serde::{Deserialize, Serialize};
use serde_json::json;

struct OrderFulfillment;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    payment_received: bool,
    inventory_reserved: bool,
}

fn ship_when_ready(order: &Order, event: &Event) -> HandlerResult {
    if order.payment_received && order.inventory_reserved {
        dispatch("shipping", &event.stream_id, "shipOrder", json!({}))?;
        complete();
    }
    Ok(())
}

#[process_manager(state = Order)]
impl OrderFulfillment {
    fn on_payment_succeeded(order: &mut Order, _event: Event, _ctx: Context) -> HandlerResult {
        order.payment_received = true;
        Ok(())
    }

    fn on_inventory_reserved(order: &mut Order, _event: Event, _ctx: Context) -> HandlerResult {
        order.inventory_reserved = true;
        Ok(())
    }

    fn after_payment_succeeded(order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        ship_when_ready(order, &event)
    }

    fn after_inventory_reserved(order: &mut Order, event: Event, _ctx: Context) -> HandlerResult {
        ship_when_ready(order, &event)
    }
}
