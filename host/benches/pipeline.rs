//! Pipeline throughput: `users.create` for N users with `welcome` dispatching
//! `accounts.open` for each (2N events), durable group commit, once with the
//! WASM plugins from target/plugins and once with the same logic as native
//! Rust, in the same run. Prints both rates and their ratio.
//!
//! Run with `scripts/bench.sh` (builds the plugins first), or
//! `cargo bench -p cascade --bench pipeline -- [--users N]`.

#[allow(dead_code)]
mod native;

// The same allocator as the `cascade` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cascade::{Command, Options, Pipeline, Runtime, Store};

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

fn commands(users: usize) -> Vec<(Command, Option<u64>)> {
    (0..users)
        .map(|i| {
            let args = format!(r#"{{"name":"user {i}"}}"#);
            (Command::new("users", &format!("u{i}"), "create", &args), None)
        })
        .collect()
}

fn measure(label: &'static str, pipeline: &mut Pipeline, users: usize) -> Run {
    let started = Instant::now();
    let ids = pipeline.submit_all(commands(users)).unwrap();
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

fn wasm(dir: &Path, plugins: &Path, users: usize, options: Options) -> Run {
    let mut runtime = Runtime::open(dir, options).unwrap();
    for name in ["users", "accounts", "welcome"] {
        runtime.add_plugin(&plugins.join(format!("{name}.wasm"))).unwrap();
    }
    measure("wasm", runtime.pipeline(), users)
}

fn native(dir: &Path, users: usize, options: Options) -> Run {
    let store = Store::open(&dir.join(cascade::DATA_FILE)).unwrap();
    let mut pipeline = Pipeline::new(store, options);
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(native::Accounts)).unwrap();
    pipeline.register_listener(Box::new(native::Welcome::new())).unwrap();
    measure("native", &mut pipeline, users)
}

fn main() {
    let mut users = 100_000;
    let mut rounds = 3;
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--users" => users = value().expect("--users N"),
            "--batch" => options.batch_size = value().expect("--batch N"),
            "--rounds" => rounds = value().expect("--rounds N"),
            _ => {}
        }
    }
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("welcome.wasm").exists(),
        "build the plugins first: scripts/build-plugins.sh"
    );
    println!(
        "pipeline: {users} x users.create, welcome dispatches accounts.open -> {} events; \
         batch {} units per durable redb commit",
        2 * users,
        options.batch_size
    );
    // Alternate the variants so drift on a shared machine hits both; report medians.
    let (mut wasm_runs, mut native_runs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        wasm_runs.push(wasm(
            tempfile::tempdir().unwrap().path(),
            &plugins,
            users,
            options.clone(),
        ));
        native_runs.push(native(tempfile::tempdir().unwrap().path(), users, options.clone()));
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
