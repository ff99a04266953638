//! The same handler in Rust, Python and JavaScript, in one run: `user-counter`
//! (counting `UserCreated` and `UserUpdated` in its state) refreshed over N
//! events written straight to the log, alternating the languages over
//! several rounds; per-call cost and ratio to Rust. Also each build's
//! compile time when added, its component size and its precompiled size,
//! its instance memory, and live pipeline throughput with `welcome` in each
//! language.
//!
//! Needs the guest builds in target/plugins (`scripts/build-plugins.sh`).
//! `cargo bench -p cascade --bench guests -- [--events N] [--users N] [--rounds N]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cascade::{Backend, Command, Envelope, NewEvent, Options, Runtime};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LANGS: [(&str, &str); 3] = [("rust", ""), ("python", "-py"), ("javascript", "-js")];

fn plugin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{name}.wasm"));
    assert!(
        path.exists(),
        "build the plugins first: scripts/build-plugins.sh ({})",
        path.display()
    );
    path
}

/// `count` events over 10k users, written straight to the log and marked as
/// processed, as after a long live run.
fn fill(runtime: &mut Runtime, count: u64) {
    let envelope = Envelope {
        metadata: "{}".into(),
        causation_id: "c0".into(),
        correlation_id: "c0".into(),
        ..Envelope::default()
    };
    let mut written = 0;
    while written < count {
        runtime
            .pipeline()
            .store()
            .write(|tx| {
                for _ in 0..50_000.min(count - written) {
                    let id = format!("u{}", written % 10_000);
                    let version = tx.stream("users", &id)?.version;
                    let (name, payload) = match version {
                        0 => ("UserCreated", r#"{"name":"someone"}"#.to_owned()),
                        v => ("UserUpdated", format!(r#"{{"age":{}}}"#, v % 100)),
                    };
                    let event = NewEvent {
                        name: name.into(),
                        payload,
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

fn main() {
    let (mut events, mut users, mut rounds) = (200_000u64, 5_000usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value: Option<u64> = args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--events" => events = value.expect("--events N"),
            "--users" => users = value.expect("--users N") as usize,
            "--rounds" => rounds = value.expect("--rounds N") as usize,
            _ => {}
        }
    }

    println!("guests: user-counter refreshed over {events} events, welcome live over {users} users");
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
    runtime.add_plugin(&plugin("users")).unwrap();
    println!("  language    add (compile)  component   precompiled");
    for (lang, suffix) in LANGS {
        let file = plugin(&format!("user-counter{suffix}"));
        let started = Instant::now();
        runtime.add_plugin(&file).unwrap();
        let compile = started.elapsed();
        let size = std::fs::metadata(&file).unwrap().len();
        let artifact = cascade::Sandbox::new(true)
            .unwrap()
            .compile(&std::fs::read(&file).unwrap())
            .unwrap()
            .serialize()
            .unwrap()
            .len();
        println!(
            "  {lang:<10}  {compile:>12.2?}  {:>7.1} MB  {:>8.1} MB",
            size as f64 / 1e6,
            artifact as f64 / 1e6
        );
    }
    fill(&mut runtime, events);

    // Refresh: alternate the languages so drift hits all; medians.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); LANGS.len()];
    for _ in 0..rounds {
        for (i, (_, suffix)) in LANGS.iter().enumerate() {
            let name = format!("user-counter{suffix}");
            let report = runtime.pipeline().refresh(&name, None, &mut |_, _| {}).unwrap();
            assert_eq!(report.calls, events);
            times[i].push(report.elapsed);
        }
    }
    let per_call = |i: usize| {
        let mut t = times[i].clone();
        t.sort();
        t[t.len() / 2].as_secs_f64() * 1e6 / events as f64
    };
    println!("  refresh per call (median of {rounds}):");
    for (i, (lang, _)) in LANGS.iter().enumerate() {
        println!(
            "    {lang:<10} {:>7.2} µs   x{:.1} of Rust",
            per_call(i),
            per_call(i) / per_call(0)
        );
    }
    // What each instance holds after its refreshes (memories and tables).
    let stats = runtime.pipeline().listener_stats();
    println!("  instance memory after refresh:");
    for (lang, suffix) in LANGS {
        let name = format!("user-counter{suffix}");
        let stat = stats.iter().find(|s| s.name == name).unwrap();
        let bytes = stat.memory_bytes.expect("a live instance");
        println!("    {lang:<10} {:>7.1} MiB", bytes as f64 / f64::from(1 << 20));
    }

    // Live: each language's welcome alone, users.create -> accounts.open.
    println!("  live pipeline with welcome (2 events, 2 commands per user):");
    let mut rust_rate = 0.0;
    for (lang, suffix) in LANGS {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
        for name in ["users", "accounts", &format!("welcome{suffix}")] {
            runtime.add_plugin(&plugin(name)).unwrap();
        }
        let commands: Vec<_> = (0..users)
            .map(|i| Command::new("users", &format!("u{i}"), "create", r#"{"name":"x"}"#))
            .collect();
        let pipeline = runtime.pipeline();
        pipeline.submit_all(commands).unwrap();
        let started = Instant::now();
        pipeline.run_until_idle().unwrap();
        let rate = (2 * users) as f64 / started.elapsed().as_secs_f64();
        if lang == "rust" {
            rust_rate = rate;
        }
        println!("    {lang:<10} {rate:>9.0} events/s   x{:.2} of Rust", rate / rust_rate);
    }
}
