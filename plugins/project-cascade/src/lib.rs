//! Process manager `project-cascade`, the mission's first example: when a
//! group is deleted, find all projects belonging to it in the `projects` read
//! model and delete each one.

use cascade_sdk::{Context, Event, HandlerResult, dispatch, process_manager, read_models};
use serde_json::{Value, json};

struct ProjectCascade;

#[process_manager]
impl ProjectCascade {
    fn on_group_deleted(event: Event, _ctx: Context) -> HandlerResult {
        let projects = read_models::find::<Value>("projects", "groupId", &event.stream_id)?;
        for (project_id, _) in projects {
            dispatch("project", &project_id, "delete", json!({}))?;
        }
        Ok(())
    }
}
