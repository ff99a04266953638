//! `GET /events` (paged) and `GET /events/live` (server-sent events).
//!
//! The live tail uses the position as the SSE event id, so a consumer that
//! reconnects with `Last-Event-ID` resumes right after the last event it saw:
//! nothing is missed and nothing is seen twice. It reads committed events
//! only, through read transactions, and wakes on each commit.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use cascade::Event;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;
/// Events read per read transaction by the live tail.
const LIVE_CHUNK: usize = 512;
/// Events one filtered page reads at most: past it the page ends early,
/// with `next` where the scan stopped, so a request never reads without bound.
const MAX_SCAN: usize = 100_000;

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// First position (default 1).
    from: Option<u64>,
    /// Only this stream, `TYPE:ID`.
    stream: Option<String>,
    /// Events per page (default 100, at most 10,000).
    limit: Option<usize>,
    /// Only events of this name.
    name: Option<String>,
    /// Only events of this cascade.
    correlation: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let from = query.from.unwrap_or(1).max(1);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let log = state.engine.log().clone();
    let PageQuery {
        stream,
        name,
        correlation,
        ..
    } = query;
    let wanted = move |e: &Event| {
        name.as_ref().is_none_or(|n| &e.name == n) && correlation.as_ref().is_none_or(|c| &e.correlation_id == c)
    };
    let (events, next) = tokio::task::spawn_blocking(move || -> Result<(Vec<Event>, Option<u64>), ApiError> {
        let mut events = match &stream {
            Some(stream) => {
                let (stream_type, stream_id) = stream.split_once(':').ok_or_else(|| {
                    ApiError::bad_request(format!("stream `{stream}` must be TYPE:ID, e.g. users:u1"))
                })?;
                let mut events = log.read_stream(stream_type, stream_id)?;
                events.retain(|e| e.position >= from && wanted(e));
                events.truncate(limit + 1);
                events
            }
            None => {
                let (events, stopped_at) = scan(&log, from, limit + 1, &wanted)?;
                if let Some(stopped_at) = stopped_at {
                    return Ok((events, Some(stopped_at)));
                }
                events
            }
        };
        let next = (events.len() > limit).then(|| events[limit].position);
        events.truncate(limit);
        Ok((events, next))
    })
    .await
    .map_err(|e| ApiError::bad_request(e.to_string()))??;
    let events: Vec<Value> = events.iter().map(Event::to_json).collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// Up to `want` events from `from` that are `wanted`, reading at most
/// [`MAX_SCAN`]; the position where the scan stopped when it stopped there
/// before finding them all.
fn scan(
    log: &cascade::LogReader,
    from: u64,
    want: usize,
    wanted: &impl Fn(&Event) -> bool,
) -> Result<(Vec<Event>, Option<u64>), ApiError> {
    let (mut found, mut position, mut scanned) = (Vec::new(), from, 0);
    while found.len() < want {
        if scanned >= MAX_SCAN {
            return Ok((found, Some(position)));
        }
        // A page without filters is one read; a filtered one reads on by chunks.
        let size = if scanned == 0 { want } else { want.max(LIVE_CHUNK) };
        let chunk = log.read_log(position, size)?;
        let Some(last) = chunk.last() else { break };
        position = last.position + 1;
        scanned += chunk.len();
        found.extend(chunk.into_iter().filter(|e| wanted(e)).take(want - found.len()));
    }
    Ok((found, None))
}

#[derive(Debug, Deserialize)]
pub(super) struct LiveQuery {
    /// First position to send (default: the next event appended).
    from: Option<u64>,
}

pub(super) async fn live(
    State(state): State<AppState>,
    Query(query): Query<LiveQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Last-Event-ID `{v}` is not a position")))
        })
        .transpose()?;
    let head = state.engine.head();
    let from = match (resume, query.from) {
        // The largest position resumes past every event there will be.
        (Some(last), _) => last.saturating_add(1),
        (None, Some(from)) => from.max(1),
        (None, None) => *head.borrow() + 1,
    };
    let tail = Tail {
        log: state.engine.log().clone(),
        head,
        shutdown: state.shutdown.clone(),
        next: from,
        buffered: std::collections::VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next_event().await?;
        let sse = SseEvent::default()
            .id(event.position.to_string())
            .event("event")
            .data(event.to_json().to_string());
        Some((Ok(sse), tail))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A consumer's place in the log.
struct Tail {
    log: cascade::LogReader,
    head: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    next: u64,
    buffered: std::collections::VecDeque<Event>,
}

impl Tail {
    /// The next event, waiting for it to be committed; `None` ends the
    /// stream (shutdown or a storage error).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.next = event.position + 1;
                return Some(event);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            // Mark the head seen before reading, so a commit in between wakes us.
            let head = *self.head.borrow_and_update();
            if head >= self.next {
                let (log, from) = (self.log.clone(), self.next);
                let chunk = tokio::task::spawn_blocking(move || log.read_log(from, LIVE_CHUNK))
                    .await
                    .ok()?
                    .ok()?;
                if !chunk.is_empty() {
                    self.buffered.extend(chunk);
                    continue;
                }
            }
            tokio::select! {
                changed = self.head.changed() => changed.ok()?,
                _ = self.shutdown.changed() => return None,
            }
        }
    }
}
