//! The product path against the pipeline alone, side by side in one run:
//! a lone `users.create` (with `welcome` dispatching `accounts.open`, each
//! waited for until settled) through `EngineHandle::execute` and through
//! `Runtime::pipeline().execute`; and many callers waiting at once (one task
//! per command, `execute` each) against `submit_all` + `run_until_idle` on
//! the same work.
//!
//! `cargo bench -p cascade --bench handle -- [--commands N] [--waiters N]`
//! (`--waiters` adds one more row, e.g. 1000000).

#[allow(dead_code)]
mod native;
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::{Duration, Instant};

use cascade::{Command, Engine, Options};

/// Per command, `pipeline().execute` each in turn.
fn lone_pipeline(dir: &Path, commands: usize) -> Duration {
    let mut runtime = workload::wasm(dir, Options::default());
    let started = Instant::now();
    for (command, _) in workload::users_create(commands) {
        assert_eq!(runtime.pipeline().execute(command).unwrap().events.len(), 2);
    }
    started.elapsed() / commands as u32
}

/// Per command, `EngineHandle::execute` each in turn from one task.
fn lone_handle(dir: &Path, commands: usize) -> Duration {
    drop(workload::wasm(dir, Options::default()));
    let engine = Engine::start(dir, Options::default(), Duration::from_secs(10)).unwrap();
    let handle = engine.handle();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        for (command, _) in workload::users_create(commands) {
            assert_eq!(handle.execute(command).await.unwrap().events.len(), 2);
        }
    });
    let elapsed = started.elapsed();
    engine.shutdown();
    elapsed / commands as u32
}

/// Events per second with `waiters` tasks each executing one command.
fn waiting(dir: &Path, waiters: usize) -> f64 {
    drop(workload::wasm(dir, Options::default()));
    let engine = Engine::start(dir, Options::default(), Duration::from_secs(10)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let commands: Vec<Command> = workload::users_create(waiters).into_iter().map(|(c, _)| c).collect();
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = commands
            .into_iter()
            .map(|command| {
                let handle = engine.handle();
                tokio::spawn(async move { handle.execute(command).await.unwrap().events.len() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 2);
        }
    });
    let elapsed = started.elapsed();
    engine.shutdown();
    (2 * waiters) as f64 / elapsed.as_secs_f64()
}

/// Events per second for the same work submitted at once and run to idle.
fn batched(dir: &Path, commands: usize) -> f64 {
    let mut runtime = workload::wasm(dir, Options::default());
    let started = Instant::now();
    runtime.pipeline().submit_all(workload::users_create(commands)).unwrap();
    runtime.pipeline().run_until_idle().unwrap();
    (2 * commands) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let commands = workload::flag("--commands", 5_000);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown processor".into());
    println!("processor: {cpu}");
    println!("lone command: {commands} x users.create + welcome + accounts.open, each waited for (WASM)");
    let shm = Path::new("/dev/shm");
    let mut places = vec![("disk", std::env::temp_dir())];
    if shm.is_dir() {
        places.push(("RAM disk", shm.to_owned()));
    }
    for (label, place) in &places {
        // Alternating, three rounds: the medians side by side.
        let (mut pipeline, mut handle) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            pipeline.push(lone_pipeline(tempfile::tempdir_in(place).unwrap().path(), commands));
            handle.push(lone_handle(tempfile::tempdir_in(place).unwrap().path(), commands));
        }
        pipeline.sort();
        handle.sort();
        let (p, h) = (pipeline[1], handle[1]);
        println!(
            "  {label:<8} pipeline {p:>9.2?}   handle {h:>9.2?} per command   handle/pipeline {:.2}",
            h.as_secs_f64() / p.as_secs_f64()
        );
    }
    let place = places.last().map(|(_, p)| p.clone()).unwrap();
    let mut sizes = vec![10_000, 100_000];
    if let Some(extra) = std::env::args()
        .position(|a| a == "--waiters")
        .map(|_| workload::flag("--waiters", 0))
    {
        sizes.push(extra);
    }
    println!(
        "many waiters ({}): one task per command, execute each, vs submit_all + run_until_idle",
        places.last().unwrap().0
    );
    for waiters in sizes {
        workload::reset_peak_rss();
        let handle = waiting(tempfile::tempdir_in(&place).unwrap().path(), waiters);
        let rss = workload::peak_rss_mib().unwrap_or(0.0);
        let batch = batched(tempfile::tempdir_in(&place).unwrap().path(), waiters);
        println!(
            "  {waiters:>8} waiters  handle {handle:>9.0} events/s   batched {batch:>9.0} events/s   ratio {:.2}   peak RSS {rss:.0} MiB",
            handle / batch
        );
    }
}
