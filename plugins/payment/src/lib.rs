//! The `payment` aggregate, keyed by order id: `succeed {amount}` →
//! `PaymentSucceeded {amount}`.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde_json::{Value, json};

struct Payment;

impl Aggregate for Payment {
    type State = ();
    const NAME: &'static str = "payment";
    const COMMANDS: &'static [&'static str] = &["succeed"];

    fn events() -> Vec<EventSchema> {
        vec![EventSchema {
            name: "PaymentSucceeded",
            schema: json!({
                "type": "object",
                "properties": {"amount": {"type": "number", "exclusiveMinimum": 0}},
                "required": ["amount"],
                "additionalProperties": false
            }),
        }]
    }

    fn handle(_: &(), _order: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "succeed" => Ok(vec![new_event("PaymentSucceeded", json!({"amount": args["amount"]}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(_: &mut (), _event: &str, _payload: Value) {}
}

export_aggregate!(Payment);
