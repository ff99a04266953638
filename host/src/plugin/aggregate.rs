//! An aggregate component: `describe` once, `handle` per command, a fresh
//! instance after a trap.

use wasmtime::component::{Component, InstancePre};

use super::{instantiate, instantiate_error, wit_aggregate};
use crate::aggregate::{Aggregate, AggregateDescription, Decision, EventDeclaration};
use crate::error::PluginError;
use crate::event::NewEvent;
use crate::sandbox::{self, HostState, PluginEnv, Sandbox};

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
    pub(super) fn recover(&mut self, call: &str, trap: wasmtime::Error) -> anyhow::Error {
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
