//! Builds every guest the tests use to a wasm32-wasip2 component: the example
//! plugins in plugins/ and the fixtures in tests/fixtures/. Each lands in
//! target/plugins/ and gets a constant in `cascade_tests::plugins`
//! (`WELCOME`, `FIXTURE_FAILING`, ...), so a test cannot run on a stale build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let tests = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = tests.parent().unwrap().to_owned();
    let target = root.join("target").join("guest");
    let out_dir = root.join("target").join("plugins");
    std::fs::create_dir_all(&out_dir).unwrap();
    for dir in ["wit", "guest-sdk", "plugins", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let mut constants = String::new();
    // `manifest`: the crate's cascade.toml, copied beside the component.
    let mut add = |name: &str, built: PathBuf, manifest: Option<PathBuf>| {
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
        let manifest_dest = dest.with_extension("toml");
        match manifest.filter(|m| m.exists()) {
            Some(manifest) => {
                std::fs::copy(&manifest, &manifest_dest).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(&manifest_dest);
            }
        }
        let constant = name.to_uppercase().replace('-', "_");
        constants.push_str(&format!(
            "/// `{}`\npub const {constant}: &str = {:?};\n",
            dest.display(),
            dest.display().to_string()
        ));
    };
    for workspace in ["plugins", "tests/fixtures"] {
        build(&root.join(workspace).join("Cargo.toml"), &target, &[]);
        for (name, dir) in members(&root.join(workspace)) {
            let file = format!("{}.wasm", name.replace('-', "_"));
            add(
                &name,
                target.join("wasm32-wasip2/release").join(file),
                Some(dir.join("cascade.toml")),
            );
        }
    }
    // Second builds of two plugins for redeploy tests: user-counter counting
    // by two, projects indexing `name` too. Their own target dir keeps the
    // feature sets from overwriting the first builds.
    let variants = root.join("target").join("guest-variants");
    build(
        &root.join("plugins/Cargo.toml"),
        &variants,
        &[
            "-p",
            "user-counter",
            "-p",
            "projects",
            "--features",
            "user-counter/by-two,projects/by-name",
        ],
    );
    let built = variants.join("wasm32-wasip2/release");
    add("user-counter-by-two", built.join("user_counter.wasm"), None);
    add("projects-by-name", built.join("projects.wasm"), None);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, constants).unwrap();
}

/// `cargo build` a guest workspace for wasm32-wasip2 into `target`.
fn build(manifest: &Path, target: &Path, extra: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .args(extra)
        // The host build's flags are not the guests'.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the guests of `{}` failed; is the target installed? run `rustup target add wasm32-wasip2`",
        manifest.display()
    );
}

/// Package names and directories of a guest workspace's members.
fn members(workspace: &Path) -> Vec<(String, PathBuf)> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        names.push((name.to_owned(), dir));
    }
    names.sort();
    names
}
