//! Projection `projects`: the `projects` collection, one document per live
//! project, indexed by `groupId` so a group's projects can be found.

use cascade_sdk::{Collection, Context, Event, HandlerResult, collection, delete, projection, put, read_models};
use serde::{Deserialize, Serialize};

struct Projects;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectDoc {
    id: String,
    name: String,
    group_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectCreated {
    name: String,
    group_id: String,
}

#[derive(Deserialize)]
struct ProjectUpdated {
    name: String,
}

#[projection]
impl Projects {
    fn collections() -> Vec<Collection> {
        let indexes: &[&str] = if cfg!(feature = "by-name") {
            &["groupId", "name"]
        } else {
            &["groupId"]
        };
        vec![collection("projects", indexes)]
    }

    fn on_project_created(event: Event, _ctx: Context) -> HandlerResult {
        let created: ProjectCreated = event.payload()?;
        let doc = ProjectDoc {
            id: event.stream_id.clone(),
            name: created.name,
            group_id: created.group_id,
        };
        put("projects", &event.stream_id, doc)
    }

    fn on_project_updated(event: Event, _ctx: Context) -> HandlerResult {
        let updated: ProjectUpdated = event.payload()?;
        let Some(mut doc) = read_models::get::<ProjectDoc>("projects", &event.stream_id)? else {
            return Err(format!("project {} is not in the read model", event.stream_id).into());
        };
        doc.name = updated.name;
        put("projects", &event.stream_id, doc)
    }

    fn on_project_deleted(event: Event, _ctx: Context) -> HandlerResult {
        delete("projects", &event.stream_id)
    }
}
