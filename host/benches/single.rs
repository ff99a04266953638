//! The single-command path: `execute` of one `users.create` (with `welcome`
//! dispatching `accounts.open`), waiting until it settled, N times in a row:
//! the latency a lone caller sees. WASM plugins and the same logic native,
//! on disk and (when there is one) on a RAM disk, in one run.
//!
//! `cargo bench -p cascade --bench single -- [--commands N]`

#[allow(dead_code)]
mod native;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cascade::{Command, Options, Pipeline, Runtime, Store};

fn run(pipeline: &mut Pipeline, commands: usize) -> Duration {
    let started = Instant::now();
    for i in 0..commands {
        let args = format!(r#"{{"name":"user {i}"}}"#);
        let settled = pipeline
            .execute(Command::new("users", &format!("u{i}"), "create", &args))
            .unwrap();
        assert_eq!(settled.events.len(), 2);
    }
    started.elapsed() / commands as u32
}

fn wasm(dir: &Path, plugins: &Path, commands: usize) -> Duration {
    let mut runtime = Runtime::open(dir, Options::default()).unwrap();
    for name in ["users", "accounts", "welcome"] {
        runtime.add_plugin(&plugins.join(format!("{name}.wasm"))).unwrap();
    }
    run(runtime.pipeline(), commands)
}

fn native(dir: &Path, commands: usize) -> Duration {
    let store = Store::open(&dir.join(cascade::DATA_FILE)).unwrap();
    let mut pipeline = Pipeline::new(store, Options::default());
    pipeline.register_aggregate(Box::new(native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(native::Accounts)).unwrap();
    pipeline.register_listener(Box::new(native::Welcome::new())).unwrap();
    run(&mut pipeline, commands)
}

fn main() {
    let mut commands = 5_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--commands" {
            commands = args.next().and_then(|n| n.parse().ok()).expect("--commands N");
        }
    }
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("welcome.wasm").exists(),
        "build the plugins first: scripts/build-plugins.sh"
    );
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
        let wasm = wasm(a.path(), &plugins, commands);
        let native = native(b.path(), commands);
        println!("  {label:<8} wasm {wasm:>9.2?} per command   native {native:>9.2?} per command");
    }
}
