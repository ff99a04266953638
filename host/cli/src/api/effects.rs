//! The effects outbox over HTTP: list what waits or is parked, retry or
//! skip a parked effect. Request headers and bodies are never shown: they
//! may carry a plugin's secrets.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(super) struct EffectsQuery {
    /// `pending` or `failed` (parked); both when absent.
    status: Option<String>,
    /// Page after this key.
    after: Option<String>,
    /// Effects per page (default 100, at most 10,000).
    limit: Option<usize>,
}

/// `GET /effects?status=pending|failed&after=KEY&limit=N`: one page of the
/// outbox in key order, and how many effects it holds in all.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<EffectsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::operations::page_limit(query.limit)?;
    let failed = match query.status.as_deref() {
        None => None,
        Some("pending") => Some(false),
        Some("failed") => Some(true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`status` must be `pending` or `failed`, not `{other}`"
            )));
        }
    };
    let (page, next, total) = page(&state.engine, query.after, limit, failed).await?;
    Ok(Json(json!({
        "effects": page.iter().map(effect_json).collect::<Vec<_>>(),
        "next": next,
        "total": total,
    })))
}

/// One page of effects, `failed` = only parked (true), only not parked
/// (false) or all; the key to continue after, and the outbox's size.
pub(crate) async fn page(
    engine: &cascade::EngineHandle,
    after: Option<String>,
    limit: usize,
    failed: Option<bool>,
) -> Result<(Vec<cascade::Effect>, Option<String>, u64), cascade::Error> {
    let (effects, total) = engine.effects(after, limit, failed).await?;
    let next = (effects.len() == limit)
        .then(|| effects.last().map(|e| e.key.clone()))
        .flatten();
    Ok((effects, next, total))
}

/// `POST /effects/{key}/retry`: perform a parked effect again.
pub(super) async fn retry(State(state): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    let effect = state.engine.retry_effect(&key).await?;
    Ok(Json(effect_json(&effect)))
}

#[derive(Debug, Deserialize)]
pub(super) struct SkipQuery {
    by: Option<String>,
}

/// `POST /effects/{key}/skip?by=NAME`: give up a parked effect; its plugin
/// gets the failure as the outcome.
pub(super) async fn skip(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<SkipQuery>,
) -> Result<Json<Value>, ApiError> {
    let by = query.by.unwrap_or_else(|| "http".into());
    let effect = state.engine.skip_effect(&key, &by).await?;
    Ok(Json(effect_json(&effect)))
}

/// An effect as JSON: what it asks and where it is, without header values
/// or body.
pub(crate) fn effect_json(effect: &cascade::Effect) -> Value {
    let parked = effect.parked.as_ref();
    json!({
        "key": effect.key,
        "plugin": effect.plugin,
        "name": effect.name,
        "instance": effect.instance,
        "method": effect.request.method,
        "url": cascade::shown_url(&effect.request.url),
        "headers": effect.request.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "bodyBytes": effect.request.body.len(),
        "correlationId": effect.correlation_id,
        "position": effect.position,
        "requestedAt": effect.requested_at,
        "status": if parked.is_some() { "failed" } else { "pending" },
        "error": parked.map(|p| &p.error),
        "attempts": parked.map(|p| p.attempts),
        "parkedAt": parked.map(|p| p.parked_at),
    })
}
