//! The cost of event checksums, in one run: the native pipeline's time per
//! event (append + both phases, durable) and a refresh-style log read per
//! event, against the work the checksum adds to each (a CRC-32 over the
//! stored record, computed on append and checked on every read).
//!
//! `cargo bench -p cascade --bench integrity -- [--users N] [--rounds N]`

#[allow(dead_code)]
mod native;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use cascade::{Command, Options, Pipeline, Store};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut users = 50_000;
    let mut rounds = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--users" => users = value().expect("--users N"),
            "--rounds" => rounds = value().expect("--rounds N"),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(cascade::DATA_FILE)).unwrap();
    let mut pipeline = Pipeline::new(store, Options::default());
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(native::Accounts)).unwrap();
    pipeline.register_listener(Box::new(native::Welcome::new())).unwrap();
    let commands: Vec<(Command, Option<u64>)> = (0..users)
        .map(|i| {
            let args = format!(r#"{{"name":"user {i}"}}"#);
            (Command::new("users", &format!("u{i}"), "create", &args), None)
        })
        .collect();
    pipeline.submit_all(commands).unwrap();
    let started = Instant::now();
    pipeline.run_until_idle().unwrap();
    let pipeline_time = started.elapsed();
    let events = pipeline.store().read_log(1, usize::MAX).unwrap();
    let count = events.len() as u32;

    // A refresh reads the log in chunks; each read checks every checksum.
    let reads: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let mut from = 1;
            loop {
                let chunk = pipeline.store().read_log(from, 1024).unwrap();
                let Some(last) = chunk.last() else { break };
                from = last.position + 1;
            }
            started.elapsed()
        })
        .collect();
    // The checksum alone, over the same records as stored.
    let records: Vec<Vec<u8>> = events.iter().map(|e| postcard::to_stdvec(e).unwrap()).collect();
    let sums: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for record in &records {
                std::hint::black_box(crc32fast::hash(std::hint::black_box(record)));
            }
            started.elapsed()
        })
        .collect();
    let (read, sum) = (median(reads) / count, median(sums) / count);
    let per_event = pipeline_time / count;
    let bytes = records.iter().map(Vec::len).sum::<usize>() / records.len();
    println!("integrity: {count} events of {bytes} bytes on average (native plugins)");
    println!("  pipeline, durable    {per_event:>9.2?} per event");
    println!("  log read (refresh)   {read:>9.2?} per event, checksum checked");
    println!("  checksum alone       {sum:>9.2?} per event (median of {rounds})");
    println!(
        "  share: {:.2}% of the pipeline's time per event, {:.2}% of a log read's",
        100.0 * sum.as_secs_f64() / per_event.as_secs_f64(),
        100.0 * sum.as_secs_f64() / (read.as_secs_f64() - sum.as_secs_f64()),
    );
}
