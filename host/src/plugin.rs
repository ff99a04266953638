//! Plugins: loading, validating and wrapping WebAssembly components.
//!
//! A component that exports `cascade:runtime/aggregate` is an aggregate; one
//! that exports `on-<event>` / `after-<event>` functions is a process
//! manager. The handler exports are discovered from the component's type,
//! their names mapped back to PascalCase events, and their signatures checked
//! once at load time; calls then go through typed functions looked up once.

use heck::ToUpperCamelCase;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, ComponentType, InstancePre, Lower, TypedFunc, types::Type};

use crate::aggregate::{Aggregate, AggregateDescription, Decision, EventDeclaration};
use crate::error::PluginError;
use crate::event::{Event, NewEvent};
use crate::listener::{Context, Effects, Handler, HandlerError, Listener, Phase};
use crate::read_model::Collection;
pub use crate::records::{PluginKind, PluginRecord, PluginVersion};
use crate::sandbox::bindings::cascade::runtime::projection_types as wit_projection;
use crate::sandbox::bindings::cascade::runtime::types as wit;
use crate::sandbox::bindings::exports::cascade::runtime::aggregate as wit_aggregate;
use crate::sandbox::{self, HostState, PluginEnv, Sandbox};

/// The version of `cascade:runtime` this host speaks, as a literal for
/// `concat!`: the `package` line of `wit/`, read by `host/build.rs`.
macro_rules! contract_version {
    () => {
        env!("CASCADE_CONTRACT_VERSION")
    };
}
/// The version of `cascade:runtime` (`wit/`) this host speaks.
pub const CONTRACT_VERSION: &str = contract_version!();
/// The export an aggregate component provides.
const AGGREGATE_EXPORT: &str = concat!("cascade:runtime/aggregate@", contract_version!());
/// The one signature every handler export has.
pub const HANDLER_SIGNATURE: &str = "func(event: event, ctx: context) -> result<_, handler-error>";

const SAVE_STATE: &str = "save-state";
const LOAD_STATE: &str = "load-state";
const SAVE_STATE_SIGNATURE: &str = "func() -> list<u8>";
const LOAD_STATE_SIGNATURE: &str = "func(state: option<list<u8>>)";

/// The export that makes a component a projection.
const COLLECTIONS: &str = "collections";

/// What the component's exports say it is.
pub(crate) enum Shape {
    Aggregate,
    ProcessManager { handlers: Vec<Handler>, stateful: bool },
    Projection { handlers: Vec<Handler> },
}

/// Classify a component by its exports and check every handler signature.
pub(crate) fn inspect(sandbox: &Sandbox, plugin: &str, component: &Component) -> Result<Shape, PluginError> {
    let ty = component.component_type();
    let mut handlers = Vec::new();
    let mut state_exports = 0;
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
        if name == SAVE_STATE || name == LOAD_STATE {
            check_state_export(plugin, name, &item.ty)?;
            state_exports += 1;
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
    if state_exports == 1 {
        return Err(PluginError::WrongSignature {
            plugin: plugin.to_owned(),
            export: "save-state/load-state".into(),
            expected: "both `save-state` and `load-state`, or neither",
            found: "only one of them".into(),
        });
    }
    Ok(Shape::ProcessManager {
        handlers,
        stateful: state_exports == 2,
    })
}

fn check_state_export(plugin: &str, name: &str, item: &ComponentItem) -> Result<(), PluginError> {
    let (expected, ok, found) = match item {
        ComponentItem::ComponentFunc(func) => {
            let params: Vec<Type> = func.params().map(|(_, t)| t).collect();
            let results: Vec<Type> = func.results().collect();
            let bytes = |t: &Type| matches!(t, Type::List(l) if l.ty() == Type::U8);
            let ok = if name == SAVE_STATE {
                params.is_empty() && matches!(results.as_slice(), [r] if bytes(r))
            } else {
                results.is_empty() && matches!(params.as_slice(), [Type::Option(o)] if bytes(&o.ty()))
            };
            let found = format!(
                "func({}){}",
                params.iter().map(describe).collect::<Vec<_>>().join(", "),
                results
                    .iter()
                    .map(|r| format!(" -> {}", describe(r)))
                    .collect::<String>()
            );
            let expected = if name == SAVE_STATE {
                SAVE_STATE_SIGNATURE
            } else {
                LOAD_STATE_SIGNATURE
            };
            (expected, ok, found)
        }
        _ => (SAVE_STATE_SIGNATURE, false, "not a function".into()),
    };
    if ok {
        return Ok(());
    }
    Err(PluginError::WrongSignature {
        plugin: plugin.to_owned(),
        export: name.to_owned(),
        expected,
        found,
    })
}

/// Interfaces a plugin may import: Cascade's own, and WASI. Files and
/// sockets are linked with implementations that grant nothing (no preopened
/// directory, every address refused, no name lookup): toolchains for Python
/// and JavaScript import them whether a plugin uses them or not, so the
/// denial happens when a call is made, with an error the guest sees.
const ALLOWED_IMPORTS: &[&str] = &[
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
fn check_contract_version(plugin: &str, interface: &str) -> Result<(), PluginError> {
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
            message: crate::sandbox::one_line(&e.to_string()),
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
        "Cascade plugins get no outgoing HTTP; build without it (componentize-js: `--disable http fetch-event`; \
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

/// A short WIT-like rendering of a type, for signature messages.
fn describe(ty: &Type) -> String {
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

/// Instantiate through `pre` in a fresh store.
fn instantiate(
    sandbox: &Sandbox,
    pre: &InstancePre<HostState>,
    plugin: &str,
    env: &PluginEnv,
) -> anyhow::Result<(wasmtime::Store<HostState>, wasmtime::component::Instance)> {
    let mut store = sandbox.new_store(plugin, env);
    match pre.instantiate(&mut store) {
        Ok(instance) => Ok((store, instance)),
        Err(_) if store.data().memory_cap_hit() => Err(anyhow::anyhow!(
            "its memories and tables need more than its memory limit of {} MiB (all counted together) to start; \
             use less memory or raise `memory-mib` in its manifest",
            store.data().limits().memory_bytes >> 20
        )),
        Err(err) => Err(err.into()),
    }
}

fn instantiate_error(plugin: &str, err: anyhow::Error) -> PluginError {
    PluginError::Instantiate {
        plugin: plugin.to_owned(),
        message: format!("{err:#}"),
    }
}

/// An aggregate implemented by a component.
pub struct WasmAggregate {
    name: String,
    sandbox: std::sync::Arc<Sandbox>,
    pre: InstancePre<HostState>,
    indices: wit_aggregate::GuestIndices,
    env: PluginEnv,
    store: wasmtime::Store<HostState>,
    guest: wit_aggregate::Guest,
}

impl WasmAggregate {
    /// Instantiate `component`, which must export `cascade:runtime/aggregate`.
    ///
    /// # Errors
    ///
    /// The component does not link or does not have the aggregate exports.
    pub fn new(
        sandbox: std::sync::Arc<Sandbox>,
        plugin: &str,
        component: &Component,
        env: &PluginEnv,
    ) -> Result<WasmAggregate, PluginError> {
        let load = || -> anyhow::Result<WasmAggregate> {
            let pre = sandbox.linker().instantiate_pre(component)?;
            let indices = wit_aggregate::GuestIndices::new(&pre)?;
            let (mut store, instance) = instantiate(&sandbox, &pre, plugin, env)?;
            let guest = indices.load(&mut store, &instance)?;
            Ok(WasmAggregate {
                name: plugin.to_owned(),
                sandbox: sandbox.clone(),
                pre,
                indices,
                env: env.clone(),
                store,
                guest,
            })
        };
        load().map_err(|e| instantiate_error(plugin, e))
    }

    /// Turn a trap into an error naming what happened, and replace the
    /// poisoned store with a fresh instance (aggregates keep no state).
    fn recover(&mut self, call: &str, trap: wasmtime::Error) -> anyhow::Error {
        let stderr = self.store.data_mut().take_stderr();
        let message = sandbox::describe_trap(trap, self.store.data(), &stderr);
        let restarted =
            instantiate(&self.sandbox, &self.pre, &self.name, &self.env).and_then(|(mut store, instance)| {
                let guest = self.indices.load(&mut store, &instance)?;
                Ok((store, guest))
            });
        match restarted {
            Ok((store, guest)) => {
                self.store = store;
                self.guest = guest;
                anyhow::anyhow!("`{call}` {message}")
            }
            Err(err) => anyhow::anyhow!("`{call}` {message}; restarting it failed too: {err:#}"),
        }
    }
}

impl Aggregate for WasmAggregate {
    fn describe(&mut self) -> anyhow::Result<AggregateDescription> {
        sandbox::arm(&mut self.store);
        let d = match self.guest.call_describe(&mut self.store) {
            Ok(d) => d,
            Err(trap) => return Err(self.recover("describe", trap)),
        };
        Ok(AggregateDescription {
            name: d.name,
            events: d
                .events
                .into_iter()
                .map(|e| EventDeclaration {
                    name: e.name,
                    schema: e.schema,
                })
                .collect(),
            commands: d.commands,
        })
    }

    fn handle(
        &mut self,
        state: Option<&[u8]>,
        stream_id: &str,
        command: &str,
        args: &str,
    ) -> anyhow::Result<Result<Decision, String>> {
        sandbox::arm(&mut self.store);
        let decision = match self.guest.call_handle(&mut self.store, state, stream_id, command, args) {
            Ok(decision) => decision,
            Err(trap) => return Err(self.recover("handle", trap)),
        };
        Ok(decision.map(|decision| Decision {
            events: decision
                .events
                .into_iter()
                .map(|e| NewEvent {
                    name: e.name,
                    payload: e.payload,
                })
                .collect(),
            state: decision.state,
        }))
    }
}

/// `event` of `cascade:runtime/types`, lowered straight from the host's
/// [`Event`]: its strings are copied once, into guest memory, not cloned first.
#[derive(ComponentType, Lower)]
#[component(record)]
struct GuestEvent<'a> {
    position: u64,
    name: &'a str,
    #[component(name = "stream-type")]
    stream_type: &'a str,
    #[component(name = "stream-id")]
    stream_id: &'a str,
    #[component(name = "stream-version")]
    stream_version: u64,
    payload: &'a str,
    #[component(name = "created-at")]
    created_at: u64,
}

impl<'a> GuestEvent<'a> {
    fn new(event: &'a Event) -> Self {
        GuestEvent {
            position: event.position,
            name: &event.name,
            stream_type: &event.stream_type,
            stream_id: &event.stream_id,
            stream_version: event.stream_version,
            payload: &event.payload,
            created_at: event.created_at,
        }
    }
}

type HandlerFunc<'a> = TypedFunc<(GuestEvent<'a>, wit::Context), (Result<(), wit::HandlerError>,)>;
type SaveStateFunc = TypedFunc<(), (Vec<u8>,)>;
type LoadStateFunc = TypedFunc<(Option<Vec<u8>>,), ()>;

/// A process manager implemented by a component: one live instance, its
/// handler functions typed once.
pub struct WasmListener {
    name: String,
    handlers: Vec<Handler>,
    indices: Vec<ComponentExportIndex>,
    /// `save-state` and `load-state`, for a stateful process manager.
    state_indices: Option<(ComponentExportIndex, ComponentExportIndex)>,
    /// The last state loaded or saved: what a fresh instance starts from
    /// after a trap.
    last_state: Option<Vec<u8>>,
    /// Events handled since `last_state`, replayed into a fresh instance
    /// after a trap so the state loses nothing (stateful listeners only).
    since_last_state: Vec<(usize, Event, Context)>,
    pre: InstancePre<HostState>,
    sandbox: std::sync::Arc<Sandbox>,
    env: PluginEnv,
    /// For a projection: the collections it owns.
    collections: Option<Vec<Collection>>,
    live: Option<Live>,
}

struct Live {
    store: wasmtime::Store<HostState>,
    instance: wasmtime::component::Instance,
    /// Type-checked once; [`handler_func`] lends each call its event's lifetime.
    funcs: Vec<HandlerFunc<'static>>,
    state_funcs: Option<(SaveStateFunc, LoadStateFunc)>,
}

impl WasmListener {
    /// Instantiate `component` and type-check each handler export.
    ///
    /// # Errors
    ///
    /// [`PluginError::WrongSignature`] for a handler whose types differ from
    /// [`HANDLER_SIGNATURE`]; a component that does not link.
    pub fn new(
        sandbox: std::sync::Arc<Sandbox>,
        name: &str,
        component: &Component,
        shape: Shape,
        env: &PluginEnv,
    ) -> Result<WasmListener, PluginError> {
        let (handlers, stateful, projection) = match shape {
            Shape::ProcessManager { handlers, stateful } => (handlers, stateful, false),
            Shape::Projection { handlers } => (handlers, false, true),
            Shape::Aggregate => unreachable!("aggregates are loaded by WasmAggregate"),
        };
        let pre = sandbox
            .linker()
            .instantiate_pre(component)
            .map_err(|e| instantiate_error(name, e.into()))?;
        let indices = handlers
            .iter()
            .map(|h| {
                component
                    .get_export_index(None, &h.export_name()[..])
                    .ok_or_else(|| instantiate_error(name, anyhow::anyhow!("export `{}` vanished", h.export_name())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let export = |export: &str| {
            component
                .get_export_index(None, export)
                .ok_or_else(|| instantiate_error(name, anyhow::anyhow!("export `{export}` vanished")))
        };
        let state_indices = match stateful {
            true => Some((export(SAVE_STATE)?, export(LOAD_STATE)?)),
            false => None,
        };
        let mut pm = WasmListener {
            name: name.to_owned(),
            handlers,
            indices,
            state_indices,
            last_state: None,
            since_last_state: Vec::new(),
            pre,
            sandbox,
            env: env.clone(),
            collections: None,
            live: None,
        };
        pm.live = Some(pm.instantiate()?);
        if projection {
            pm.collections = Some(pm.declared_collections()?);
        }
        Ok(pm)
    }

    fn instantiate(&self) -> Result<Live, PluginError> {
        let (mut store, instance) = instantiate(&self.sandbox, &self.pre, &self.name, &self.env)
            .map_err(|e| instantiate_error(&self.name, e))?;
        let mut funcs = Vec::with_capacity(self.indices.len());
        for (handler, index) in self.handlers.iter().zip(&self.indices) {
            let func: HandlerFunc<'static> =
                instance
                    .get_typed_func(&mut store, index)
                    .map_err(|e| PluginError::WrongSignature {
                        plugin: self.name.clone(),
                        export: handler.export_name(),
                        expected: HANDLER_SIGNATURE,
                        found: format!("a different type ({e:#})"),
                    })?;
            funcs.push(func);
        }
        let state_funcs = match &self.state_indices {
            None => None,
            Some((save, load)) => {
                let typed = |e: wasmtime::Error| instantiate_error(&self.name, e.into());
                let save = instance
                    .get_typed_func::<(), (Vec<u8>,)>(&mut store, save)
                    .map_err(typed)?;
                let load = instance
                    .get_typed_func::<(Option<Vec<u8>>,), ()>(&mut store, load)
                    .map_err(typed)?;
                if let Err(trap) = load.call(&mut store, (self.last_state.clone(),)) {
                    let stderr = store.data_mut().take_stderr();
                    return Err(PluginError::State {
                        plugin: self.name.clone(),
                        action: "load",
                        message: sandbox::describe_trap(trap, store.data(), &stderr),
                    });
                }
                Some((save, load))
            }
        };
        Ok(Live {
            store,
            instance,
            funcs,
            state_funcs,
        })
    }

    /// Call the projection's `collections` export.
    fn declared_collections(&mut self) -> Result<Vec<Collection>, PluginError> {
        let name = self.name.clone();
        let live = self.live()?;
        let wrong = |e: wasmtime::Error| PluginError::WrongSignature {
            plugin: name.clone(),
            export: COLLECTIONS.into(),
            expected: "func() -> list<collection>",
            found: format!("a different type ({:#})", anyhow::Error::from(e)),
        };
        let func = live
            .instance
            .get_typed_func::<(), (Vec<wit_projection::Collection>,)>(&mut live.store, COLLECTIONS)
            .map_err(wrong)?;
        let (collections,) = func
            .call(&mut live.store, ())
            .map_err(|e| instantiate_error(&name, anyhow::Error::from(e).context("`collections` trapped")))?;
        Ok(collections
            .into_iter()
            .map(|c| Collection {
                name: c.name,
                indexes: c.indexes,
            })
            .collect())
    }

    fn live(&mut self) -> Result<&mut Live, PluginError> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        Ok(self.live.as_mut().expect("instantiated above"))
    }
}

/// One handler call: its result, and the first limit it broke. What it
/// dispatched and logged goes into `effects`.
fn call_handler(
    live: &mut Live,
    handler: usize,
    event: &Event,
    ctx: Context,
    effects: &mut Effects,
) -> (wasmtime::Result<Result<(), wit::HandlerError>>, Option<String>) {
    sandbox::arm(&mut live.store);
    live.store.data_mut().set_current_event(Some(event));
    let ctx = wit::Context {
        refreshing: ctx.refreshing,
    };
    let result = handler_func(&live.funcs[handler])
        .call(&mut live.store, (GuestEvent::new(event), ctx))
        .map(|(result,)| result);
    live.store.data_mut().set_current_event(None);
    let violation = live.store.data_mut().move_call_effects(effects);
    (result, violation)
}

impl WasmListener {
    /// After a trap: a fresh instance with the last state, and the events
    /// handled since then applied again (their effects were already taken).
    fn recover(&mut self) {
        self.live = None;
        let journal = std::mem::take(&mut self.since_last_state);
        if let Ok(live) = self.live() {
            // Their effects were taken when they first ran.
            let mut discarded = Effects::default();
            for (handler, event, ctx) in &journal {
                let _ = call_handler(live, *handler, event, *ctx, &mut discarded);
            }
        }
        self.since_last_state = journal;
    }
}

fn state_error(plugin: &str, action: &'static str, err: wasmtime::Error) -> PluginError {
    PluginError::State {
        plugin: plugin.to_owned(),
        action,
        message: format!("{:#}", anyhow::Error::from(err)),
    }
}

/// The checked handler function, for an event that lives as long as the call.
fn handler_func<'a>(func: &HandlerFunc<'static>) -> HandlerFunc<'a> {
    // SAFETY: wasmtime type-checked `func` against the export when the
    // instance was created (`get_typed_func`); a lifetime changes neither the
    // component type nor how the record is lowered.
    unsafe { TypedFunc::new_unchecked(*func.func()) }
}

impl Listener for WasmListener {
    fn name(&self) -> &str {
        &self.name
    }

    fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    fn handle(
        &mut self,
        handler: usize,
        event: &Event,
        ctx: Context,
        effects: &mut Effects,
    ) -> Result<(), HandlerError> {
        let live = self.live().map_err(|e| HandlerError::Failed(e.to_string()))?;
        // What a failing call dispatched is dropped by the caller (the
        // pipeline), like any listener's.
        let (result, violation) = call_handler(live, handler, event, ctx, effects);
        let outcome = match (result, violation) {
            // A broken limit (a sleep past the budget, a refused dispatch)
            // is why the call trapped: say that.
            (Err(_), Some(violation)) => {
                self.recover();
                return Err(HandlerError::Failed(violation));
            }
            (Err(trap), None) => {
                let stderr: Vec<&str> = effects
                    .logs
                    .iter()
                    .filter(|(_, line)| line.starts_with("stderr: "))
                    .map(|(_, line)| line.as_str())
                    .collect();
                let message = sandbox::describe_trap(trap, live.store.data(), &stderr.join("\n"));
                self.recover();
                return Err(HandlerError::Failed(message));
            }
            // A broken limit fails the call even if the guest ignored the error.
            (Ok(_), Some(violation)) => Err(HandlerError::Failed(violation)),
            (Ok(Ok(())), None) => Ok(()),
            (Ok(Err(wit::HandlerError::Failed(message))), None) => Err(HandlerError::Failed(sandbox::truncate(
                message,
                sandbox::MAX_TEXT_BYTES,
            ))),
            (Ok(Err(wit::HandlerError::SkipRefreshing)), None) => Err(HandlerError::SkipRefreshing),
        };
        // Live and refreshing alike: a refresh must end in the state a live
        // run over the same events reaches.
        if self.state_indices.is_some() {
            match outcome {
                // A failed call is atomic for the state too: back to the last
                // state plus the calls since, without this one.
                Err(HandlerError::Failed(_)) => self.recover(),
                _ => self.since_last_state.push((handler, event.clone(), ctx)),
            }
        }
        outcome
    }

    fn is_stateful(&self) -> bool {
        self.state_indices.is_some()
    }

    fn memory_bytes(&self) -> Option<u64> {
        self.live.as_ref().map(|live| live.store.data().memory_bytes() as u64)
    }

    fn collections(&self) -> Option<&[Collection]> {
        self.collections.as_deref()
    }

    fn on_error(&self) -> crate::manifest::OnError {
        self.env.manifest.on_error
    }

    fn cascade_budget(&self) -> Option<usize> {
        self.env.manifest.limits.cascade_budget
    }

    fn save_state(&mut self) -> Result<Vec<u8>, String> {
        let name = self.name.clone();
        let live = self.live().map_err(|e| e.to_string())?;
        sandbox::arm(&mut live.store);
        let Some((save, _)) = live.state_funcs else {
            return Ok(Vec::new());
        };
        match save.call(&mut live.store, ()) {
            Ok((state,)) => {
                let max = live.store.data().limits().max_state_bytes;
                if state.len() > max {
                    return Err(format!(
                        "state blob of {} bytes exceeds the limit of {max}",
                        state.len()
                    ));
                }
                self.last_state = Some(state.clone());
                self.since_last_state.clear();
                Ok(state)
            }
            Err(err) => {
                self.live = None;
                Err(state_error(&name, "save", err).to_string())
            }
        }
    }

    fn load_state(&mut self, state: Option<&[u8]>) -> Result<(), String> {
        self.last_state = state.map(<[u8]>::to_vec);
        self.since_last_state.clear();
        // A fresh instance loads `last_state` as it starts.
        self.live = None;
        self.live().map(|_| ()).map_err(|e| match e {
            PluginError::State { message, .. } => message,
            other => other.to_string(),
        })
    }
}

/// Read the name a process manager gets from its file: `welcome.wasm` → `welcome`.
pub(crate) fn name_from_path(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".into())
}

/// Hex SHA-256 of component bytes: their identity in the registry.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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
                 Cascade plugins get no outgoing HTTP"
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
