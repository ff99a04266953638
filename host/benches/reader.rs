//! A reader beside the writer: the WASM pipeline of `benches/pipeline.rs`
//! (N `users.create`, `welcome` dispatching `accounts.open`, durable group
//! commit) alone, and with another thread reading the whole log over and
//! over as `cascade events` does (read transactions, 1,024 events a page,
//! checksums checked), alternating, medians. How much does the reader slow
//! the writer?
//!
//! `cargo bench -p cascade --bench reader -- [--users N] [--rounds N]`

#[allow(dead_code)]
mod native;
#[allow(dead_code)]
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cascade::Options;

/// Time to process `users` commands; with `reader`, another thread reads
/// the log meanwhile. Returns the time and the events the reader read.
fn run(dir: &Path, users: usize, reader: bool) -> (Duration, u64) {
    let mut runtime = workload::wasm(dir, Options::default());
    let pipeline = runtime.pipeline();
    pipeline.submit_all(workload::users_create(users)).unwrap();
    let log = pipeline.store().reader();
    let (stop, read) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let thread = reader.then(|| {
        let (stop, read) = (stop.clone(), read.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut from = 1;
                loop {
                    let page = log.read_log(from, 1024).unwrap();
                    let Some(last) = page.last() else { break };
                    from = last.position + 1;
                    read.fetch_add(page.len() as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let started = Instant::now();
    pipeline.run_until_idle().unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(thread) = thread {
        thread.join().unwrap();
    }
    (elapsed, read.load(Ordering::Relaxed))
}

fn main() {
    let users = workload::flag("--users", 50_000);
    let rounds = workload::flag("--rounds", 3);
    let (mut alone, mut beside, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        alone.push(run(tempfile::tempdir().unwrap().path(), users, false).0);
        let (time, read) = run(tempfile::tempdir().unwrap().path(), users, true);
        beside.push(time);
        reads.push(read);
    }
    alone.sort();
    beside.sort();
    reads.sort();
    let (alone, beside) = (alone[rounds / 2], beside[rounds / 2]);
    let events = (2 * users) as f64;
    println!(
        "reader beside the writer: {users} x users.create -> {} events (median of {rounds})",
        2 * users
    );
    println!(
        "  writer alone          {alone:>9.2?}  {:>7.0} events/s",
        events / alone.as_secs_f64()
    );
    println!(
        "  with a reader         {beside:>9.2?}  {:>7.0} events/s  (the reader read {} events meanwhile)",
        events / beside.as_secs_f64(),
        reads[rounds / 2]
    );
    println!(
        "  slowdown              {:>8.1}%",
        (beside.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0
    );
}
