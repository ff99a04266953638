//! Errors as the HTTP API answers them: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}` whose `code` is stable.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use cascade::QueryError;
use cascade::{CommandFailure, Error, PluginError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code, e.g. `unknown_aggregate`.
    pub code: &'static str,
    /// One line for people.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        let (status, code) = match err.root() {
            Error::Command(command) => match &command.reason {
                CommandFailure::UnknownAggregate { .. } => (StatusCode::NOT_FOUND, "unknown_aggregate"),
                CommandFailure::UnknownCommand { .. } => (StatusCode::NOT_FOUND, "unknown_command"),
                CommandFailure::InvalidArgs(_) => (StatusCode::BAD_REQUEST, "invalid_args"),
                CommandFailure::InvalidStreamId(_) => (StatusCode::BAD_REQUEST, "invalid_stream_id"),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "command_rejected"),
            },
            Error::NoTestClock => (StatusCode::CONFLICT, "no_test_clock"),
            Error::Plugin(plugin) => match plugin {
                PluginError::UnknownListener { .. } | PluginError::UnknownPlugin { .. } => {
                    (StatusCode::NOT_FOUND, "unknown_plugin")
                }
                PluginError::UnknownParked { .. } => (StatusCode::NOT_FOUND, "unknown_parked"),
                PluginError::UnknownEffect { .. } => (StatusCode::NOT_FOUND, "unknown_effect"),
                PluginError::EffectNotParked { .. } => (StatusCode::CONFLICT, "effect_not_parked"),
                PluginError::Stateless { .. } => (StatusCode::CONFLICT, "stateless"),
                PluginError::BetweenPhases { .. } => (StatusCode::CONFLICT, "between_phases"),
                PluginError::NoOlderVersion { .. } => (StatusCode::CONFLICT, "no_older_version"),
                PluginError::GrantsWidened { .. } => (StatusCode::CONFLICT, "grants_widened"),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
            },
            Error::Concurrency(_) => (StatusCode::CONFLICT, "concurrency"),
            Error::UnknownCascade { .. } => (StatusCode::NOT_FOUND, "unknown_cascade"),
            Error::EngineStopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        let (status, code) = match &err {
            QueryError::UnknownCollection { .. } => (StatusCode::NOT_FOUND, "unknown_collection"),
            QueryError::NotIndexed { .. } | QueryError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            QueryError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, err.to_string())
    }
}

impl From<cascade::StoreError> for ApiError {
    fn from(err: cascade::StoreError) -> Self {
        Error::from(err).into()
    }
}
