//! `cascade serve --watch DIR`: deploy every `NAME.wasm` (with `NAME.toml`
//! beside it) that appears or changes in a folder.
//!
//! The folder is polled rather than watched through OS notifications: a copy
//! in progress shows up as a file whose size or time still changes, and a
//! file is deployed only once it looks the same on two polls in a row. Polling
//! also works on every file system, network mounts included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::AppState;
use cascade::{Compiled, Swap};

const POLL: Duration = Duration::from_millis(250);

/// What a file looked like: size and modification time of the component and
/// of its manifest.
type Fingerprint = (u64, Option<SystemTime>, u64, Option<SystemTime>);

pub(super) async fn watch(state: AppState, folder: PathBuf) {
    eprintln!("cascade serve: watching `{}` for plugins", folder.display());
    // Per file: what it looked like on the last poll, and when deployed.
    let mut seen: HashMap<PathBuf, (Fingerprint, Option<Fingerprint>)> = HashMap::new();
    let mut shutdown = state.shutdown.clone();
    loop {
        for (file, now) in scan(&folder) {
            let entry = seen.entry(file.clone()).or_insert((now, None));
            let stable = entry.0 == now;
            entry.0 = now;
            if stable && entry.1 != Some(now) {
                entry.1 = Some(now);
                deploy(&state, &file).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn scan(folder: &Path) -> Vec<(PathBuf, Fingerprint)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let stat = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None))
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .map(|p| {
            let (len, modified) = stat(&p);
            let (manifest_len, manifest_modified) = stat(&p.with_extension("toml"));
            (p, (len, modified, manifest_len, manifest_modified))
        })
        .collect();
    files.sort();
    files
}

/// Deploy `file` unless it is what already runs; report either way.
async fn deploy(state: &AppState, file: &Path) {
    let engine = &state.engine;
    let sandbox = engine.sandbox().clone();
    let path = file.to_owned();
    let compiled = match tokio::task::spawn_blocking(move || Compiled::from_file(&sandbox, &path)).await {
        Ok(Ok(compiled)) => compiled,
        Ok(Err(err)) => {
            engine.stats().record_swap(false, Duration::ZERO);
            return refused(file, &err.to_string());
        }
        Err(err) => return refused(file, &err.to_string()),
    };
    let (name, hash) = (compiled.name().to_owned(), compiled.hash().to_owned());
    let swap = Swap {
        by: format!("watch {}", file.display()),
        ..Swap::default()
    };
    let stats = engine.clone();
    let result = engine
        .with_runtime(move |runtime| {
            if runtime.active_version(&name).is_some_and(|v| v.hash == hash) {
                return Ok(None);
            }
            let started = std::time::Instant::now();
            let result = runtime.install(compiled, &swap);
            stats.stats().record_swap(result.is_ok(), started.elapsed());
            result.map(Some)
        })
        .await;
    match result {
        Ok(Ok(Some(record))) => eprintln!(
            "cascade serve: deployed {} `{}` ({}) from `{}`",
            record.kind,
            record.name,
            &record.hash[..12],
            file.display()
        ),
        Ok(Ok(None)) => {}
        Ok(Err(err)) => refused(file, &err.to_string()),
        Err(err) => refused(file, &err.to_string()),
    }
}

fn refused(file: &Path, message: &str) {
    eprintln!(
        "cascade serve: refused `{}`, the running version stays: {message}",
        file.display()
    );
}
