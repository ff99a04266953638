//! The workload most benchmarks share: N `users.create`, each settling after
//! `welcome` dispatches `accounts.open` (2 events, 2 commands), run by the
//! example plugins or by the same logic native; and the flags they take.

use std::path::{Path, PathBuf};

use cascade::{Command, Options, Pipeline, Runtime, Store};

/// The example plugins, built by `scripts/build-plugins.sh`.
pub fn plugins() -> PathBuf {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("welcome.wasm").exists(),
        "build the plugins first: scripts/build-plugins.sh"
    );
    plugins
}

/// `users.create` for users `u0..u{users}`.
#[allow(dead_code)]
pub fn users_create(users: usize) -> Vec<(Command, Option<u64>)> {
    users_create_range(0..users)
}

/// `users.create` for the users numbered in `range`.
pub fn users_create_range(range: std::ops::Range<usize>) -> Vec<(Command, Option<u64>)> {
    range
        .map(|i| {
            let args = format!(r#"{{"name":"user {i}"}}"#);
            (Command::new("users", &format!("u{i}"), "create", &args), None)
        })
        .collect()
}

/// A runtime in `dir` with the WASM `users`, `accounts` and `welcome`.
pub fn wasm(dir: &Path, options: Options) -> Runtime {
    let plugins = plugins();
    let mut runtime = Runtime::open(dir, options).unwrap();
    for name in ["users", "accounts", "welcome"] {
        runtime.add_plugin(&plugins.join(format!("{name}.wasm"))).unwrap();
    }
    runtime
}

/// A pipeline in `dir` with the same three as native Rust.
#[allow(dead_code)]
pub fn native(dir: &Path, options: Options) -> Pipeline {
    let store = Store::open(&dir.join(cascade::DATA_FILE)).unwrap();
    let mut pipeline = Pipeline::new(store, options);
    pipeline.register_aggregate(Box::new(crate::native::Users)).unwrap();
    pipeline.register_aggregate(Box::new(crate::native::Accounts)).unwrap();
    pipeline
        .register_listener(Box::new(crate::native::Welcome::new()))
        .unwrap();
    pipeline
}

/// The number given as `--name N` on the command line, else `default`.
pub fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} N")),
        None => default,
    }
}

/// The process's peak resident set since the last [`reset_peak_rss`], in
/// MiB (Linux `VmHWM`); `None` elsewhere.
#[allow(dead_code)]
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Start a new peak: Linux resets `VmHWM` to the current RSS when `5` is
/// written to `clear_refs`.
#[allow(dead_code)]
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
