//! `GET /plugins`, `PUT /plugins/{name}` (hot load), versions and rollback.
//!
//! A deploy compiles the component on a blocking thread, then validates and
//! swaps it in on the writer between two batches; a refused deploy leaves
//! the old version running.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use cascade::{Manifest, ManifestAdditions, StartFrom};
use cascade::{Swap, SwapState};

pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let statuses = state.engine.statuses().await?;
    Ok(Json(serde_json::to_value(statuses).expect("statuses serialize")))
}

/// `GET /graph`: the flow graph of the registered plugins.
pub(super) async fn graph(State(state): State<AppState>) -> Result<Json<cascade::FlowGraph>, ApiError> {
    let statuses = state.engine.statuses().await?;
    Ok(Json(cascade::flow_graph(&statuses)))
}

#[derive(Debug, Deserialize)]
pub(super) struct DeployQuery {
    /// `carry` (default), `refresh` or `reset`.
    state: Option<SwapState>,
    /// Recorded with the version (default `http`).
    by: Option<String>,
    /// Allow a redeploy that gets more than the active version.
    #[serde(rename = "acceptGrants", default)]
    accept_grants: bool,
}

/// The component comes as the raw body (`application/wasm`; the active
/// version's manifest is kept) or as `multipart/form-data` with parts
/// `component` and, optionally, `manifest` (TOML).
pub(super) async fn deploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (bytes, manifest, additions) = if multipart {
        let form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        read_form(form).await?
    } else {
        let bytes = Bytes::from_request(request, &()).await.map_err(|e| {
            ApiError::new(
                e.status(),
                "bad_request",
                format!("cannot read the component: {}", e.body_text()),
            )
        })?;
        (bytes.to_vec(), None, Default::default())
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request has no component: send the .wasm as the body, or as the `component` part of a form",
        ));
    }
    let manifest = match manifest {
        Some(manifest) => manifest,
        None => (state.engine.active_manifest(&name).await?, StartFrom::Now),
    };
    let swap = Swap {
        by: query.by.unwrap_or_else(|| "http".into()),
        state: query.state.unwrap_or_default(),
        additions,
        accept_grants: query.accept_grants,
    };
    let source = format!("PUT /plugins/{name}");
    let deployed = state.engine.deploy(&name, &source, bytes, manifest, swap).await?;
    let record = &deployed.record;
    eprintln!(
        "cascade serve: deployed {} `{}` v{} ({}) after position {} in a {:?} swap",
        record.kind,
        record.name,
        deployed.version,
        crate::commands::short_hash(&record.hash),
        deployed.position,
        deployed.held
    );
    Ok(Json(json!({
        "plugin": record,
        "version": deployed.version,
        "position": deployed.position,
        "swapMicros": deployed.held.as_micros() as u64,
    })))
}

/// A deploy's form: the component, its manifest, and what the operator adds
/// to the manifest (`additions`: grants, config, secrets, as JSON).
type Form = (Vec<u8>, Option<(Manifest, StartFrom)>, ManifestAdditions);

async fn read_form(mut form: Multipart) -> Result<Form, ApiError> {
    let mut component = Vec::new();
    let mut manifest = None;
    let mut additions = ManifestAdditions::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        match field.name() {
            Some("component") => {
                component = field
                    .bytes()
                    .await
                    .map_err(|e| ApiError::bad_request(e.body_text()))?
                    .to_vec();
            }
            Some("manifest") => {
                let text = field.text().await.map_err(|e| ApiError::bad_request(e.body_text()))?;
                let (parsed, placement) = Manifest::parse_with_placement(&text).map_err(|message| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_manifest",
                        format!("the manifest does not parse: {message}"),
                    )
                })?;
                manifest = Some((parsed, placement.start_from));
            }
            Some("additions") => {
                let text = field.text().await.map_err(|e| ApiError::bad_request(e.body_text()))?;
                // The error names where, not what: the text may hold secrets.
                additions = serde_json::from_str(&text).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the `additions` part must be JSON {{\"grants\": [..], \"config\": {{..}}, \"secrets\": {{..}}}} \
                         of strings (line {}, column {})",
                        e.line(),
                        e.column()
                    ))
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part `{}`; send `component` and optionally `manifest` and `additions`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    Ok((component, manifest, additions))
}

pub(super) async fn versions(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let (versions, active) = state.engine.versions(&name).await?;
    Ok(Json(json!({ "active": active, "versions": versions })))
}

pub(super) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
) -> Result<Json<Value>, ApiError> {
    let swap = Swap {
        by: query.by.unwrap_or_else(|| "http".into()),
        state: query.state.unwrap_or_default(),
        ..Swap::default()
    };
    let version = state.engine.rollback(&name, swap).await?;
    Ok(Json(json!({ "active": version.version, "version": version })))
}
