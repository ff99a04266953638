//! `cascade serve`: the engine's handle on HTTP (axum).
//!
//! The server owns one [`Engine`]; every route is a thin translation between
//! JSON and an [`EngineHandle`] call. Routes are listed in `docs/http.md`.
//! While it runs, the server records its address in `server.json` in the
//! data directory, which is how the CLI finds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use cascade::Options;
use cascade::{Engine, EngineHandle, SERVER_FILE, ServerInfo};

mod commands;
mod effects;
mod error;
mod events;
mod metrics;
mod operations;
pub(crate) use effects::{effect_json, page as effects_page};
pub(crate) use operations::timer_json;
mod plugins;
mod watch_dir;

pub use error::ApiError;
pub(crate) use operations::{CliAnswer, CliRequest};

/// `cascade serve` options.
#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (see `server.json`).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Deploy every `.wasm` (with its `.toml` manifest) that appears or
    /// changes in this folder.
    #[arg(long)]
    pub watch: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on every route but
    /// `/healthz`; the token is this file's first line.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body, in MiB (components are uploaded whole).
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Record every handler call (plugin, handler, outcome, duration), so
    /// every cascade's answer and the console's story of it show them.
    #[arg(long)]
    pub trace: bool,
}

/// Shared by every route.
#[derive(Clone)]
pub(crate) struct AppState {
    engine: EngineHandle,
    token: Option<Arc<str>>,
    /// Turns true when the server starts shutting down; live tails end.
    shutdown: watch::Receiver<bool>,
    /// The request body limit, in bytes.
    max_body: usize,
}

/// Run the server until SIGINT or SIGTERM: open `dir` on a writer thread
/// (waiting up to `lock_timeout` for another process to let go of it), listen,
/// and on a signal stop accepting requests, finish the current batch, answer
/// waiting callers and return.
///
/// # Errors
///
/// The data directory cannot be opened, the address cannot be bound, the
/// token file cannot be read.
pub fn serve(dir: &Path, options: Options, lock_timeout: Duration, args: ServeArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read token file `{}`", file.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(!token.is_empty(), "token file `{}` is empty", file.display());
            Some(Arc::from(token))
        }
        None => None,
    };
    let on_postgres = options.store.is_some();
    let engine = Engine::start(dir, options, lock_timeout).with_context(|| match on_postgres {
        true => "cannot open the PostgreSQL store (--store)".to_owned(),
        false => format!("cannot open data directory `{}`", dir.display()),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cascade-http")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(dir, &engine, token, args));
    // Stop accepting first (done above), then let the writer finish its batch.
    engine.shutdown();
    result
}

async fn run(dir: &Path, engine: &Engine, token: Option<Arc<str>>, args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let address = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let state = AppState {
        engine: engine.handle(),
        token,
        shutdown,
        max_body: args.max_body_mib.saturating_mul(1 << 20),
    };
    if let Some(folder) = &args.watch {
        tokio::spawn(watch_dir::watch(state.clone(), folder.clone()));
    }
    let info = ServerInfo {
        address,
        pid: std::process::id(),
        token_file: args
            .token_file
            .as_ref()
            .map(|f| std::path::absolute(f).unwrap_or(f.clone())),
    };
    let server_file = dir.join(SERVER_FILE);
    std::fs::write(&server_file, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("cannot write `{}`", server_file.display()))?;
    eprintln!(
        "cascade serve: listening on http://{address} (data `{}`)",
        dir.display()
    );
    let app = router(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal().await;
            eprintln!("cascade serve: shutting down");
            let _ = stop.send(true);
        })
        .await;
    let _ = std::fs::remove_file(&server_file);
    served.context("the HTTP server failed")
}

/// SIGINT or SIGTERM.
async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/commands", post(commands::submit))
        .route("/cascades/{correlation_id}", get(commands::cascade))
        .route("/events", get(events::page))
        .route("/events/live", get(events::live))
        .route("/plugins", get(plugins::list))
        .route("/graph", get(plugins::graph))
        .route("/plugins/{name}", put(plugins::deploy))
        .route("/plugins/{name}/versions", get(plugins::versions))
        .route("/plugins/{name}/rollback", post(plugins::rollback))
        .route("/plugins/{name}/instances", get(operations::instances))
        .route("/pm/{name}/state", get(operations::pm_state))
        .route("/pm/{name}/refresh", post(operations::pm_refresh))
        .route("/timers", get(operations::timers))
        .route("/clock/advance", post(operations::advance_clock))
        .route("/read/{collection}", get(operations::read_collection))
        .route("/read/{collection}/{id}", get(operations::read_document))
        .route("/effects", get(effects::list))
        .route("/effects/{key}/retry", post(effects::retry))
        .route("/effects/{key}/skip", post(effects::skip))
        .route("/parked", get(operations::parked))
        .route("/parked/{id}/retry", post(operations::retry_parked))
        .route("/parked/{id}/skip", post(operations::skip_parked))
        .route("/cli", post(operations::cli))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(healthz))
        .route("/", get(console))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        // Refuses an announced length over the limit before reading a byte;
        // the extractors' own limit is the same.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::map_response(json_payload_too_large))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The console: one page, embedded in the binary, that reads everything it
/// shows from this API. It fetches nothing from anywhere else (its content
/// security policy says so) and holds no data, so it needs no token; the
/// API calls it makes do.
async fn console() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src 'self' data:",
            ),
        ],
        include_str!("console.html"),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route `{} {}`; see docs/http.md",
            request.method(),
            request.uri().path()
        ),
    )
}

/// With a token configured, every route but `/healthz` and the console's
/// page needs it.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    if matches!(request.uri().path(), "/healthz" | "/") {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    // Read (and drop) the body first: a client still sending it when the
    // connection closes would see a reset instead of this answer.
    let _ = axum::body::to_bytes(request.into_body(), state.max_body).await;
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this server requires `Authorization: Bearer <token>` (the token in its --token-file)",
    )
    .into_response()
}

/// Compare without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// axum's body limit answers 413 in plain text; the API answers in JSON.
async fn json_payload_too_large(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return response;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than this server accepts; raise it with `cascade serve --max-body-mib`",
    )
    .into_response()
}
