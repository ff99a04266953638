//! The `inventory` aggregate, keyed by order id: `reserve {items}` →
//! `InventoryReserved {items}`; `release` → `InventoryReleased {items}` (the
//! reserved items go back, once).

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Inventory;

/// What an order holds.
#[derive(Default, Serialize, Deserialize)]
struct Reservation {
    items: Vec<String>,
}

fn items_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["items"],
        "additionalProperties": false
    })
}

impl Aggregate for Inventory {
    type State = Reservation;
    const NAME: &'static str = "inventory";
    const COMMANDS: &'static [&'static str] = &["reserve", "release"];

    fn events() -> Vec<EventSchema> {
        vec![
            EventSchema {
                name: "InventoryReserved",
                schema: items_schema(),
            },
            EventSchema {
                name: "InventoryReleased",
                schema: items_schema(),
            },
        ]
    }

    fn handle(state: &Reservation, order: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "reserve" => Ok(vec![new_event("InventoryReserved", json!({"items": args["items"]}))]),
            "release" if state.items.is_empty() => Err(format!("order `{order}` holds no reserved items")),
            "release" => Ok(vec![new_event("InventoryReleased", json!({"items": state.items}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(state: &mut Reservation, event: &str, payload: Value) {
        match event {
            "InventoryReserved" => {
                let items = payload["items"].as_array().into_iter().flatten();
                state.items.extend(items.filter_map(|i| i.as_str().map(str::to_owned)));
            }
            "InventoryReleased" => state.items.clear(),
            _ => {}
        }
    }
}

export_aggregate!(Inventory);
