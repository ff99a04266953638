//! A process manager or projection component: its handlers called per event,
//! its state saved and loaded, a fresh instance after a trap.

use wasmtime::component::{Component, ComponentExportIndex, ComponentType, InstancePre, Lower, TypedFunc};

use super::{
    COLLECTIONS, HANDLER_SIGNATURE, LOAD_STATE, SAVE_STATE, Shape, instantiate, instantiate_error, wit, wit_projection,
};
use crate::error::PluginError;
use crate::event::Event;
use crate::host_api::Effects;
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

pub(super) type SaveStateFunc = TypedFunc<(), (Vec<u8>,)>;

pub(super) type LoadStateFunc = TypedFunc<(Option<Vec<u8>>,), ()>;

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

pub(super) struct Live {
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
    pub(super) fn recover(&mut self) {
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

pub(super) fn state_error(plugin: &str, action: &'static str, err: wasmtime::Error) -> PluginError {
    PluginError::State {
        plugin: plugin.to_owned(),
        action,
        message: format!("{:#}", anyhow::Error::from(err)),
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
