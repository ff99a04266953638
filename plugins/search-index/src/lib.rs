//! Process manager `search-index`: after a project is renamed, read the
//! project back from the read model (already updated by the `projects`
//! projection in phase 1) and log the document it would index.

use cascade_sdk::{Context, Event, HandlerResult, info, process_manager, read_models};
use serde_json::Value;

struct SearchIndex;

#[process_manager]
impl SearchIndex {
    fn after_project_updated(event: Event, _ctx: Context) -> HandlerResult {
        let Some(doc) = read_models::get::<Value>("projects", &event.stream_id)? else {
            return Err(format!("project {} is missing from the read model", event.stream_id).into());
        };
        info(&format!("index {doc}"));
        Ok(())
    }
}
