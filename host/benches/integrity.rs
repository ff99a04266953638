//! The cost of event checksums, in one run: the native pipeline's time per
//! event (append + both phases, durable) and a refresh-style log read per
//! event, against the work the checksum adds to each (a CRC-32 over the
//! stored record, computed on append and checked on every read).
//!
//! `cargo bench -p cascade --bench integrity -- [--users N] [--rounds N]`

#[allow(dead_code)]
mod native;
#[allow(dead_code)]
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use cascade::Options;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let users = workload::flag("--users", 50_000);
    let rounds = workload::flag("--rounds", 5);
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = workload::native(dir.path(), Options::default());
    pipeline.submit_all(workload::users_create(users)).unwrap();
    let started = Instant::now();
    pipeline.run_until_idle().unwrap();
    let pipeline_time = started.elapsed();
    let events = pipeline.store().reader().read_log(1, usize::MAX).unwrap();
    let count = events.len() as u32;

    // A refresh reads the log in chunks; each read checks every checksum.
    let reads: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let mut from = 1;
            loop {
                let chunk = pipeline.store().reader().read_log(from, 1024).unwrap();
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
