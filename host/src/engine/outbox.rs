//! The outbox's workers: a thread of their own with a tokio runtime that
//! performs effects off the writer, within a total limit and each plugin's
//! `[effects] concurrency`, each attempt under its timeout, retried with
//! backoff; every attempt carries the effect's key as `Idempotency-Key`.
//! The outcome goes back to the writer, which records it in a batch: until
//! then the effect stays in the outbox, and a restart performs it again
//! with the same key (at least once).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use super::Request;
use crate::effect::{Attempted, EffectOutcome, IDEMPOTENCY_KEY, KEPT_RESPONSE_HEADERS};
use crate::records::Effect;

/// Effects in flight at once, every plugin together.
pub const MAX_EFFECTS_IN_FLIGHT: usize = 1024;
/// Effects of one plugin in flight at once, at most: a quarter of the total,
/// so that no plugin can hold every slot.
pub const MAX_PLUGIN_CONCURRENCY: usize = MAX_EFFECTS_IN_FLIGHT / 4;
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Upper bounds, in seconds, of the buckets of [`PluginEffects::latency`].
pub const EFFECT_LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, f64::INFINITY];

/// One plugin's effects since the engine started.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginEffects {
    /// Effects that got a final answer.
    pub performed: u64,
    /// Effects that failed every attempt (parked).
    pub failed: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Outcomes per bucket of time from request to outcome
    /// ([`EFFECT_LATENCY_BUCKETS`]), not cumulative.
    pub latency: [u64; EFFECT_LATENCY_BUCKETS.len()],
    /// Total time from request to outcome, in seconds.
    pub latency_seconds: f64,
}

/// What the workers did, per plugin, read by `/metrics`.
#[derive(Debug, Default)]
pub struct EffectStats {
    plugins: Mutex<BTreeMap<String, PluginEffects>>,
}

impl EffectStats {
    /// Every plugin's figures, by name.
    pub fn snapshot(&self) -> BTreeMap<String, PluginEffects> {
        self.plugins.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, plugin: &str, outcome: &EffectOutcome) {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let stats = plugins.entry(plugin.to_owned()).or_default();
        match outcome.attempted {
            Attempted::Answered { .. } => stats.performed += 1,
            Attempted::Failed(_) => stats.failed += 1,
        }
        stats.attempts += u64::from(outcome.attempts);
        let seconds = outcome.latency_ms as f64 / 1000.0;
        stats.latency_seconds += seconds;
        let bucket = EFFECT_LATENCY_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(0);
        stats.latency[bucket] += 1;
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The workers; dropping this stops them (what is in flight stays in the
/// outbox, for the next start).
pub(super) struct Workers {
    work: Option<tokio::sync::mpsc::UnboundedSender<Effect>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Start the workers; outcomes go to the writer through `report`.
    pub(super) fn start(report: mpsc::Sender<Request>, stats: Arc<EffectStats>) -> std::io::Result<Workers> {
        let (work, mut inbox) = tokio::sync::mpsc::unbounded_channel::<Effect>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new()
            .name("cascade-effects".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let client = client();
                    let total = Arc::new(Semaphore::new(MAX_EFFECTS_IN_FLIGHT));
                    let mut per_plugin: HashMap<String, Arc<Semaphore>> = HashMap::new();
                    while let Some(effect) = inbox.recv().await {
                        let plugin = per_plugin
                            .entry(effect.plugin.clone())
                            .or_insert_with(|| {
                                let slots = effect.policy.concurrency.clamp(1, MAX_PLUGIN_CONCURRENCY);
                                Arc::new(Semaphore::new(slots))
                            })
                            .clone();
                        let (client, total, report, stats) =
                            (client.clone(), total.clone(), report.clone(), stats.clone());
                        tokio::spawn(async move {
                            let outcome = perform(&client, &effect, (&plugin, &total)).await;
                            stats.record(&effect.plugin, &outcome);
                            let _ = report.send(Request::Outcome(outcome));
                        });
                    }
                });
                // What is in flight (a DNS lookup included) is abandoned, not
                // waited for: it stays in the outbox for the next start.
                runtime.shutdown_background();
            })?;
        Ok(Workers {
            work: Some(work),
            thread: Some(thread),
        })
    }

    /// Hand the workers effects to perform.
    pub(super) fn perform(&self, effects: Vec<Effect>) {
        if let Some(work) = &self.work {
            for effect in effects {
                let _ = work.send(effect);
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// Attempt `effect` until it gets a final answer or its attempts are used up;
/// an attempt holds a slot of its plugin's and one of the total (`slots`), a
/// pause between two attempts holds none.
async fn perform(client: &HttpClient, effect: &Effect, slots: (&Semaphore, &Semaphore)) -> EffectOutcome {
    let policy = effect.policy;
    let mut attempts = 0;
    let attempted = loop {
        attempts += 1;
        let timeout = Duration::from_millis(policy.timeout_ms);
        let (Ok(plugin_slot), Ok(total_slot)) = (slots.0.acquire().await, slots.1.acquire().await) else {
            break Attempted::Failed("the host is stopping".into());
        };
        let failure = match tokio::time::timeout(timeout, attempt(client, effect, policy.max_response_bytes)).await {
            Ok(Ok((status, headers, body))) if !retried(status) => break Attempted::Answered { status, headers, body },
            Ok(Ok((status, ..))) => format!("answered {status}"),
            Ok(Err(failure)) => failure,
            Err(_) => format!("no answer within {} ms", policy.timeout_ms),
        };
        if attempts >= policy.attempts {
            break Attempted::Failed(format!("{failure} (attempt {attempts} of {})", policy.attempts));
        }
        drop((plugin_slot, total_slot));
        let pause = Duration::from_millis(policy.backoff_ms).saturating_mul(1 << (attempts - 1).min(16));
        tokio::time::sleep(pause.min(MAX_BACKOFF)).await;
    };
    EffectOutcome {
        key: effect.key.clone(),
        attempted,
        attempts,
        latency_ms: crate::clock::now_millis().saturating_sub(effect.requested_at),
    }
}

/// Statuses that are tried again: the request may succeed later.
fn retried(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// One attempt's answer: status, kept headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// One attempt: the answer, with at most `cap` bytes of its body.
async fn attempt(client: &HttpClient, effect: &Effect, cap: usize) -> Result<Answer, String> {
    let request = &effect.request;
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.as_str())
        .header(IDEMPOTENCY_KEY, effect.key.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let built = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|e| format!("the request is malformed: {e}"))?;
    let response = client.request(built).await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let headers = KEPT_RESPONSE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let mut body = Vec::new();
    let mut incoming = response.into_body();
    while body.len() < cap {
        match incoming.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    body.extend_from_slice(&data[..data.len().min(cap - body.len())]);
                }
            }
            Some(Err(e)) => return Err(format!("the answer's body broke off: {e}")),
            None => break,
        }
    }
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP client error with its causes, in one line.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::text::one_line(&text)
}
