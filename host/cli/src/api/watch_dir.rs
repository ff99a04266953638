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
use cascade::Swap;

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
    if let Ok(bytes) = std::fs::read(file) {
        let hash = cascade::content_hash(&bytes);
        if let Ok(plugins) = engine.plugins().await
            && plugins.iter().any(|p| p.hash == hash)
        {
            return;
        }
    }
    let swap = Swap {
        by: format!("watch {}", file.display()),
        ..Swap::default()
    };
    match engine.deploy_file(file, swap).await {
        Ok(deployed) => eprintln!(
            "cascade serve: deployed {} `{}` ({}) from `{}`",
            deployed.record.kind,
            deployed.record.name,
            crate::commands::short_hash(&deployed.record.hash),
            file.display()
        ),
        Err(err) => refused(file, &err.to_string()),
    }
}

fn refused(file: &Path, message: &str) {
    eprintln!(
        "cascade serve: refused `{}`, the running version stays: {message}",
        file.display()
    );
}
