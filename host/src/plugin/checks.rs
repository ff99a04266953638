//! What a component must be to register: its imports, read before any compile,
//! and its exports (kind, handler and state signatures), read after.

use heck::ToUpperCamelCase;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentItem, Type};

use super::{
    AGGREGATE_EXPORT, COLLECTIONS, CONTRACT_VERSION, HANDLER_SIGNATURE, INSTANCES, INSTANCES_SIGNATURE, Shape,
};
use crate::error::PluginError;
use crate::listener::{Handler, Phase};
use crate::sandbox::Sandbox;

/// Classify a component by its exports and check every handler signature.
pub(crate) fn inspect(sandbox: &Sandbox, plugin: &str, component: &Component) -> Result<Shape, PluginError> {
    let ty = component.component_type();
    let mut handlers = Vec::new();
    let mut stateful = false;
    let mut projection = false;
    for (name, item) in ty.exports(sandbox.engine()) {
        check_contract_version(plugin, name)?;
        if name == AGGREGATE_EXPORT {
            return Ok(Shape::Aggregate);
        }
        if name == COLLECTIONS {
            projection = true;
            continue;
        }
        if name == INSTANCES {
            check_instances_export(plugin, &item.ty)?;
            stateful = true;
            continue;
        }
        let (phase, event) = if let Some(rest) = name.strip_prefix("on-") {
            (Phase::On, rest)
        } else if let Some(rest) = name.strip_prefix("after-") {
            (Phase::After, rest)
        } else {
            continue;
        };
        let wrong = |found: String| PluginError::WrongSignature {
            plugin: plugin.to_owned(),
            export: name.to_owned(),
            expected: HANDLER_SIGNATURE,
            found,
        };
        let ComponentItem::ComponentFunc(func) = item.ty else {
            return Err(wrong("not a function".into()));
        };
        let params: Vec<(&str, Type)> = func.params().collect();
        let results: Vec<Type> = func.results().collect();
        let found = || {
            let params: Vec<String> = params.iter().map(|(n, t)| format!("{n}: {}", describe(t))).collect();
            let results: Vec<String> = results.iter().map(describe).collect();
            match results.as_slice() {
                [] => format!("func({})", params.join(", ")),
                _ => format!("func({}) -> {}", params.join(", "), results.join(", ")),
            }
        };
        let shape_ok = matches!(params.as_slice(), [(_, Type::Record(_)), (_, Type::Record(_))])
            && matches!(results.as_slice(), [Type::Result(_)]);
        if !shape_ok {
            return Err(wrong(found()));
        }
        handlers.push(Handler {
            phase,
            event: event.to_upper_camel_case(),
        });
    }
    if handlers.is_empty() {
        return Err(PluginError::NoHandlers {
            plugin: plugin.to_owned(),
        });
    }
    if projection {
        if let Some(after) = handlers.iter().find(|h| h.phase == Phase::After) {
            return Err(PluginError::WrongSignature {
                plugin: plugin.to_owned(),
                export: after.export_name(),
                expected: "no `after-` handlers in a projection (phase 2 is for process managers)",
                found: "an `after-` handler".into(),
            });
        }
        return Ok(Shape::Projection { handlers });
    }
    Ok(Shape::ProcessManager { handlers, stateful })
}

/// `instances` takes nothing and returns a list (its records are checked
/// when it is called, by the typed call).
fn check_instances_export(plugin: &str, item: &ComponentItem) -> Result<(), PluginError> {
    let found = match item {
        ComponentItem::ComponentFunc(func) => {
            let params: Vec<Type> = func.params().map(|(_, t)| t).collect();
            let results: Vec<Type> = func.results().collect();
            if params.is_empty() && matches!(results.as_slice(), [Type::List(_)]) {
                return Ok(());
            }
            format!(
                "func({}){}",
                params.iter().map(describe).collect::<Vec<_>>().join(", "),
                results
                    .iter()
                    .map(|r| format!(" -> {}", describe(r)))
                    .collect::<String>()
            )
        }
        _ => "not a function".into(),
    };
    Err(PluginError::WrongSignature {
        plugin: plugin.to_owned(),
        export: INSTANCES.to_owned(),
        expected: INSTANCES_SIGNATURE,
        found,
    })
}

/// Interfaces a plugin may import: Cascade's own, and WASI. Files and
/// sockets are linked with implementations that grant nothing (no preopened
/// directory, every address refused, no name lookup): toolchains for Python
/// and JavaScript import them whether a plugin uses them or not, so the
/// denial happens when a call is made, with an error the guest sees.
pub(super) const ALLOWED_IMPORTS: &[&str] = &[
    "cascade:runtime/",
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Refuse a `cascade:runtime` interface of another version up front: the
/// types differ, and linking would fail with a less helpful message.
pub(super) fn check_contract_version(plugin: &str, interface: &str) -> Result<(), PluginError> {
    match interface
        .strip_prefix("cascade:runtime/")
        .and_then(|rest| rest.split_once('@'))
    {
        Some((_, version)) if version != CONTRACT_VERSION => Err(PluginError::ContractVersion {
            plugin: plugin.to_owned(),
            interface: interface.to_owned(),
            expected: CONTRACT_VERSION,
        }),
        _ => Ok(()),
    }
}

/// Refuse, from the component's import section and before any compile, a
/// component that imports what the host does not grant or speaks another
/// contract version, naming every such import.
///
/// # Errors
///
/// [`PluginError::ContractVersion`], [`PluginError::ForbiddenImport`],
/// or [`PluginError::NotAComponent`] when the bytes do not parse.
pub(crate) fn check_imports(plugin: &str, source: &str, bytes: &[u8]) -> Result<(), PluginError> {
    let mut imports = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| PluginError::NotAComponent {
            file: source.to_owned(),
            message: crate::text::one_line(&e.to_string()),
        })?;
        match payload {
            wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| PluginError::NotAComponent {
                        file: source.to_owned(),
                        message: e.to_string(),
                    })?;
                    // Type imports (`event`, `context`) come with the interfaces.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    for import in &imports {
        check_contract_version(plugin, import)?;
    }
    let refused: Vec<&String> = imports
        .iter()
        .filter(|i| !ALLOWED_IMPORTS.iter().any(|p| i.starts_with(p)))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let reason = if refused.iter().any(|i| i.starts_with("wasi:http/")) {
        "Cascade plugins get no outgoing HTTP of their own: request it as an effect (`cascade:runtime/effects`, \
         performed by the host through its outbox) and build without it (componentize-js: `--disable http fetch-event`; \
         componentize-py: do not import an HTTP client; Rust: drop the HTTP client)"
    } else {
        "this host does not provide it; plugins may import `cascade:runtime` and WASI io, cli, clocks, random, filesystem and sockets"
    };
    Err(PluginError::ForbiddenImport {
        plugin: plugin.to_owned(),
        imports: refused.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "),
        reason,
    })
}

/// Whether the component in `bytes` exports `instances`: a per-instance
/// (stateful) process manager, read without compiling it. Bytes that do
/// not parse export nothing.
pub(crate) fn exports_instances(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Err(_) => return false,
            Ok(wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. }) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(wasmparser::Payload::ComponentExportSection(section)) if depth == 0 => {
                if section
                    .into_iter()
                    .flatten()
                    .any(|export| export.name.name == super::INSTANCES)
                {
                    return true;
                }
            }
            Ok(_) => {}
        }
    }
    false
}

/// A short WIT-like rendering of a type, for signature messages.
pub(super) fn describe(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", describe(&list.ty())),
        Type::Option(option) => format!("option<{}>", describe(&option.ty())),
        Type::Result(result) => format!(
            "result<{}, {}>",
            result.ok().as_ref().map_or("_".into(), describe),
            result.err().as_ref().map_or("_".into(), describe)
        ),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|f| format!("{}: {}", f.name, describe(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(_) => "tuple<..>".into(),
        Type::Variant(_) => "variant".into(),
        Type::Enum(_) => "enum".into(),
        Type::Flags(_) => "flags".into(),
        _ => "resource or other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component that imports an (empty) instance under each name.
    fn component_importing(names: &[&str]) -> Vec<u8> {
        use wasm_encoder::{Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType};
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        let mut imports = ComponentImportSection::new();
        for name in names {
            imports.import(*name, ComponentTypeRef::Instance(0));
        }
        let mut component = Component::new();
        component.section(&types).section(&imports);
        component.finish()
    }

    #[test]
    fn every_refused_import_is_named_before_any_compile() {
        let bytes = component_importing(&[
            "wasi:io/streams@0.2.6",
            "wasi:http/types@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "acme:db/query",
        ]);
        let err = check_imports("fetcher", "fetcher.wasm", &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "plugin `fetcher` imports `wasi:http/types@0.2.6`, `wasi:http/outgoing-handler@0.2.6`, `acme:db/query`: \
                 Cascade plugins get no outgoing HTTP of their own: request it as an effect"
            ),
            "{err}"
        );
        assert!(check_imports("ok", "ok.wasm", &component_importing(&["wasi:clocks/wall-clock@0.2.6"])).is_ok());
        let old = check_imports("old", "old.wasm", &component_importing(&["cascade:runtime/log@0.1.0"])).unwrap_err();
        assert!(matches!(old, PluginError::ContractVersion { .. }), "{old}");
        let garbage = check_imports("junk", "junk.wasm", b"\0asm\x0d\0\x01\0\xff").unwrap_err();
        assert!(matches!(garbage, PluginError::NotAComponent { .. }), "{garbage}");
    }

    #[test]
    fn interfaces_of_another_contract_version_are_refused_by_name() {
        assert!(AGGREGATE_EXPORT.ends_with(&format!("@{CONTRACT_VERSION}")));
        assert!(check_contract_version("p", AGGREGATE_EXPORT).is_ok());
        assert!(check_contract_version("p", "wasi:io/streams@0.2.6").is_ok());
        let err = check_contract_version("old", "cascade:runtime/commands@0.1.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "plugin `old` was built for `cascade:runtime/commands@0.1.0`, but this host speaks \
                 cascade:runtime@{CONTRACT_VERSION}; rebuild it with the matching cascade-sdk"
            )
        );
    }
}
