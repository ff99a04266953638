//! `cascade new`: a plugin folder that builds with one command and carries a
//! test that runs it, in Rust, Python or JavaScript.

use std::path::{Path, PathBuf};

use heck::{ToSnakeCase, ToUpperCamelCase};

/// The language a plugin is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lang {
    /// The Rust SDK (`guest-sdk`).
    Rust,
    /// componentize-py with the Python SDK (`guest-sdk/python`).
    Python,
    /// componentize-js with the JavaScript SDK (`guest-sdk/js`).
    Js,
}

/// What the plugin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Reacts to events and dispatches commands.
    ProcessManager,
    /// A process manager with state saved at its checkpoint.
    Stateful,
    /// Keeps read models.
    Projection,
    /// Decides which events a command makes.
    Aggregate,
}

/// Where the scaffold finds Cascade: the checkout with the SDKs and the
/// example plugins, and the `cascade` binary its test runs.
pub struct Home {
    /// The Cascade checkout.
    pub checkout: PathBuf,
    /// The `cascade` binary.
    pub cascade: PathBuf,
}

impl Home {
    /// `$CASCADE_HOME`, else the checkout this binary was built from.
    ///
    /// # Errors
    ///
    /// Neither holds the SDKs.
    pub fn find() -> anyhow::Result<Home> {
        let checkout = std::env::var_os("CASCADE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
        let checkout = checkout.canonicalize().unwrap_or(checkout);
        if !checkout.join("guest-sdk").is_dir() {
            anyhow::bail!(
                "`{}` is not a Cascade checkout (no guest-sdk/); set CASCADE_HOME to one",
                checkout.display()
            );
        }
        let cascade = std::env::current_exe().unwrap_or_else(|_| "cascade".into());
        Ok(Home { checkout, cascade })
    }
}

/// Write a new plugin `name` into `parent/name`, returning the folder.
///
/// # Errors
///
/// A name that is not kebab-case, a folder that already exists, a write that fails.
pub fn create(parent: &Path, name: &str, lang: Lang, kind: Kind, home: &Home) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!("`{}` already exists; pick another name or remove it", dir.display());
    }
    // Blocks first: they hold placeholders of their own.
    let fill = |template: &str| {
        template
            .replace("{{steps}}", &test_steps(kind))
            .replace("{{about}}", about(kind))
            .replace("{{guide}}", guide(lang))
            .replace("{{name}}", name)
            .replace("{{crate_file}}", &name.replace('-', "_"))
            .replace("{{crate}}", name)
            .replace("{{module}}", &name.to_snake_case())
            .replace("{{Struct}}", &name.to_upper_camel_case())
            .replace("{{home}}", &home.checkout.display().to_string())
            .replace("{{cascade}}", &home.cascade.display().to_string())
            .replace("{{lang}}", lang_name(lang))
            .replace("{{kind}}", kind_name(kind))
    };
    let module = name.to_snake_case();
    let mut files: Vec<(String, &str)> = vec![
        ("cascade.toml".into(), include_str!("scaffold/manifest.toml")),
        ("README.md".into(), include_str!("scaffold/README.md")),
        ("test.sh".into(), include_str!("scaffold/test.sh")),
    ];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), include_str!("scaffold/rust-Cargo.toml")));
            files.push(("build.sh".into(), include_str!("scaffold/build-rust.sh")));
            let source = match kind {
                Kind::ProcessManager => include_str!("scaffold/rust-process-manager.rs"),
                Kind::Stateful => include_str!("scaffold/rust-stateful.rs"),
                Kind::Projection => include_str!("scaffold/rust-projection.rs"),
                Kind::Aggregate => include_str!("scaffold/rust-aggregate.rs"),
            };
            files.push(("src/lib.rs".into(), source));
            files.push((
                ".gitignore".into(),
                "/target\n*.wasm\n/*.toml\n!/Cargo.toml\n!/cascade.toml\n",
            ));
        }
        Lang::Python => {
            files.push(("build.sh".into(), include_str!("scaffold/build-python.sh")));
            let source = match kind {
                Kind::ProcessManager => include_str!("scaffold/python-process-manager.py"),
                Kind::Stateful => include_str!("scaffold/python-stateful.py"),
                Kind::Projection => include_str!("scaffold/python-projection.py"),
                Kind::Aggregate => include_str!("scaffold/python-aggregate.py"),
            };
            files.push((format!("{module}.py"), source));
            files.push((".gitignore".into(), "*.wasm\n__pycache__/\n"));
        }
        Lang::Js => {
            files.push(("build.sh".into(), include_str!("scaffold/build-js.sh")));
            let source = match kind {
                Kind::ProcessManager => include_str!("scaffold/js-process-manager.js"),
                Kind::Stateful => include_str!("scaffold/js-stateful.js"),
                Kind::Projection => include_str!("scaffold/js-projection.js"),
                Kind::Aggregate => include_str!("scaffold/js-aggregate.js"),
            };
            files.push((format!("{module}.js"), source));
            files.push((".gitignore".into(), "*.wasm\n"));
        }
    }
    for (file, template) in files {
        let path = dir.join(&file);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", folder.display()))?;
        }
        std::fs::write(&path, fill(template)).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        if file.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| anyhow::anyhow!("cannot make `{}` executable: {e}", path.display()))?;
        }
    }
    Ok(dir)
}

/// A plugin name is kebab-case: it names a folder, a crate, a module and,
/// for an aggregate, a stream type.
fn check_name(name: &str) -> anyhow::Result<()> {
    let kebab = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !kebab {
        anyhow::bail!(
            "plugin name `{}` must be kebab-case: lowercase letters, digits and single dashes, starting with a letter (e.g. `order-shipping`)",
            crate::commands::escape(name)
        );
    }
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ProcessManager => "process manager",
        Kind::Stateful => "stateful process manager",
        Kind::Projection => "projection",
        Kind::Aggregate => "aggregate",
    }
}

fn about(kind: Kind) -> &'static str {
    match kind {
        Kind::ProcessManager => {
            "It logs every `UserCreated` of the example `users` aggregate; `test.sh` adds both to a throwaway \
             data directory, creates a user and checks the log line."
        }
        Kind::Stateful => {
            "It keeps one instance per user of the example `users` aggregate and counts the user's updates; \
             `test.sh` creates two users, updates one and checks `cascade pm instances {{name}}` and \
             `cascade pm state {{name}} --instance u1`."
        }
        Kind::Projection => {
            "It keeps one document per user of the example `users` aggregate in collection `{{name}}`; \
             `test.sh` creates a user and checks `cascade read {{name}}`."
        }
        Kind::Aggregate => {
            "Stream type `{{name}}`: `create {title}` makes `{{Struct}}Created`; `test.sh` runs a command and \
             checks that one breaking the schema stores nothing."
        }
    }
}

fn guide(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "{{home}}/README.md and {{home}}/guest-sdk (crate docs)",
        Lang::Python => "{{home}}/docs/python.md",
        Lang::Js => "{{home}}/docs/javascript.md",
    }
}

/// The checks `test.sh` makes, by kind.
fn test_steps(kind: Kind) -> String {
    // Process managers and projections listen to the example `users` aggregate.
    const WITH_USERS: &str = r#"users="$home/target/plugins/users.wasm"
[[ -f "$users" ]] || "$home/scripts/build-plugins.sh" rust >/dev/null
"$cascade" --data "$data" plugin add "$users" "$here/{{name}}.wasm" >/dev/null
"#;
    let checks = match kind {
        Kind::ProcessManager => {
            r#"out=$("$cascade" --data "$data" exec users u1 create '{"name":"Ada"}')
check "$out" "{{name}} saw user u1""#
        }
        Kind::Stateful => {
            r#""$cascade" --data "$data" exec users u1 create '{"name":"Ada"}' >/dev/null
"$cascade" --data "$data" exec users u2 create '{"name":"Grace"}' >/dev/null
"$cascade" --data "$data" exec users u1 update '{"age":37}' >/dev/null
check "$("$cascade" --data "$data" pm instances {{name}})" 'u2  state'
check "$("$cascade" --data "$data" pm state {{name}} --instance u1)" '"updates": 1'"#
        }
        Kind::Projection => {
            r#""$cascade" --data "$data" exec users u1 create '{"name":"Ada"}' >/dev/null
check "$("$cascade" --data "$data" read {{name}} --where name=Ada)" 'u1  {"name":"Ada"}'"#
        }
        Kind::Aggregate => {
            return r#""$cascade" --data "$data" plugin add "$here/{{name}}.wasm" >/dev/null
check "$("$cascade" --data "$data" exec {{name}} first create '{"title":"The first"}')" "{{Struct}}Created"
if "$cascade" --data "$data" exec {{name}} second create '{}' >/dev/null; then
    echo "FAIL: a create without a title was accepted"
    exit 1
fi
check "$("$cascade" --data "$data" events)" "{{name}}:first""#
                .to_owned();
        }
    };
    format!("{WITH_USERS}{checks}")
}
