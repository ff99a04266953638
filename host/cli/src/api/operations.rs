//! Operator routes: process-manager state and refresh, read models, parked
//! events, and `POST /cli`, where the `cascade` command line runs its
//! commands while this server holds the data directory.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::args::Action;
use cascade::state_json;

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// Page after this id.
    after: Option<String>,
    /// Items per page (default 100, at most 10,000).
    limit: Option<usize>,
}

/// A page's size: 100 unless asked, at most 10,000.
pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(100) {
        0 => Err(ApiError::bad_request("`limit` must be at least 1")),
        limit => Ok(limit.min(10_000)),
    }
}

/// `GET /plugins/{name}/instances?after=ID&limit=N`: one page of instances.
pub(super) async fn instances(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit)?;
    let page = state.engine.instances(&name, query.after, limit).await?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Json(json!({ "instances": page, "next": next })))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct InstanceQuery {
    /// The instance (`pm_state`: default `singleton`; `pm_refresh`: all).
    instance: Option<String>,
}

/// `GET /pm/{name}/state?instance=ID`: one instance's state (null when it
/// does not exist: never started, or completed) and pending timers.
pub(super) async fn pm_state(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<InstanceQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = query.instance.unwrap_or_else(|| cascade::SINGLETON.to_owned());
    let found = state.engine.instance(&name, &id).await?;
    let (record, timers) = found.unwrap_or_default();
    Ok(Json(json!({
        "instance": id,
        "state": record.state.as_deref().map(state_json),
        "lastPosition": record.last_position,
        "timers": timers.iter().map(timer_json).collect::<Vec<_>>(),
    })))
}

pub(super) async fn pm_refresh(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<InstanceQuery>,
) -> Result<Json<Value>, ApiError> {
    let report = state.engine.refresh(&name, query.instance, |_, _| {}).await?;
    Ok(Json(report.to_json()))
}

#[derive(Debug, Deserialize)]
pub(super) struct LimitQuery {
    /// Items (default 100, at most 10,000).
    limit: Option<usize>,
}

/// `GET /timers?limit=N`: the first pending timers in due order, and how
/// many are pending in all.
pub(super) async fn timers(
    State(state): State<AppState>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit)?;
    let (timers, pending) = state.engine.timers(None, limit).await?;
    Ok(Json(json!({
        "timers": timers.iter().map(timer_json).collect::<Vec<_>>(),
        "pending": pending,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct Advance {
    millis: u64,
}

/// `POST /clock/advance {"millis": N}`: move the test clock, fire what is due.
pub(super) async fn advance_clock(
    State(state): State<AppState>,
    Json(advance): Json<Advance>,
) -> Result<Json<Value>, ApiError> {
    let now = state.engine.advance_clock(advance.millis).await?;
    Ok(Json(json!({ "now": now })))
}

/// A pending timer as JSON: its payload as a value.
pub(crate) fn timer_json(timer: &cascade::Timer) -> Value {
    json!({
        "plugin": timer.plugin,
        "instance": timer.instance,
        "name": timer.name,
        "due": timer.due,
        "payload": serde_json::from_str::<Value>(&timer.payload).unwrap_or(Value::Null),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ReadQuery {
    /// `FIELD=VALUE` on an indexed field (VALUE is JSON, or a bare string).
    #[serde(rename = "where")]
    filter: Option<String>,
    /// Page after this id.
    after: Option<String>,
    /// Documents per page (default 100, at most 10,000).
    limit: Option<usize>,
}

pub(super) async fn read_collection(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    // The read view: the last commit, read beside the writer.
    let read_models = state.engine.read_models().clone();
    let (documents, next) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        match &query.filter {
            Some(filter) => {
                let (field, value) = filter.split_once('=').ok_or_else(|| {
                    ApiError::bad_request(format!("where `{filter}` must be FIELD=VALUE, e.g. groupId=g1"))
                })?;
                let value = match serde_json::from_str::<Value>(value) {
                    Ok(_) => value.to_owned(),
                    Err(_) => Value::String(value.to_owned()).to_string(),
                };
                Ok((read_models.find(&collection, field, &value)?, None))
            }
            None => Ok(read_models.list(&collection, query.after.as_deref(), limit)?),
        }
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the read failed: {e}"),
        )
    })??;
    let documents: Vec<Value> = documents
        .into_iter()
        .map(|(id, body)| json!({ "id": id, "document": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)) }))
        .collect();
    Ok(Json(json!({ "documents": documents, "next": next })))
}

pub(super) async fn read_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (collection_name, id_name) = (collection.clone(), id.clone());
    let body = state.engine.read_models().get(&collection, &id)?;
    match body {
        Some(body) => Ok(Json(serde_json::from_str(&body).unwrap_or(Value::String(body)))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_document",
            format!("collection `{collection_name}` has no document `{id_name}`"),
        )),
    }
}

pub(super) async fn parked(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let parked = state.engine.parked().await?;
    Ok(Json(parked.iter().map(|(id, p)| p.to_json(*id)).collect()))
}

pub(super) async fn retry_parked(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    let again = state.engine.retry_parked(id).await?;
    Ok(Json(match again {
        None => json!({ "id": id, "status": "succeeded" }),
        Some(again) => json!({ "id": id, "status": "parked-again", "parkedAs": again }),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct SkipQuery {
    by: Option<String>,
}

pub(super) async fn skip_parked(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(query): Query<SkipQuery>,
) -> Result<Json<Value>, ApiError> {
    let by = query.by.unwrap_or_else(|| "http".into());
    let skipped = state.engine.skip_parked(id, &by).await?;
    Ok(Json(serde_json::to_value(skipped).expect("skipped records serialize")))
}

/// A CLI command to run here.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CliRequest {
    /// The parsed subcommand.
    pub action: Action,
    /// The client's working directory, for relative paths.
    pub cwd: std::path::PathBuf,
}

/// What the CLI prints and exits with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CliAnswer {
    /// The exit status.
    pub status: u8,
    /// Standard output.
    pub stdout: String,
    /// The error line (after `cascade: `), when the status says so.
    pub error: Option<String>,
}

pub(super) async fn cli(
    State(state): State<AppState>,
    Json(request): Json<CliRequest>,
) -> Result<Json<CliAnswer>, ApiError> {
    let mut stdout = Vec::new();
    let result = crate::commands::execute(request.action, &state.engine, &request.cwd, &mut stdout).await;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    Ok(Json(match result {
        Ok(status) => CliAnswer {
            status,
            stdout,
            error: None,
        },
        Err(err) => CliAnswer {
            status: crate::exit::exit_status(&err),
            stdout,
            error: Some(format!("{err:#}")),
        },
    }))
}
