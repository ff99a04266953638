//! The sandbox's costs: the per-call cost of epoch interruption (refreshing
//! `user-counter` over N events with it on and off, one guest call per
//! event), and the time to recover from a trap (a fresh store and instance,
//! plus restoring state for a stateful plugin) against a normal call.
//!
//! `cargo bench -p cascade --bench sandbox -- [--events N]` (needs the
//! fixtures: `scripts/bench.sh` builds them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade::{Backend, Command, Envelope, Limits, Manifest, NewEvent, OnError, Options, Runtime};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A runtime with `events` `UserCreated` events in its log and `user-counter` added.
fn counter_runtime(dir: &Path, plugins: &Path, events: u64, epoch_interruption: bool) -> Runtime {
    let options = Options {
        epoch_interruption,
        ..Options::default()
    };
    let mut runtime = Runtime::open(dir, options).unwrap();
    runtime.add_plugin(&plugins.join("users.wasm")).unwrap();
    let envelope = Envelope {
        metadata: "{}".into(),
        causation_id: "c0".into(),
        correlation_id: "c0".into(),
        ..Envelope::default()
    };
    runtime
        .pipeline()
        .store()
        .write(|tx| {
            for i in 0..events {
                let created = NewEvent {
                    name: "UserCreated".into(),
                    payload: r#"{"name":"someone"}"#.into(),
                };
                tx.append("users", &format!("u{i}"), 0, &[created], &envelope, None)?
                    .unwrap();
            }
            let head = tx.head()?;
            tx.set_pipeline_position(head)
        })
        .unwrap();
    runtime.add_plugin(&plugins.join("user-counter.wasm")).unwrap();
    runtime
}

/// Time of one refresh of `user-counter`, per event.
fn refresh_per_call(runtime: &mut Runtime, events: u64) -> Duration {
    let report = runtime
        .pipeline()
        .refresh("user-counter", None, &mut |_, _| {})
        .unwrap();
    report.elapsed / events as u32
}

/// Median duration of the traced `on-user-created` call of `plugin` for a
/// user named `name`, over `rounds` commands.
fn traced_call(runtime: &mut Runtime, plugin: &str, name: &str, rounds: usize) -> Duration {
    let pipeline = runtime.pipeline();
    pipeline.set_trace(true);
    let mut times: Vec<Duration> = (0..rounds)
        .map(|i| {
            let args = format!(r#"{{"name":"{name}"}}"#);
            let settled = pipeline
                .execute(Command::new("users", &format!("{plugin}-{name}-{i}"), "create", &args))
                .unwrap();
            settled.trace.iter().find(|t| t.plugin == plugin).unwrap().duration
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn main() {
    let mut events: u64 = 200_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            events = args.next().and_then(|n| n.parse().ok()).expect("--events N");
        }
    }
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("fixture-hostile.wasm").exists(),
        "build the plugins and fixtures first: scripts/bench.sh"
    );
    let (on_dir, off_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut with_epochs = counter_runtime(on_dir.path(), &plugins, events, true);
    let mut without = counter_runtime(off_dir.path(), &plugins, events, false);
    // Alternate the variants round by round so drift on a shared machine
    // hits both; medians.
    let rounds = 7;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        on.push(refresh_per_call(&mut with_epochs, events));
        off.push(refresh_per_call(&mut without, events));
    }
    on.sort();
    off.sort();
    let (on, off) = (on[rounds / 2], off[rounds / 2]);
    println!("sandbox: per-event refresh of user-counter over {events} events (one guest call each)");
    println!("  epoch interruption on   {on:>9.2?} per event");
    println!("  epoch interruption off  {off:>9.2?} per event");
    println!(
        "  overhead                {:>8.1}%",
        (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
    );

    let dir = tempfile::tempdir().unwrap();
    let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
    runtime.add_plugin(&plugins.join("users.wasm")).unwrap();
    // One attempt: measure one recovery, not the retry policy's backoff.
    let once = Manifest {
        on_error: OnError {
            attempts: 1,
            ..OnError::default()
        },
        ..Manifest::default()
    };
    for plugin in ["fixture-hostile", "fixture-fragile-counter"] {
        let bytes = std::fs::read(plugins.join(format!("{plugin}.wasm"))).unwrap();
        runtime.add_plugin_bytes(plugin, plugin, &bytes, &once).unwrap();
    }
    let rounds = 51;
    println!("trap recovery (median of {rounds} calls, as traced by the host):");
    let calm = traced_call(&mut runtime, "fixture-hostile", "calm", rounds);
    let trap = traced_call(&mut runtime, "fixture-hostile", "panic", rounds);
    let stateful_calm = traced_call(&mut runtime, "fixture-fragile-counter", "calm", rounds);
    let stateful_trap = traced_call(&mut runtime, "fixture-fragile-counter", "panic", rounds);
    println!("  stateless call {calm:>9.2?}   trap + fresh store and instance {trap:>9.2?}");
    println!("  stateful call  {stateful_calm:>9.2?}   trap + fresh instance + load-state {stateful_trap:>9.2?}");

    // A guest that sleeps 10 s at the start of its call (a blocking WASI
    // poll): a sleep past the budget is refused when asked for, and the
    // guest interrupted at its next epoch check.
    let rounds = 9;
    let budget = Limits::default().time_budget;
    let sleep = traced_call(&mut runtime, "fixture-hostile", "sleep", rounds);
    println!("sleeping guest (10 s asked, budget {budget:?}, median of {rounds}): call stopped after {sleep:.2?}");
}
