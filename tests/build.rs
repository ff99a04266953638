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
    // The fixed build of the `flaky` fixture, deployed before `parked retry`.
    build(
        &root.join("tests/fixtures/Cargo.toml"),
        &variants,
        &["-p", "fixture-flaky", "--features", "fixture-flaky/fixed"],
    );
    add("fixture-flaky-fixed", built.join("fixture_flaky.wasm"), None);
    // Python and JavaScript guests: every `*-py` / `*-js` folder holds one
    // module, built by its SDK's tool with the pinned toolchain
    // (scripts/python-toolchain.sh, scripts/js-toolchain.sh).
    for (workspace, prefix) in [("plugins", ""), ("tests/fixtures", "fixture-")] {
        for lang in [Lang::Python, Lang::JavaScript] {
            for (dir, module) in guests(&root.join(workspace), lang) {
                let name = format!("{prefix}{}", dir.file_name().unwrap().to_string_lossy());
                let built = out_dir.join(format!("{name}.built.wasm"));
                build_guest(&root, lang, &module, &built);
                add(&name, built, Some(dir.join("cascade.toml")));
            }
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

#[derive(Clone, Copy)]
enum Lang {
    Python,
    JavaScript,
}

impl Lang {
    /// Folder suffix and module extension.
    fn suffix(self) -> (&'static str, &'static str) {
        match self {
            Lang::Python => ("-py", "py"),
            Lang::JavaScript => ("-js", "js"),
        }
    }
}

/// The `*-py` or `*-js` folders of `parent` and the module in each.
fn guests(parent: &Path, lang: Lang) -> Vec<(PathBuf, PathBuf)> {
    let (suffix, extension) = lang.suffix();
    let mut guests = Vec::new();
    for entry in std::fs::read_dir(parent).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() || !dir.to_string_lossy().ends_with(suffix) {
            continue;
        }
        let module = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == extension))
            .unwrap_or_else(|| panic!("{} has no module", dir.display()));
        guests.push((dir, module));
    }
    guests.sort();
    guests
}

/// Build a Python or JavaScript guest unless `out` is newer than the module,
/// the SDK and the WIT: a build takes seconds, and most test runs change
/// none of them.
fn build_guest(root: &Path, lang: Lang, module: &Path, out: &Path) {
    let (sdk, tool, toolchain, script) = match lang {
        Lang::Python => (
            root.join("guest-sdk/python"),
            vec!["cascade/__init__.py", "cascade_build.py"],
            root.join("target/py-toolchain/bin/python"),
            "scripts/python-toolchain.sh",
        ),
        Lang::JavaScript => (
            root.join("guest-sdk/js"),
            vec!["cascade.js", "build.mjs"],
            root.join("target/js-toolchain/node_modules/@bytecodealliance/componentize-js"),
            "scripts/js-toolchain.sh",
        ),
    };
    let wit = std::fs::read_dir(root.join("wit")).unwrap().map(|e| e.unwrap().path());
    let newest_input = tool
        .iter()
        .map(|f| sdk.join(f))
        .chain([module.to_owned()])
        .chain(wit)
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max();
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    if built.is_some() && built >= newest_input {
        return;
    }
    assert!(
        toolchain.exists(),
        "the guest toolchain `{}` is missing: run {script} (scripts/test.sh does)",
        toolchain.display()
    );
    let mut command = match lang {
        Lang::Python => {
            let mut c = Command::new(&toolchain);
            c.arg(sdk.join("cascade_build.py"));
            c
        }
        Lang::JavaScript => {
            let mut c = Command::new("node");
            c.arg(sdk.join("build.mjs"));
            c
        }
    };
    let status = command
        .arg(module)
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("the guest build tool runs");
    assert!(status.success(), "building the guest `{}` failed", module.display());
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
