//! Refresh speed: 1M events (`UserCreated` and `UserUpdated` over 10k
//! users) written straight to the log, then replayed into `user-counter`,
//! as WASM and as native Rust in the same run. Prints events/s and the ratio.
//!
//! `cargo bench -p cascade --bench refresh -- [--events N] [--rounds N]`

#[allow(dead_code)]
mod native;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade::{Backend, Envelope, EventLog, NewEvent, Options, Pipeline, Progress, Runtime, Store, StoreError};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Write `count` events to the log in large transactions, and mark them as
/// processed by the pipeline, as after a long live run.
fn fill(store: &impl Backend, count: u64) {
    let envelope = Envelope {
        metadata: "{}".into(),
        causation_id: "c0".into(),
        correlation_id: "c0".into(),
        ..Envelope::default()
    };
    let users = 10_000;
    let mut written = 0;
    while written < count {
        store
            .write(|tx| {
                for _ in 0..50_000.min(count - written) {
                    let id = format!("u{}", written % users);
                    let version = tx.stream("users", &id)?.version;
                    let event = if version == 0 {
                        NewEvent {
                            name: "UserCreated".into(),
                            payload: r#"{"name":"someone"}"#.into(),
                        }
                    } else {
                        NewEvent {
                            name: "UserUpdated".into(),
                            payload: format!(r#"{{"age":{}}}"#, version % 100),
                        }
                    };
                    tx.append("users", &id, version, &[event], &envelope, None)?.unwrap();
                    written += 1;
                }
                let head = tx.head()?;
                tx.set_pipeline_position(head)
            })
            .unwrap();
    }
}

fn refresh<S: cascade::Storage>(pipeline: &mut Pipeline<S>, events: u64) -> Duration {
    let report = pipeline.refresh("user-counter", None, &mut |_, _| {}).unwrap();
    assert_eq!(report.events, events);
    let state = pipeline
        .instance_state("user-counter", cascade::SINGLETON)
        .unwrap()
        .and_then(|i| i.state)
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["usersCreated"], events);
    report.elapsed
}

fn wasm(dir: &Path, plugins: &Path, events: u64) -> Runtime {
    let mut runtime = Runtime::open(dir, Options::default()).unwrap();
    runtime.add_plugin(&plugins.join("users.wasm")).unwrap();
    fill(runtime.pipeline().store(), events);
    runtime.add_plugin(&plugins.join("user-counter.wasm")).unwrap();
    runtime
}

fn native(dir: &Path, events: u64) -> Pipeline {
    let store = Store::open(&dir.join(cascade::DATA_FILE)).unwrap();
    fill(&store, events);
    let mut pipeline = Pipeline::new(store, Options::default());
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline
        .register_listener(Box::new(native::UserCounter::new()))
        .unwrap();
    pipeline
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), StoreError> {
    let mut events: u64 = 1_000_000;
    let mut rounds: usize = 7;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match arg.as_str() {
            "--events" => events = value.and_then(|n| n.parse().ok()).expect("--events N"),
            "--rounds" => rounds = value.and_then(|n| n.parse().ok()).expect("--rounds N"),
            _ => {}
        }
    }
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("user-counter.wasm").exists(),
        "build the plugins first: scripts/build-plugins.sh"
    );
    println!("refresh: {events} events replayed into user-counter (median of {rounds} alternating rounds)");
    let (wasm_dir, native_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut wasm_runtime = wasm(wasm_dir.path(), &plugins, events);
    let mut native_pipeline = native(native_dir.path(), events);
    // Alternate the variants round by round so drift on a shared machine
    // hits both; the log is written once per variant.
    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        wasm_times.push(refresh(wasm_runtime.pipeline(), events));
        native_times.push(refresh(&mut native_pipeline, events));
    }
    let (wasm, native) = (median(wasm_times), median(native_times));
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("  wasm    {wasm:>9.2?}  {:>10.0} events/s", rate(wasm));
    println!("  native  {native:>9.2?}  {:>10.0} events/s", rate(native));
    println!("  ratio   native/wasm throughput = {:.2}", rate(native) / rate(wasm));
    Ok(())
}
