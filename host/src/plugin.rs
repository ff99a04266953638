//! Plugins: loading, validating and wrapping WebAssembly components.
//!
//! A component that exports `cascade:runtime/aggregate` is an aggregate; one
//! that exports `on-<event>` / `after-<event>` functions is a process
//! manager. The handler exports are discovered from the component's type,
//! their names mapped back to PascalCase events, and their signatures checked
//! once at load time; calls then go through typed functions looked up once.
//!
//! This file holds the contract's names and what every plugin shares
//! (instantiation, content hashes); `checks.rs` validates a component
//! (imports before any compile, exports and signatures after),
//! `aggregate.rs` wraps an aggregate and `listener.rs` a process manager or
//! projection.

use wasmtime::component::InstancePre;

use crate::error::PluginError;
use crate::listener::Handler;
pub use crate::records::{PluginKind, PluginRecord, PluginVersion};
use crate::sandbox::bindings::cascade::runtime::instance_types as wit_instance;
use crate::sandbox::bindings::cascade::runtime::projection_types as wit_projection;
use crate::sandbox::bindings::cascade::runtime::types as wit;
use crate::sandbox::bindings::exports::cascade::runtime::aggregate as wit_aggregate;
use crate::sandbox::{HostState, PluginEnv, Sandbox};

mod aggregate;
mod checks;
mod listener;

pub use aggregate::WasmAggregate;
pub(crate) use checks::{check_imports, exports_instances, inspect};
pub use listener::WasmListener;

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

/// The export that makes a process manager per-instance (stateful).
const INSTANCES: &str = "instances";
const INSTANCES_SIGNATURE: &str = "func() -> list<instance-rule>";

/// The export that makes a component a projection.
const COLLECTIONS: &str = "collections";

/// What the component's exports say it is.
pub(crate) enum Shape {
    Aggregate,
    ProcessManager { handlers: Vec<Handler>, stateful: bool },
    Projection { handlers: Vec<Handler> },
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

/// Read the name a process manager gets from its file: `welcome.wasm` → `welcome`.
pub fn name_from_path(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".into())
}
