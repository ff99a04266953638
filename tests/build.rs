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
    // Python guests: every `*-py` folder holds one module, built by the SDK's
    // cascade_build.py with the pinned toolchain (scripts/python-toolchain.sh).
    for (workspace, prefix) in [("plugins", ""), ("tests/fixtures", "fixture-")] {
        for (dir, module) in python_guests(&root.join(workspace)) {
            let name = format!("{prefix}{}", dir.file_name().unwrap().to_string_lossy());
            let built = out_dir.join(format!("{name}.built.wasm"));
            build_python(&root, &module, &built);
            add(&name, built, Some(dir.join("cascade.toml")));
        }
    }
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

/// `*-py` folders of `parent` and the Python module in each.
fn python_guests(parent: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut guests = Vec::new();
    for entry in std::fs::read_dir(parent).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() || !dir.to_string_lossy().ends_with("-py") {
            continue;
        }
        let module = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "py"))
            .unwrap_or_else(|| panic!("{} has no Python module", dir.display()));
        guests.push((dir, module));
    }
    guests.sort();
    guests
}

/// Build a Python guest unless `out` is newer than the module and the SDK:
/// a build takes seconds, and most test runs change neither.
fn build_python(root: &Path, module: &Path, out: &Path) {
    let sdk = root.join("guest-sdk/python");
    let newest_input = [
        module.to_owned(),
        sdk.join("cascade/__init__.py"),
        sdk.join("cascade_build.py"),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .max();
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    if built.is_some() && built >= newest_input {
        return;
    }
    let python = root.join("target/py-toolchain/bin/python");
    assert!(
        python.exists(),
        "the Python guest toolchain is missing: run scripts/python-toolchain.sh (scripts/test.sh does)"
    );
    let status = Command::new(python)
        .arg(sdk.join("cascade_build.py"))
        .arg(module)
        .arg("-o")
        .arg(out)
        .status()
        .expect("python runs");
    assert!(
        status.success(),
        "building the Python guest `{}` failed",
        module.display()
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
