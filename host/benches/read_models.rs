//! Read models: projection throughput (replaying the log into the `projects`
//! projection, WASM against native Rust) and the cost of one read-model
//! query from inside a guest (a fixture runs 1,000 `get`s, then 1,000
//! `find`s) against the same queries made natively.
//!
//! `cargo bench -p cascade --bench read_models -- [--projects N]`

#[allow(dead_code)]
mod native;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cascade::{Command, LimitOverrides, Manifest, Options, Runtime};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const QUERIES: u32 = 1000;

fn main() {
    let mut projects: usize = 50_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--projects" {
            projects = args.next().and_then(|n| n.parse().ok()).expect("--projects N");
        }
    }
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("fixture-query-loop.wasm").exists(),
        "build the plugins and fixtures first: scripts/bench.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
    for plugin in ["project", "projects"] {
        runtime.add_plugin(&plugins.join(format!("{plugin}.wasm"))).unwrap();
    }
    // 1,000 queries in one call can pass the default 100 ms budget on a
    // slow stretch of a shared machine; this measures queries, not budgets.
    let patient = Manifest {
        capabilities: cascade::Capabilities {
            read: vec!["projects".into()],
            ..Default::default()
        },
        limits: LimitOverrides {
            time_budget_ms: Some(10_000),
            ..LimitOverrides::default()
        },
        ..Manifest::default()
    };
    let bytes = std::fs::read(plugins.join("fixture-query-loop.wasm")).unwrap();
    runtime
        .add_plugin_bytes("fixture-query-loop", "fixture-query-loop", &bytes, &patient)
        .unwrap();
    let pipeline = runtime.pipeline();
    let native = native::Projects::new("projects-native", pipeline.read_models().clone());
    pipeline.register_listener(Box::new(native)).unwrap();
    let commands: Vec<_> = (0..projects)
        .map(|i| {
            let args = format!(r#"{{"name":"project {i}","groupId":"g{}"}}"#, i % 1000);
            Command::new("project", &format!("p{i}"), "create", &args)
        })
        .collect();
    pipeline.submit_all(commands).unwrap();
    pipeline.run_until_idle().unwrap();

    println!("read models: {projects} projects in 1,000 groups, collection indexed by groupId");
    // Both projections replay the same log from empty collections.
    let reports = pipeline.rebuild(&mut |_, _, _| {}).unwrap();
    let rate = |events: u64, d: Duration| events as f64 / d.as_secs_f64();
    let mut rates = Vec::new();
    for report in &reports {
        let r = rate(report.events, report.elapsed);
        rates.push(r);
        println!(
            "  projection {:<16} {:>8} events in {:>9.2?}  {:>9.0} events/s",
            report.listener, report.events, report.elapsed, r
        );
    }
    println!("  ratio      native/wasm throughput = {:.2}", rates[1] / rates[0]);

    // Queries from inside the guest: the trace times each handler call.
    pipeline.set_trace(true);
    let settled = pipeline
        .execute(Command::new("project", "p7", "update", r#"{"name":"renamed"}"#))
        .unwrap();
    assert!(settled.is_ok(), "{:?}", settled.failures);
    let per_query = |handler: &str| {
        let entry = settled
            .trace
            .iter()
            .find(|t| t.plugin == "fixture-query-loop" && t.handler == handler)
            .expect("traced");
        entry.duration / QUERIES
    };
    let (guest_get, guest_find) = (per_query("on-project-updated"), per_query("after-project-updated"));

    // The same queries, natively.
    let read_models = pipeline.read_models();
    let started = Instant::now();
    for _ in 0..QUERIES {
        let doc = read_models.get("projects", "p7").unwrap().unwrap();
        let _: Value = serde_json::from_str(&doc).unwrap();
    }
    let native_get = started.elapsed() / QUERIES;
    let started = Instant::now();
    for _ in 0..QUERIES {
        for (_, doc) in read_models.find("projects", "groupId", r#""g7""#).unwrap() {
            let _: Value = serde_json::from_str(&doc).unwrap();
        }
    }
    let native_find = started.elapsed() / QUERIES;
    let found = read_models.find("projects", "groupId", r#""g7""#).unwrap().len();
    println!("  query get by id               guest {guest_get:>9.2?}   native {native_get:>9.2?}");
    println!("  query find by index ({found} docs)  guest {guest_find:>9.2?}   native {native_find:>9.2?}");
}
