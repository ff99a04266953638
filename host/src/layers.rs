//! The layers of this crate, checked: a module may import only from its own
//! layer and the layers listed under it. `docs/architecture.md` draws them.

/// Each layer, its modules, and the layers it may import from.
const LAYERS: &[(&str, &[&str], &[&str])] = &[
    (
        "types",
        &[
            "clock", "effect", "error", "event", "grants", "graph", "host_api", "instance", "manifest", "records",
            "text",
        ],
        &[],
    ),
    ("store", &["store"], &["types"]),
    (
        "engine",
        &["aggregate", "listener", "pipeline", "read_model"],
        &["types", "store"],
    ),
    ("sandbox", &["sandbox"], &["types"]),
    ("plugins", &["plugin"], &["types", "engine", "sandbox"]),
    (
        "runtime",
        &["engine", "runtime"],
        &["types", "store", "engine", "sandbox", "plugins"],
    ),
];

fn layer_of(module: &str) -> Option<&'static (&'static str, &'static [&'static str], &'static [&'static str])> {
    LAYERS.iter().find(|(_, modules, _)| modules.contains(&module))
}

/// `crate::x` paths in `source` outside comments, tests included: a test
/// that reaches up is a dependency the layers do not show.
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_its_layer_and_those_under_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.clone()];
    let mut violations = Vec::new();
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "rs") || relative == "lib.rs" || relative == "layers.rs" {
            continue;
        }
        let module = relative.split(['/', '.']).next().unwrap().to_owned();
        let (layer, _, below) =
            layer_of(&module).unwrap_or_else(|| panic!("`{module}` is in no layer: add it to LAYERS"));
        for import in imports(&std::fs::read_to_string(&path).unwrap()) {
            let allowed = match layer_of(&import) {
                Some((to, _, _)) => to == layer || below.contains(to),
                // A root re-export would hide which layer it comes from.
                None => false,
            };
            if !allowed {
                violations.push(format!("{relative} ({layer}) imports crate::{import}"));
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} files found under {}", root.display());
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn a_module_importing_from_above_is_caught() {
    let sandbox_reaching_up = "use crate::event::Event;\nuse crate::pipeline::Pipeline;\n// crate::runtime in a comment\n\
         #[cfg(test)]\nmod tests {\n    use crate::engine::Engine;\n}\n";
    assert_eq!(imports(sandbox_reaching_up), ["event", "pipeline", "engine"]);
    let (_, _, below) = layer_of("sandbox").unwrap();
    let (engine, _, _) = layer_of("pipeline").unwrap();
    assert!(!below.contains(engine));
}
