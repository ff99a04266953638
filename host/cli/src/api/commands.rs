//! `POST /commands` and `GET /cascades/{correlation_id}`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use cascade::Command;
use cascade::{Settled, Submission};

/// The body of `POST /commands`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandBody {
    stream_type: String,
    stream_id: String,
    command: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    expect_version: Option<u64>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// This cascade's budget of events and commands.
    #[serde(default)]
    cascade_budget: Option<usize>,
    /// Include every handler call in the answer.
    #[serde(default)]
    trace: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct WaitQuery {
    /// `false`: answer 202 with the correlation id at once.
    wait: Option<bool>,
    /// Seconds to wait for the cascade to settle (default 30).
    timeout: Option<f64>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn submit(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "invalid_json"
            },
            format!("the request body is not a command: {}", rejection.body_text()),
        )
    })?;
    let args = match body.args {
        None => "{}".to_owned(),
        Some(args) => args.to_string(),
    };
    let mut command = Command::new(&body.stream_type, &body.stream_id, &body.command, &args);
    command.actor_id = body.actor;
    let submission = Submission {
        command,
        expected_version: body.expect_version,
        idempotency_key: body.idempotency_key,
        cascade_budget: body.cascade_budget,
        trace: body.trace,
    };
    if query.wait == Some(false) {
        return Ok(pending(&state.engine.submit(submission).await?));
    }
    // Queued and awaited in one request to the writer.
    match state.engine.execute_within(submission, timeout(query.timeout)?).await? {
        Ok(settled) => Ok(settled_response(settled, body.trace)),
        Err(correlation_id) => Ok(pending(&correlation_id)),
    }
}

pub(super) async fn cascade(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    // Settled (or unknown, which the engine answers with 404): answer now.
    if state.engine.is_settled(&correlation_id)? {
        return answer(&state, &correlation_id, None, true).await;
    }
    match query.timeout {
        None => Ok(pending(&correlation_id)),
        Some(_) => answer(&state, &correlation_id, Some(timeout(query.timeout)?), true).await,
    }
}

/// The settled answer, within `wait` when given (else 202 pending).
async fn answer(
    state: &AppState,
    correlation_id: &str,
    wait: Option<Duration>,
    trace: bool,
) -> Result<Response, ApiError> {
    let settled = state.engine.settled(correlation_id);
    let settled = match wait {
        None => settled.await?,
        Some(wait) => match tokio::time::timeout(wait, settled).await {
            Ok(settled) => settled?,
            Err(_) => return Ok(pending(correlation_id)),
        },
    };
    Ok(settled_response(settled, trace))
}

fn settled_response(mut settled: Settled, trace: bool) -> Response {
    if !trace {
        settled.trace.clear();
    }
    let mut body = settled.to_json();
    body["status"] = json!("settled");
    (StatusCode::OK, Json(body)).into_response()
}

fn pending(correlation_id: &str) -> Response {
    let body = json!({ "correlationId": correlation_id, "status": "pending" });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn timeout(seconds: Option<f64>) -> Result<Duration, ApiError> {
    match seconds {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) => Duration::try_from_secs_f64(s)
            .map_err(|_| ApiError::bad_request(format!("timeout `{s}` is not a number of seconds"))),
    }
}
