//! The single-command path: `execute` of one `users.create` (with `welcome`
//! dispatching `accounts.open`), waiting until it settled, N times in a row:
//! the latency a lone caller sees. WASM plugins and the same logic native,
//! on disk and (when there is one) on a RAM disk, in one run.
//!
//! `cargo bench -p cascade --bench single -- [--commands N]`

#[allow(dead_code)]
mod native;
mod workload;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::{Duration, Instant};

use cascade::{Options, Pipeline, Storage};

fn run<S: Storage>(pipeline: &mut Pipeline<S>, commands: usize) -> Duration {
    let started = Instant::now();
    for (command, _) in workload::users_create(commands) {
        let settled = pipeline.execute(command).unwrap();
        assert_eq!(settled.events.len(), 2);
    }
    started.elapsed() / commands as u32
}

fn main() {
    let commands = workload::flag("--commands", 5_000);
    println!("single command: {commands} x execute(users.create) + welcome + accounts.open, each waited for");
    let shm = Path::new("/dev/shm");
    let mut places = vec![("disk", std::env::temp_dir())];
    if shm.is_dir() {
        places.push(("RAM disk", shm.to_owned()));
    }
    for (label, place) in places {
        let (a, b) = (
            tempfile::tempdir_in(&place).unwrap(),
            tempfile::tempdir_in(&place).unwrap(),
        );
        let wasm = run(workload::wasm(a.path(), Options::default()).pipeline(), commands);
        let native = run(&mut workload::native(b.path(), Options::default()), commands);
        println!("  {label:<8} wasm {wasm:>9.2?} per command   native {native:>9.2?} per command");
    }
}
