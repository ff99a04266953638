//! A process manager or projection component: its handlers called per event,
//! a fresh instance after a trap. The guest keeps nothing between calls that
//! the host relies on: a per-instance process manager's state is the host's,
//! handed to each call through the `instance` interface.

use wasmtime::component::{Component, ComponentExportIndex, ComponentType, InstancePre, Lower, TypedFunc};

use super::{
    COLLECTIONS, HANDLER_SIGNATURE, INSTANCES, INSTANCES_SIGNATURE, Shape, instantiate, instantiate_error, wit,
    wit_instance, wit_projection,
};
use crate::error::PluginError;
use crate::event::Event;
use crate::host_api::Effects;
use crate::instance::{InstanceKey, InstanceRule, InstanceRules};
use crate::listener::{Context, Handler, HandlerError, Listener};
use crate::read_model::Collection;
use crate::sandbox::{self, HostState, PluginEnv, Sandbox};

/// `event` of `cascade:runtime/types`, lowered straight from the host's
/// [`Event`]: its strings are copied once, into guest memory, not cloned first.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(super) struct GuestEvent<'a> {
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
    pub(super) fn new(event: &'a Event) -> Self {
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

pub(super) type HandlerFunc<'a> = TypedFunc<(GuestEvent<'a>, wit::Context), (Result<(), wit::HandlerError>,)>;

/// A process manager implemented by a component: one live instance, its
/// handler functions typed once.
pub struct WasmListener {
    name: String,
    handlers: Vec<Handler>,
    indices: Vec<ComponentExportIndex>,
    /// For a per-instance process manager: its rules, read once at load.
    rules: Option<InstanceRules>,
    pre: InstancePre<HostState>,
    sandbox: std::sync::Arc<Sandbox>,
    env: PluginEnv,
    /// For a projection: the collections it owns.
    collections: Option<Vec<Collection>>,
    live: Option<Live>,
}

pub(super) struct Live {
    store: wasmtime::Store<HostState>,
    instance: wasmtime::component::Instance,
    /// Type-checked once; [`handler_func`] lends each call its event's lifetime.
    funcs: Vec<HandlerFunc<'static>>,
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
        let mut pm = WasmListener {
            name: name.to_owned(),
            handlers,
            indices,
            rules: None,
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
        if stateful {
            pm.rules = Some(pm.declared_rules()?);
        }
        Ok(pm)
    }

    pub(super) fn instantiate(&self) -> Result<Live, PluginError> {
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
        Ok(Live { store, instance, funcs })
    }

    /// Call the projection's `collections` export.
    pub(super) fn declared_collections(&mut self) -> Result<Vec<Collection>, PluginError> {
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

    /// Call the process manager's `instances` export.
    fn declared_rules(&mut self) -> Result<InstanceRules, PluginError> {
        let name = self.name.clone();
        let live = self.live()?;
        let wrong = |e: wasmtime::Error| PluginError::WrongSignature {
            plugin: name.clone(),
            export: INSTANCES.into(),
            expected: INSTANCES_SIGNATURE,
            found: format!("a different type ({:#})", anyhow::Error::from(e)),
        };
        let func = live
            .instance
            .get_typed_func::<(), (Vec<wit_instance::InstanceRule>,)>(&mut live.store, INSTANCES)
            .map_err(wrong)?;
        let (rules,) = func
            .call(&mut live.store, ())
            .map_err(|e| instantiate_error(&name, anyhow::Error::from(e).context("`instances` trapped")))?;
        let rules = rules
            .into_iter()
            .map(|rule| InstanceRule {
                event: rule.event,
                key: match rule.key {
                    wit_instance::InstanceKey::StreamId => InstanceKey::StreamId,
                    wit_instance::InstanceKey::CorrelationId => InstanceKey::CorrelationId,
                    wit_instance::InstanceKey::PayloadField(field) => InstanceKey::PayloadField(field),
                    wit_instance::InstanceKey::Single => InstanceKey::Single,
                },
                starts: rule.starts,
            })
            .collect();
        Ok(InstanceRules::new(rules))
    }

    pub(super) fn live(&mut self) -> Result<&mut Live, PluginError> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        Ok(self.live.as_mut().expect("instantiated above"))
    }
}

/// One handler call: its result, and the first limit it broke. What it
/// dispatched and logged goes into `effects`.
pub(super) fn call_handler(
    live: &mut Live,
    handler: usize,
    event: &Event,
    ctx: Context,
    effects: &mut Effects,
) -> (wasmtime::Result<Result<(), wit::HandlerError>>, Option<String>) {
    sandbox::arm(&mut live.store);
    live.store.data_mut().set_current_event(Some(event));
    live.store.data_mut().set_refreshing(ctx.refreshing);
    live.store.data_mut().set_instance(effects.instance.take());
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
    /// After a trap: a fresh instance at the next call. Nothing is replayed:
    /// whatever a guest keeps between calls, the host does not rely on.
    pub(super) fn recover(&mut self) {
        self.live = None;
    }
}

/// The checked handler function, for an event that lives as long as the call.
pub(super) fn handler_func<'a>(func: &HandlerFunc<'static>) -> HandlerFunc<'a> {
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
        match (result, violation) {
            // A broken limit (a sleep past the budget, a refused dispatch)
            // is why the call trapped: say that.
            (Err(_), Some(violation)) => {
                self.recover();
                Err(HandlerError::Failed(violation))
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
                Err(HandlerError::Failed(message))
            }
            // A broken limit fails the call even if the guest ignored the error.
            (Ok(_), Some(violation)) => Err(HandlerError::Failed(violation)),
            (Ok(Ok(())), None) => Ok(()),
            (Ok(Err(wit::HandlerError::Failed(message))), None) => Err(HandlerError::Failed(sandbox::truncate(
                message,
                sandbox::MAX_TEXT_BYTES,
            ))),
            (Ok(Err(wit::HandlerError::SkipRefreshing)), None) => Err(HandlerError::SkipRefreshing),
        }
    }

    fn instance_rules(&self) -> Option<&InstanceRules> {
        self.rules.as_ref()
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

    fn quotas(&self) -> crate::manifest::Quotas {
        self.env.manifest.limits().quotas
    }

    fn cascade_budget(&self) -> Option<usize> {
        self.env.manifest.limits.cascade_budget
    }

    fn effect_policy(&self) -> crate::manifest::EffectPolicy {
        self.env.manifest.effects
    }
}
