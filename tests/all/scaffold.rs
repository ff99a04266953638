//! `cascade new`: every scaffold builds with its one command and its own
//! test passes as created; a broken edit makes that test fail.

use std::path::Path;
use std::process::Command;

use cascade_tests::cascade_bin;

/// `cascade new ARGS` in `parent`; returns the exit status and stderr.
fn new(parent: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(cascade_bin())
        .arg("new")
        .args(args)
        .current_dir(parent)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Run the scaffold's `test.sh`; returns whether it passed and what it said.
fn run_test(dir: &Path, target: &Path) -> (bool, String) {
    let output = Command::new(dir.join("test.sh"))
        .env("CASCADE", cascade_bin())
        // The Rust scaffolds share one target directory: dependencies once.
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn every_language_scaffold_builds_and_passes_its_own_test() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("rust-target");
    for (name, lang, kind) in [
        ("welcome-note", "rust", "process-manager"),
        ("tasks", "rust", "aggregate"),
        ("user-tally", "python", "stateful"),
        ("hello", "js", "process-manager"),
        ("py-tasks", "python", "aggregate"),
        ("js-users", "js", "projection"),
    ] {
        let (status, err) = new(parent.path(), &[name, "--lang", lang, "--kind", kind]);
        assert_eq!(status, 0, "{err}");
        let dir = parent.path().join(name);
        let (passed, out) = run_test(&dir, &target);
        assert!(passed, "{name} ({lang} {kind}): {out}");
        assert!(out.contains(&format!("ok: {name} works")), "{out}");
        assert!(dir.join(format!("{name}.wasm")).is_file());
        assert!(
            dir.join(format!("{name}.toml")).is_file(),
            "the manifest beside the component"
        );
    }

    // The test checks something: a plugin that counts wrong fails it.
    let module = parent.path().join("user-tally/user_tally.py");
    let source = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, source.replace("+= 1", "+= 2")).unwrap();
    let (passed, out) = run_test(&parent.path().join("user-tally"), &target);
    assert!(!passed, "{out}");
    assert!(out.contains(r#"FAIL: expected `"updates": 1`"#), "{out}");

    // A shape no kind has is refused by the build, naming it, before any
    // compile: here a projection with a phase-2 handler.
    let module = parent.path().join("js-users/js_users.js");
    let source = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, source.replace("onUserCreated", "afterUserCreated")).unwrap();
    let (passed, out) = run_test(&parent.path().join("js-users"), &target);
    assert!(!passed, "{out}");
    assert!(out.contains("projections only have on<Event> handlers"), "{out}");
}

#[test]
fn bad_names_and_existing_folders_are_refused_with_the_reason() {
    let parent = tempfile::tempdir().unwrap();
    let (status, err) = new(parent.path(), &["Order_Flow"]);
    assert_eq!(status, 2);
    assert!(err.contains("plugin name `Order_Flow` must be kebab-case"), "{err}");

    assert_eq!(new(parent.path(), &["flow"]).0, 0);
    std::fs::write(parent.path().join("flow/src/lib.rs"), "// mine").unwrap();
    let (status, err) = new(parent.path(), &["flow", "--lang", "js"]);
    assert_eq!(status, 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(parent.path().join("flow/src/lib.rs")).unwrap(),
        "// mine"
    );
}
