//! Pipeline throughput: `users.create` for N users with `welcome` dispatching
//! `accounts.open` for each (2N events), durable group commit, once with the
//! WASM plugins from target/plugins and once with the same logic as native
//! Rust, in the same run. Prints both rates and their ratio.
//!
//! Also the peak RSS while submitting and while processing (Linux).
//!
//! Run with `scripts/bench.sh` (builds the plugins first), or
//! `cargo bench -p cascade --bench pipeline -- [--users N] [--submit-chunk N]`.

#[allow(dead_code)]
mod native;
mod workload;

// The same allocator as the `cascade` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use cascade::{EventLog, Options, Pipeline, Storage};

struct Run {
    label: &'static str,
    submit: Duration,
    process: Duration,
    events: usize,
    /// Peak RSS while submitting, then while processing, in MiB.
    rss: (f64, f64),
}

impl Run {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.process.as_secs_f64()
    }
}

fn measure<S: Storage>(label: &'static str, pipeline: &mut Pipeline<S>, users: usize, chunk: usize) -> Run {
    workload::reset_peak_rss();
    let started = Instant::now();
    // Queued in transactions of `chunk` commands, as callers would send them
    // (one transaction of a million keeps all its pages in memory); only the
    // commands of one chunk and a sample of ids are held, so the figures are
    // the pipeline's.
    let step = (users / 100).max(1);
    let mut sample = Vec::new();
    for start in (0..users).step_by(chunk.max(1)) {
        let ids = pipeline
            .submit_all(workload::users_create_range(start..(start + chunk).min(users)))
            .unwrap();
        sample.extend((start..).zip(ids).filter(|(i, _)| i % step == 0).map(|(_, id)| id));
    }
    let submit = started.elapsed();
    let submit_rss = workload::peak_rss_mib().unwrap_or(0.0);
    workload::reset_peak_rss();
    let started = Instant::now();
    pipeline.run_until_idle().unwrap();
    let process = started.elapsed();
    let process_rss = workload::peak_rss_mib().unwrap_or(0.0);
    // Verify the work, outside the timing: every cascade settled without failure.
    for id in &sample {
        let settled = pipeline.settled(id).unwrap().expect("settled");
        assert!(settled.is_ok(), "{:?}", settled.failures);
        assert_eq!(settled.events.len(), 2);
    }
    // Positions are gapless: the head is the number of events.
    let events = pipeline.store().read(|tx| tx.head()).unwrap() as usize;
    assert_eq!(events, 2 * users);
    Run {
        label,
        submit,
        process,
        events,
        rss: (submit_rss, process_rss),
    }
}

fn main() {
    let users = workload::flag("--users", 100_000);
    let rounds = workload::flag("--rounds", 3);
    let chunk = workload::flag("--submit-chunk", 10_000);
    let options = Options {
        batch_size: workload::flag("--batch", Options::default().batch_size),
        ..Options::default()
    };
    println!(
        "pipeline: {users} x users.create, welcome dispatches accounts.open -> {} events; \
         batch {} units per durable redb commit",
        2 * users,
        options.batch_size
    );
    // Alternate the variants so drift on a shared machine hits both; report medians.
    let (mut wasm_runs, mut native_runs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        wasm_runs.push(measure(
            "wasm",
            workload::wasm(dir.path(), options.clone()).pipeline(),
            users,
            chunk,
        ));
        let dir = tempfile::tempdir().unwrap();
        native_runs.push(measure(
            "native",
            &mut workload::native(dir.path(), options.clone()),
            users,
            chunk,
        ));
    }
    let wasm = median(wasm_runs);
    let native = median(native_runs);
    for run in [&wasm, &native] {
        println!(
            "  {:<7} process {:>8.2?}  {:>9.0} events/s   (median of {rounds}; submit {:?}); \
             peak RSS {:.0} MiB submitting, {:.0} MiB processing",
            run.label,
            run.process,
            run.events_per_second(),
            run.submit,
            run.rss.0,
            run.rss.1
        );
    }
    println!(
        "  ratio   native/wasm throughput = {:.2}",
        native.events_per_second() / wasm.events_per_second()
    );
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|r| r.process);
    runs.swap_remove(runs.len() / 2)
}
