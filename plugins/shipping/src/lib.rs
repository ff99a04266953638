//! The `shipping` aggregate, keyed by order id: `shipOrder {}` →
//! `OrderShipped {}`, rejected when the order has already shipped.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Shipping;

#[derive(Default, Serialize, Deserialize)]
struct Shipment {
    shipped: bool,
}

impl Aggregate for Shipping {
    type State = Shipment;
    const NAME: &'static str = "shipping";
    const COMMANDS: &'static [&'static str] = &["shipOrder"];

    fn events() -> Vec<EventSchema> {
        vec![EventSchema {
            name: "OrderShipped",
            schema: json!({"type": "object", "additionalProperties": false}),
        }]
    }

    fn handle(shipment: &Shipment, order: &str, command: &str, _args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "shipOrder" if shipment.shipped => Err(format!("order {order} has already shipped")),
            "shipOrder" => Ok(vec![new_event("OrderShipped", json!({}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(shipment: &mut Shipment, event: &str, _payload: Value) {
        if event == "OrderShipped" {
            shipment.shipped = true;
        }
    }
}

export_aggregate!(Shipping);
