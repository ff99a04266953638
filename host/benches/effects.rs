//! Effects, side by side in one run, through a live `Engine` (what `cascade
//! serve` runs), with a receiver on 127.0.0.1 in this process:
//!
//! - the pipeline (`users.create`, `welcome` dispatching `accounts.open`,
//!   executed by 256 concurrent callers) alone, and with `notifications`
//!   requesting one effect per user to an endpoint that answers after 1 s,
//!   with up to 1,000 of them in flight: users per second, each side;
//! - effects performed per second against an endpoint that answers at once,
//!   and p50 / p99 / max from an effect's request (the commit of the handler
//!   that made it) to its recorded outcome (`EffectCompleted`'s commit).
//!
//! `cargo bench -p cascade --bench effects -- [--users N]`

#[allow(dead_code)]
mod native;
#[allow(dead_code)]
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cascade::{Command, Engine, EngineHandle, ManifestAdditions, Options, Runtime, Swap};

/// A receiver answering 200 after `delay`; counts requests. It runs on a
/// runtime of its own, one task per connection, so a thousand waiting
/// requests cost it no thread each.
fn receiver(delay: Duration) -> (String, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, delay, counted.clone()));
            }
        });
    });
    (url, count)
}

async fn serve(stream: tokio::net::TcpStream, delay: Duration, count: Arc<AtomicU64>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut stream = tokio::io::BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        tokio::time::sleep(delay).await;
        count.fetch_add(1, Ordering::Relaxed);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

/// A data directory with users, accounts, welcome and (with `webhook`)
/// `notifications` calling it with up to `concurrency` effects in flight.
fn prepare(dir: &Path, webhook: Option<&str>, concurrency: usize) {
    let mut runtime = workload::wasm(dir, Options::default());
    if let Some(url) = webhook {
        let plugins = workload::plugins();
        let copy = dir.join("notifications.wasm");
        std::fs::copy(plugins.join("notifications.wasm"), &copy).unwrap();
        std::fs::write(
            copy.with_extension("toml"),
            format!("[effects]\nconcurrency = {concurrency}\ntimeout-ms = 60000\n"),
        )
        .unwrap();
        let swap = Swap {
            additions: ManifestAdditions {
                grants: vec![format!("http={url}")],
                config: [("webhook-url".to_owned(), format!("\"{url}/hook\""))].into(),
                ..Default::default()
            },
            ..Swap::default()
        };
        runtime.add_plugin_with(&copy, &swap).unwrap();
    }
    drop::<Runtime>(runtime);
}

/// Execute `users.create` for `range` with 256 callers at a time; seconds.
fn execute_all(rt: &tokio::runtime::Runtime, handle: &EngineHandle, range: std::ops::Range<usize>) -> f64 {
    let started = Instant::now();
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::new();
        for i in range {
            let (handle, gate) = (handle.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let args = format!(r#"{{"name":"user {i}"}}"#);
                let settled = handle
                    .execute(Command::new("users", &format!("u{i}"), "create", &args))
                    .await
                    .unwrap();
                assert!(settled.failures.is_empty(), "{:?}", settled.failures);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    started.elapsed().as_secs_f64()
}

/// Wait until the outbox is empty; seconds waited.
fn drain(rt: &tokio::runtime::Runtime, handle: &EngineHandle) -> f64 {
    let started = Instant::now();
    rt.block_on(async {
        loop {
            let (_, left) = handle.effects(None, 0, None).await.unwrap();
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    started.elapsed().as_secs_f64()
}

/// Milliseconds from each effect's request to its outcome: the requesting
/// event's commit (its position is in the key) to `EffectCompleted`'s.
fn latencies(handle: &EngineHandle) -> Vec<u64> {
    let log = handle.log();
    let head = log.head().unwrap();
    let mut times = std::collections::HashMap::new();
    let mut latencies = Vec::new();
    let mut from = 1;
    while from <= head {
        let chunk = log.read_log(from, 10_000).unwrap();
        let Some(last) = chunk.last() else { break };
        from = last.position + 1;
        for event in &chunk {
            times.insert(event.position, event.created_at);
            if event.name == cascade::EFFECT_COMPLETED {
                let outcome: cascade::EffectCompleted = serde_json::from_str(&event.payload).unwrap();
                let position: u64 = outcome.key.split('-').nth(1).unwrap().parse().unwrap();
                latencies.push(event.created_at.saturating_sub(times[&position]));
            }
        }
    }
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let users = workload::flag("--users", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("effects: {users} users.create per run, 256 concurrent callers, a live engine");

    // The pipeline alone, and beside 1,000 effects in flight to an endpoint
    // that answers after 1 s (requested by `notifications` for the first
    // 1,000 users, which is then removed: the measured users request none).
    let (slow, slow_count) = receiver(Duration::from_secs(1));
    let mut rates = Vec::new();
    let runs = [("alone", None), ("beside 1,000 in flight (1 s)", Some(slow.as_str()))];
    // Alternated, twice: the two sides see the same machine.
    for (label, webhook) in runs.iter().chain(runs.iter()).copied() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), webhook, 1000);
        let engine = Engine::start(dir.path(), Options::default(), Duration::from_secs(10)).unwrap();
        let handle = engine.handle();
        execute_all(&rt, &handle, 0..1000);
        if webhook.is_some() {
            rt.block_on(handle.remove_plugin("notifications")).unwrap();
        }
        let (_, in_flight) = rt.block_on(handle.effects(None, 0, None)).unwrap();
        let seconds = execute_all(&rt, &handle, 1000..1000 + users);
        let rate = users as f64 / seconds;
        rates.push(rate);
        println!(
            "  pipeline {label:<30} {rate:>8.0} users/s  ({in_flight} effects in the outbox at the start, {} answered by the end)",
            slow_count.load(Ordering::Relaxed)
        );
        drop(engine);
    }
    println!(
        "  beside effects in flight / alone: {:.2}, {:.2}",
        rates[1] / rates[0],
        rates[3] / rates[2]
    );
    let alone = (rates[0] + rates[2]) / 2.0;

    // One effect per user to an endpoint that answers at once: what an
    // effect costs the pipeline (its request stored, performed over
    // loopback, its outcome recorded and handled), effects per second, and
    // the time from request to recorded outcome.
    let (fast, fast_count) = receiver(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), Some(&fast), 64);
    let engine = Engine::start(dir.path(), Options::default(), Duration::from_secs(10)).unwrap();
    let handle = engine.handle();
    let started = Instant::now();
    let executed = execute_all(&rt, &handle, 0..users);
    drain(&rt, &handle);
    let seconds = started.elapsed().as_secs_f64();
    let sent = fast_count.load(Ordering::Relaxed);
    let latencies = latencies(&handle);
    assert_eq!(latencies.len(), users, "every outcome recorded once");
    println!(
        "  pipeline with one effect per user           {:>8.0} users/s  ({:.2} of alone)",
        users as f64 / executed,
        users as f64 / executed / alone
    );
    println!(
        "  with the commands: {sent} effects performed and recorded in {seconds:.2} s = {:.0} effects/s",
        users as f64 / seconds
    );
    println!(
        "  request to recorded outcome: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    drop(engine);

    // The outbox alone: `users` effects stored by a runtime that performs
    // none (as a command-line process does), then performed by a live engine.
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), Some(&fast), 64);
    {
        let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
        for start in (0..users).step_by(1000) {
            let pipeline = runtime.pipeline();
            pipeline
                .submit_all(workload::users_create_range(start..(start + 1000).min(users)))
                .unwrap();
            pipeline.run_until_idle().unwrap();
        }
    }
    let before = fast_count.load(Ordering::Relaxed);
    let started = Instant::now();
    let engine = Engine::start(dir.path(), Options::default(), Duration::from_secs(10)).unwrap();
    drain(&rt, &engine.handle());
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  the outbox alone: {} effects performed and recorded in {seconds:.2} s = {:.0} effects/s, 64 in flight",
        fast_count.load(Ordering::Relaxed) - before,
        users as f64 / seconds
    );
}
