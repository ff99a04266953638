//! Pipeline throughput: `users.create` for N users with `welcome` dispatching
//! `accounts.open` for each (2N events), durable group commit, once with the
//! WASM plugins from target/plugins and once with the same logic as native
//! Rust, in the same run. Prints both rates and their ratio.
//!
//! Run with `scripts/bench.sh` (builds the plugins first), or
//! `cargo bench -p cascade --bench pipeline -- [--users N]`.

#[allow(dead_code)]
mod native;
mod workload;

// The same allocator as the `cascade` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use cascade::{Options, Pipeline};

struct Run {
    label: &'static str,
    submit: Duration,
    process: Duration,
    events: usize,
}

impl Run {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.process.as_secs_f64()
    }
}

fn measure(label: &'static str, pipeline: &mut Pipeline, users: usize) -> Run {
    let started = Instant::now();
    let ids = pipeline.submit_all(workload::users_create(users)).unwrap();
    let submit = started.elapsed();
    let started = Instant::now();
    pipeline.run_until_idle().unwrap();
    let process = started.elapsed();
    // Verify the work, outside the timing: every cascade settled without failure.
    for id in ids.iter().step_by((users / 100).max(1)) {
        let settled = pipeline.settled(id).unwrap().expect("settled");
        assert!(settled.is_ok(), "{:?}", settled.failures);
        assert_eq!(settled.events.len(), 2);
    }
    let events = pipeline.store().read_log(1, usize::MAX).unwrap().len();
    assert_eq!(events, 2 * users);
    Run {
        label,
        submit,
        process,
        events,
    }
}

fn main() {
    let users = workload::flag("--users", 100_000);
    let rounds = workload::flag("--rounds", 3);
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
        ));
        let dir = tempfile::tempdir().unwrap();
        native_runs.push(measure(
            "native",
            &mut workload::native(dir.path(), options.clone()),
            users,
        ));
    }
    let wasm = median(wasm_runs);
    let native = median(native_runs);
    for run in [&wasm, &native] {
        println!(
            "  {:<7} process {:>8.2?}  {:>9.0} events/s   (median of {rounds}; submit {:?})",
            run.label,
            run.process,
            run.events_per_second(),
            run.submit
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
