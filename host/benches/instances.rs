//! Instances and timers, side by side in one run:
//!
//! - the per-order cost of `order-fulfillment` (one order is a
//!   `payment.succeed` and an `inventory.reserve`, each executed until
//!   settled; the order ships and its instance completes) with 1k and with
//!   `--instances` (default 1M) other live instances, and this process's RSS
//!   after each;
//! - opening a data directory with no timer and with `--timers` (default 1M)
//!   pending ones: time and RSS; then firing them all (each a `TimerFired`
//!   event handled by `payment-deadline`, whose release command is refused:
//!   no reservation) on the test clock: timers per second;
//! - lateness of 2,000 timers falling due over 4 s on the wall clock while
//!   callers keep the engine busy with `users.create`: p50, p99, max.
//!
//! Seeded instances and timers are written to the store directly, in large
//! transactions: the figures are of the running host, not of the seeding.
//!
//! `cargo bench -p cascade --bench instances -- [--instances N] [--timers N] [--orders N]`

#[allow(dead_code)]
mod native;
#[allow(dead_code)]
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::{Duration, Instant};

use cascade::store::Backend;
use cascade::{Command, Engine, InstanceRecord, Options, Runtime, StoreError, Timer};

const SEED_CHUNK: usize = 100_000;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn runtime(dir: &Path, names: &[&str]) -> Runtime {
    let plugins = workload::plugins();
    let mut runtime = Runtime::open(dir, Options::default()).unwrap();
    for name in names {
        runtime.add_plugin(&plugins.join(format!("{name}.wasm"))).unwrap();
    }
    runtime
}

/// `count` live instances of `plugin`, seeded straight into the store.
fn seed_instances(runtime: &mut Runtime, plugin: &str, count: usize, state: &[u8]) {
    let record = InstanceRecord {
        state: Some(state.to_vec()),
        last_position: 1,
    };
    for start in (0..count).step_by(SEED_CHUNK) {
        runtime
            .pipeline()
            .store()
            .write(|tx| {
                for i in start..(start + SEED_CHUNK).min(count) {
                    tx.put_instance(plugin, &format!("seed{i:07}"), &record)?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}

/// Microseconds per order for `orders` orders, each shipped.
fn per_order(runtime: &mut Runtime, orders: usize, tag: &str) -> f64 {
    let started = Instant::now();
    for i in 0..orders {
        let id = format!("{tag}{i}");
        let paid = runtime
            .pipeline()
            .execute(Command::new("payment", &id, "succeed", r#"{"amount":10}"#))
            .unwrap();
        assert!(paid.is_ok(), "{:?}", paid.failures);
        let reserved = runtime
            .pipeline()
            .execute(Command::new("inventory", &id, "reserve", r#"{"items":["book"]}"#))
            .unwrap();
        assert_eq!(
            reserved.events.len(),
            2,
            "reserved and shipped: {:?}",
            reserved.failures
        );
    }
    started.elapsed().as_secs_f64() * 1e6 / orders as f64
}

fn instances_table(others: usize, orders: usize) {
    println!("order-fulfillment, one order = payment + reservation, each settled; the order ships and completes");
    println!("| live instances | µs per order | RSS MiB |");
    println!("|---|---|---|");
    let mut results = Vec::new();
    for live in [1_000, others] {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime = runtime(dir.path(), &["payment", "inventory", "shipping", "order-fulfillment"]);
        seed_instances(
            &mut runtime,
            "order-fulfillment",
            live,
            br#"{"paymentReceived":true,"inventoryReserved":false}"#,
        );
        // Warm the sandbox and the page cache's path, then measure.
        per_order(&mut runtime, 200, "warm");
        let micros = per_order(&mut runtime, orders, "o");
        let count = runtime
            .pipeline()
            .store()
            .read(|tx| tx.instance_count("order-fulfillment"))
            .unwrap();
        assert_eq!(count as usize, live, "every measured order completed");
        let rss = rss_mib();
        println!("| {live} | {micros:.0} | {rss:.0} |");
        results.push(micros);
    }
    println!("ratio {others} / 1000: {:.2}\n", results[1] / results[0]);
}

fn seed_timers(runtime: &mut Runtime, count: usize, due: impl Fn(usize) -> u64) {
    let record = InstanceRecord {
        state: Some(br#"{"due":0}"#.to_vec()),
        last_position: 1,
    };
    for start in (0..count).step_by(SEED_CHUNK) {
        runtime
            .pipeline()
            .store()
            .write(|tx| {
                for i in start..(start + SEED_CHUNK).min(count) {
                    let id = format!("t{i:07}");
                    tx.put_instance("payment-deadline", &id, &record)?;
                    tx.put_timer(&Timer {
                        plugin: "payment-deadline".into(),
                        instance: id,
                        name: "payment-deadline".into(),
                        due: due(i),
                        payload: "{}".into(),
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}

const TIMER_PLUGINS: [&str; 6] = [
    "users",
    "accounts",
    "welcome",
    "inventory",
    "payment",
    "payment-deadline",
];

fn timers_table(timers: usize) {
    let base = 1_800_000_000_000u64;
    cascade::clock::set_test_clock(base);
    println!("pending timers: opening the data directory, then firing them all (test clock)");
    println!("| pending timers | open ms | RSS growth while opening, MiB | fired per second |");
    println!("|---|---|---|---|");
    for count in [0, timers] {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime = runtime(dir.path(), &TIMER_PLUGINS);
        seed_timers(&mut runtime, count, |i| base + 1_000 + i as u64);
        drop(runtime);
        let rss_before = rss_mib();
        workload::reset_peak_rss();
        let started = Instant::now();
        let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        let rss = workload::peak_rss_mib().unwrap_or(0.0) - rss_before;
        let rate = if count == 0 {
            "-".to_owned()
        } else {
            cascade::clock::advance_test_clock(10_000_000);
            let started = Instant::now();
            runtime.pipeline().run_until_idle().unwrap();
            let seconds = started.elapsed().as_secs_f64();
            let left = runtime.timers(None, 0).unwrap().1;
            assert_eq!(left, 0, "every timer fired");
            format!("{:.0}", count as f64 / seconds)
        };
        println!("| {count} | {open_ms:.0} | {rss:.1} | {rate} |");
    }
    println!();
}

/// Timers due over 4 s of wall-clock time while callers keep the writer busy.
fn lateness_table(load_users: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = runtime(dir.path(), &TIMER_PLUGINS);
    let now = cascade::clock::now_millis();
    let count = 2_000;
    // Due from 1 s after the engine starts, one every 2 ms.
    seed_timers(&mut runtime, count, |i| now + 3_000 + 2 * i as u64);
    drop(runtime);
    let engine = Engine::start(dir.path(), Options::default(), Duration::from_secs(10)).unwrap();
    let handle = engine.handle();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in workload::users_create(load_users).chunks(load_users / 16) {
            let handle = handle.clone();
            let commands: Vec<Command> = chunk.iter().map(|(c, _)| c.clone()).collect();
            tasks.push(tokio::spawn(async move {
                for command in commands {
                    handle.execute(command).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let busy = started.elapsed();
    while handle.log().head().unwrap() < (2 * load_users + count) as u64 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut late: Vec<u64> = handle
        .log()
        .read_log(1, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.name == cascade::TIMER_FIRED)
        .map(|e| {
            let fired = cascade::TimerFired::parse(&e.payload).unwrap();
            e.created_at.saturating_sub(fired.due)
        })
        .collect();
    engine.shutdown();
    late.sort_unstable();
    let pick = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "timer lateness, {count} timers due one every 2 ms while {load_users} users.create ran ({:.0} events/s)",
        (2 * load_users) as f64 / busy.as_secs_f64()
    );
    println!("| p50 ms | p99 ms | max ms |");
    println!("|---|---|---|");
    println!("| {} | {} | {} |", pick(0.5), pick(0.99), late[late.len() - 1]);
}

fn main() {
    let others = workload::flag("--instances", 1_000_000);
    let timers = workload::flag("--timers", 1_000_000);
    let orders = workload::flag("--orders", 2_000);
    let load = workload::flag("--load", 100_000);
    // A count of 0 skips its table (to profile one of them alone).
    if others > 0 {
        instances_table(others, orders);
    }
    if load > 0 {
        lateness_table(load);
    }
    if timers > 0 {
        timers_table(timers);
    }
}
