//! Stateful process manager `order-fulfillment`: when payment and inventory
//! are both done for an order, ship it — whichever comes first.
//!
//! The `on-` handlers record the facts; the `after-` handlers decide, so the
//! decision sees every listener's phase-1 work for the same event. The state
//! is kept per order id.

use std::collections::BTreeMap;

use cascade_sdk::{Context, Event, HandlerResult, dispatch, process_manager};
use serde::{Deserialize, Serialize};
use serde_json::json;

struct OrderFulfillment;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    payment_received: bool,
    inventory_reserved: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Orders {
    orders: BTreeMap<String, Order>,
}

fn ship_when_ready(state: &mut Orders, event: &Event) -> HandlerResult {
    let order = state.orders.entry(event.stream_id.clone()).or_default();
    if order.payment_received && order.inventory_reserved {
        dispatch("shipping", &event.stream_id, "shipOrder", json!({}))?;
    }
    Ok(())
}

#[process_manager(state = Orders)]
impl OrderFulfillment {
    fn on_payment_succeeded(state: &mut Orders, event: Event, _ctx: Context) -> HandlerResult {
        state.orders.entry(event.stream_id).or_default().payment_received = true;
        Ok(())
    }

    fn on_inventory_reserved(state: &mut Orders, event: Event, _ctx: Context) -> HandlerResult {
        state.orders.entry(event.stream_id).or_default().inventory_reserved = true;
        Ok(())
    }

    fn after_payment_succeeded(state: &mut Orders, event: Event, _ctx: Context) -> HandlerResult {
        ship_when_ready(state, &event)
    }

    fn after_inventory_reserved(state: &mut Orders, event: Event, _ctx: Context) -> HandlerResult {
        ship_when_ready(state, &event)
    }
}
