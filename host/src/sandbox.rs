//! The sandbox: one wasmtime [`Engine`], the [`Linker`] with the host's
//! imports, and the per-plugin store state with its [`Limits`].
//!
//! Guests get no ambient authority: WASI is linked because Rust's std imports
//! it, but with no preopened directories, no environment, no arguments and no
//! network; stdio goes nowhere. What a guest can do is what the Cascade
//! imports offer: queue commands, query read models, write its own read
//! models (projections), keep its instance's state and timers, read its
//! configuration, log. Its wall clock says the handled event's time.
//!
//! Every call runs under a time budget (epoch interruption: a ticker thread
//! advances the engine's epoch every [`TICK`]) and a memory cap; a guest that
//! exceeds either traps, and the caller replaces its store.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::effect::{EffectRequest, HttpRequest, MAX_EFFECTS_PER_CALL, Refusal, check_request};
use crate::event::{Command, Envelope, Event};
use crate::host_api::{AggregateNames, DocumentAccess, Effects, Level};
use crate::instance::{InstanceCall, MAX_TIMER_NAME_BYTES, MAX_TIMER_PAYLOAD_BYTES, TimerRequest};
use crate::text::one_line;

mod clock;
mod output;

/// Host-side bindings of `cascade:runtime`, generated from `wit/`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cascade:runtime/host",
    });
}

use bindings::cascade::runtime::{
    commands, config, effects, event_envelope, instance, instance_types, log, projection_types, read_model_writer,
    read_models, timers, types,
};

use crate::error::QueryError;
pub use crate::manifest::Limits;
use crate::manifest::Manifest;

/// Bytes kept of one log line or one failure message from a guest; the rest
/// is cut with a note (see [`truncate`]).
pub(crate) const MAX_TEXT_BYTES: usize = 4096;

/// How often the engine's epoch advances: the granularity of time budgets.
pub const TICK: Duration = Duration::from_millis(5);

/// Epoch ticks that cover `limits`' time budget (at least one whole budget).
fn deadline_ticks(limits: &Limits) -> u64 {
    (limits.time_budget.as_nanos() / TICK.as_nanos()) as u64 + 1
}

/// Bytes one table element is counted as: a function reference and its
/// instance, on 64-bit hosts.
const TABLE_ELEMENT_BYTES: usize = 16;

/// Counts every memory and table of a plugin's instance together and denies
/// growth past the cap (a component may define many memories), remembering
/// that it did so the trap that follows can be reported as what it is.
struct MemoryCap {
    max: usize,
    used: usize,
    hit: bool,
}

impl MemoryCap {
    fn grow(&mut self, from: usize, to: usize) -> bool {
        let next = self.used.saturating_add(to.saturating_sub(from));
        if next > self.max {
            self.hit = true;
            return false;
        }
        self.used = next;
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

/// What every store of one plugin is given: the read models, and the
/// plugin's manifest (its grants and limits).
#[derive(Clone)]
pub struct PluginEnv {
    /// The read models of the data directory.
    pub read_models: Arc<dyn DocumentAccess>,
    /// The plugin's manifest.
    pub manifest: Manifest,
    /// The registered aggregates' stream types.
    pub(crate) aggregates: AggregateNames,
}

/// The state every plugin's wasmtime `Store` carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The plugin's name: the owner its read-model writes are checked against.
    plugin: String,
    read_models: Arc<dyn DocumentAccess>,
    manifest: Manifest,
    aggregates: AggregateNames,
    /// Position of the event the current handler call received (0: none),
    /// and its envelope, for `event-envelope.get`.
    current_position: u64,
    current_envelope: Envelope,
    /// The current call's instance (per-instance process managers only).
    instance: Option<InstanceCall>,
    /// The handler's time, milliseconds since the Unix epoch: what the
    /// guest's wall clock says (the event's `created-at`, so a refresh sees
    /// the time the live call saw); 0 outside a handler call (an aggregate's
    /// `handle`, loading), where it is the host's clock.
    call_time: Arc<AtomicU64>,
    /// Commands dispatched during the current call.
    pub(crate) dispatched: Vec<Command>,
    /// HTTP requests made during the current call.
    requested: Vec<EffectRequest>,
    /// Whether the current call is part of a refresh: its requests are
    /// dropped, so they are not checked against grants a redeploy may not
    /// have repeated.
    refreshing: bool,
    /// Lines logged during the current call.
    pub(crate) logs: Vec<(Level, String)>,
    /// Log lines dropped in the current call for exceeding the limit.
    dropped_logs: usize,
    /// Bytes the current call handed the host (commands, log lines).
    call_bytes: usize,
    /// The first limit the guest broke in the current call: the call fails
    /// even if the guest ignores the error it got.
    pub(crate) violation: Option<String>,
    limits: Limits,
    memory: MemoryCap,
    /// Where the guest's monotonic clock starts.
    clock_origin: std::time::Instant,
    /// When the current call's time budget runs out; sleeps end there.
    call_deadline: std::time::Instant,
    stdout: output::Output,
    stderr: output::Output,
}

impl HostState {
    fn new(plugin: &str, env: &PluginEnv) -> Self {
        let limits = env.manifest.limits();
        let (stdout, stderr) = (output::Output::default(), output::Output::default());
        let clock_origin = std::time::Instant::now();
        let call_time = Arc::new(AtomicU64::new(0));
        HostState {
            // The builder's defaults grant nothing: no preopens, no env, no
            // args, no sockets; stdout and stderr go to the host's log.
            wasi: WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                // Sockets link but grant nothing: no TCP, no UDP, no lookups,
                // and (the default) every address refused.
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .monotonic_clock(clock::GuestClock(clock_origin))
                .wall_clock(clock::CallTime(call_time.clone()))
                .build(),
            call_time,
            instance: None,
            clock_origin,
            call_deadline: clock_origin,
            stdout,
            stderr,
            table: ResourceTable::new(),
            plugin: plugin.to_owned(),
            read_models: env.read_models.clone(),
            manifest: env.manifest.clone(),
            aggregates: env.aggregates.clone(),
            current_position: 0,
            current_envelope: Envelope::default(),
            dispatched: Vec::new(),
            requested: Vec::new(),
            refreshing: false,
            logs: Vec::new(),
            dropped_logs: 0,
            call_bytes: 0,
            violation: None,
            memory: MemoryCap {
                max: limits.memory_bytes,
                used: 0,
                hit: false,
            },
            limits,
        }
    }

    /// The plugin's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Memory (linear memories and tables) the instance holds now.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory.used
    }

    /// Whether growth past the memory cap was denied since the last arm.
    pub(crate) fn memory_cap_hit(&self) -> bool {
        self.memory.hit
    }

    /// Keep `event`'s envelope at hand for the next handler call, or none.
    /// The buffers are reused, so this allocates nothing once warm.
    pub(crate) fn set_current_event(&mut self, event: Option<&Event>) {
        let Some(event) = event else {
            self.current_position = 0;
            self.call_time.store(0, Ordering::Relaxed);
            return;
        };
        self.current_position = event.position;
        self.call_time.store(event.created_at, Ordering::Relaxed);
        let envelope = &mut self.current_envelope;
        envelope.metadata.clone_from(&event.metadata);
        envelope.actor_id.clone_from(&event.actor_id);
        envelope.causation_id.clone_from(&event.causation_id);
        envelope.correlation_id.clone_from(&event.correlation_id);
    }

    /// Whether the next call is part of a refresh.
    pub(crate) fn set_refreshing(&mut self, refreshing: bool) {
        self.refreshing = refreshing;
    }

    /// Give the next call its instance (`None`: the process manager has none).
    pub(crate) fn set_instance(&mut self, instance: Option<InstanceCall>) {
        self.instance = instance;
    }

    /// Move what the last call produced into `effects`: dispatched commands
    /// and logs (guest stdout/stderr lines, notes of dropped output), and
    /// its instance as the call left it; returns the first limit it broke.
    pub(crate) fn move_call_effects(&mut self, effects: &mut Effects) -> Option<String> {
        effects.instance = self.instance.take();
        // Appended, not taken: these buffers keep their capacity.
        effects.commands.append(&mut self.dispatched);
        effects.requests.append(&mut self.requested);
        effects.logs.append(&mut self.logs);
        for (stream, level, name) in [
            (&self.stdout, Level::Info, "stdout"),
            (&self.stderr, Level::Warn, "stderr"),
        ] {
            let (text, dropped) = stream.take();
            effects
                .logs
                .extend(text.lines().map(|line| (level, format!("{name}: {line}"))));
            if dropped > 0 {
                let cap = output::CAP;
                effects.logs.push((
                    Level::Warn,
                    format!("{name}: {dropped} more byte(s) dropped: limit is {cap} per call"),
                ));
            }
        }
        if self.dropped_logs > 0 {
            let note = format!(
                "{} more log line(s) dropped: limits are {} lines and {} bytes per call",
                self.dropped_logs, self.limits.max_log_lines, self.limits.max_call_bytes
            );
            effects.logs.push((Level::Warn, note));
            self.dropped_logs = 0;
        }
        self.violation.take()
    }

    /// What the guest wrote to stderr since the last take.
    pub(crate) fn take_stderr(&mut self) -> String {
        self.stderr.take().0
    }

    fn refuse(&mut self, message: String) -> String {
        self.violation.get_or_insert_with(|| message.clone());
        message
    }

    /// The guest's answer to a host call that may be refused: what is
    /// outside its grants or quotas fails the call even if the guest
    /// swallows the error, like an ungranted dispatch; a malformed one is
    /// the guest's to handle.
    fn refused(&mut self, result: Result<(), Refusal>) -> Result<(), String> {
        match result {
            Ok(()) => Ok(()),
            Err(Refusal::NotGranted(message)) => Err(self.refuse(message)),
            Err(Refusal::Malformed(message)) => Err(message),
        }
    }
}

/// Arm the time budget for the next call into `store`.
pub(crate) fn arm(store: &mut wasmtime::Store<HostState>) {
    let ticks = deadline_ticks(&store.data().limits);
    store.set_epoch_deadline(ticks);
    let state = store.data_mut();
    state.memory.hit = false;
    state.call_bytes = 0;
    state.call_deadline = std::time::Instant::now() + state.limits.time_budget;
}

/// Say what a trap was, in the plugin author's terms.
pub(crate) fn describe_trap(err: wasmtime::Error, state: &HostState, stderr: &str) -> String {
    let limits = &state.limits;
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "exceeded its time budget of {:?} and was interrupted; make the handler faster or raise the plugin's time budget",
            limits.time_budget
        ),
        Some(wasmtime::Trap::StackOverflow) => "overflowed its stack (unbounded recursion?)".to_owned(),
        _ if state.memory.hit => format!(
            "ran out of its memory limit of {} MiB and trapped; use less memory or raise the plugin's memory limit",
            limits.memory_bytes >> 20
        ),
        // One line: the guest's own panic message when it printed one, else
        // the trap's root cause; the wasm backtrace stays out of it.
        _ => match panic_message(stderr) {
            Some(panic) => format!("trapped: {panic}"),
            None => format!(
                "trapped: {}",
                one_line(&anyhow::Error::from(err).root_cause().to_string())
            ),
        },
    }
}

/// The message of a Rust guest's panic in what it wrote to stderr:
/// `thread '..' panicked at src/lib.rs:3:5:` then the message lines.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines().map(|l| l.strip_prefix("stderr: ").unwrap_or(l));
    while let Some(line) = lines.next() {
        if let Some(at) = line.find(" panicked at ") {
            let location = line[at + " panicked at ".len()..].trim_end_matches(':');
            let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
            return Some(format!("panicked: {} (at {location})", message.join(" ")));
        }
    }
    None
}

/// Cut `text` to at most `max` bytes on a character boundary, saying so.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("... (truncated from {total} bytes)"));
    // What is kept is small; the guest's allocation is not.
    text.shrink_to_fit();
    text
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl event_envelope::Host for HostState {
    fn get(&mut self, position: u64) -> Option<types::Envelope> {
        if position == 0 || position != self.current_position {
            return None;
        }
        let envelope = &self.current_envelope;
        Some(types::Envelope {
            metadata: envelope.metadata.clone(),
            actor_id: envelope.actor_id.clone(),
            causation_id: envelope.causation_id.clone(),
            correlation_id: envelope.correlation_id.clone(),
        })
    }
}

impl commands::Host for HostState {
    fn dispatch(&mut self, cmd: types::Command) -> Result<(), String> {
        if !self.manifest.may_dispatch(&cmd.stream_type, &cmd.name) {
            let granted = crate::text::quoted_list(self.manifest.capabilities.dispatch.iter().map(String::as_str));
            let message = format!(
                "`{}` may not dispatch `{}.{}` (granted: {granted}); add it to `dispatch` under \
                 [capabilities] in the plugin's manifest",
                self.plugin, cmd.stream_type, cmd.name
            );
            return Err(self.refuse(message));
        }
        {
            let known = self.aggregates.read().unwrap_or_else(|p| p.into_inner());
            if !known.contains(&cmd.stream_type) {
                return Err(format!(
                    "no aggregate `{}` is registered (registered: {}); the command to `{}:{}` was not queued",
                    cmd.stream_type,
                    crate::text::quoted_list(known.iter().map(String::as_str)),
                    cmd.stream_type,
                    cmd.stream_id
                ));
            }
        }
        if self.dispatched.len() >= self.limits.max_dispatches {
            let max = self.limits.max_dispatches;
            return Err(self.refuse(format!("dispatched more than {max} commands in one call")));
        }
        if cmd.args.len() > self.limits.max_message_bytes {
            let message = format!(
                "args of command `{}` are {} bytes; the limit is {}",
                cmd.name,
                cmd.args.len(),
                self.limits.max_message_bytes
            );
            return Err(self.refuse(message));
        }
        let bytes = cmd.args.len() + cmd.stream_type.len() + cmd.stream_id.len() + cmd.name.len();
        if self.call_bytes + bytes > self.limits.max_call_bytes {
            let max = self.limits.max_call_bytes;
            return Err(self.refuse(format!(
                "handed the host more than {max} bytes in one call (dispatched commands and log lines together)"
            )));
        }
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&cmd.args) {
            return Err(format!(
                "args of command `{}` to `{}:{}` are not valid JSON: {err}",
                cmd.name, cmd.stream_type, cmd.stream_id
            ));
        }
        self.call_bytes += bytes;
        self.dispatched.push(Command {
            stream_type: cmd.stream_type,
            stream_id: cmd.stream_id,
            name: cmd.name,
            args: cmd.args,
            actor_id: cmd.actor_id,
        });
        Ok(())
    }
}

impl projection_types::Host for HostState {}

impl instance_types::Host for HostState {}

impl HostState {
    /// The current call's instance, or why there is none.
    fn current_instance(&mut self) -> Result<&mut InstanceCall, String> {
        let plugin = &self.plugin;
        self.instance.as_mut().ok_or_else(|| {
            format!(
                "`{plugin}` has no instances: a process manager that keeps state or timers exports \
                 `instances` (the SDKs' stateful process manager does)"
            )
        })
    }
}

impl instance::Host for HostState {
    fn id(&mut self) -> String {
        self.instance.as_ref().map(|i| i.id.clone()).unwrap_or_default()
    }

    fn state(&mut self) -> Option<Vec<u8>> {
        self.instance.as_ref().and_then(|i| i.state.clone())
    }

    fn set_state(&mut self, state: Vec<u8>) {
        let max = self.limits.max_state_bytes;
        if state.len() > max {
            let message = format!(
                "state of {} bytes exceeds the limit of {max} bytes per instance",
                state.len()
            );
            self.refuse(message);
            return;
        }
        match self.current_instance() {
            Ok(instance) => {
                instance.state = Some(state);
                instance.state_set = true;
            }
            Err(message) => {
                self.refuse(message);
            }
        }
    }

    fn complete(&mut self) {
        match self.current_instance() {
            Ok(instance) => instance.completed = true,
            Err(message) => {
                self.refuse(message);
            }
        }
    }
}

impl timers::Host for HostState {
    fn schedule(&mut self, name: String, due: timers::Due, payload: String) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_TIMER_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(format!(
                "timer name `{}` must be 1 to {MAX_TIMER_NAME_BYTES} bytes without control characters",
                one_line(&name)
            ));
        }
        if payload.len() > MAX_TIMER_PAYLOAD_BYTES {
            return Err(format!(
                "payload of timer `{name}` is {} bytes; the limit is {MAX_TIMER_PAYLOAD_BYTES}",
                payload.len()
            ));
        }
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
            return Err(format!("payload of timer `{name}` is not valid JSON: {err}"));
        }
        let instance = self.current_instance()?;
        let due = match due {
            timers::Due::At(at) => at,
            timers::Due::After(ms) => instance.now.saturating_add(ms),
        };
        instance.timers.push(TimerRequest::Schedule { name, due, payload });
        Ok(())
    }

    fn cancel(&mut self, name: String) {
        match self.current_instance() {
            Ok(instance) => instance.timers.push(TimerRequest::Cancel { name }),
            Err(message) => {
                self.refuse(message);
            }
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.manifest.config_value(&key).cloned()
    }
}

impl effects::Host for HostState {
    fn request(&mut self, name: String, request: effects::HttpRequest) -> Result<(), String> {
        let request = HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        // During a refresh the request is dropped, never performed: it needs
        // no grant (a redeploy may not have repeated its `--grant`).
        let checked = match self.refreshing {
            true => Ok(()),
            false => check_request(&self.plugin, &name, &request, &self.manifest.capabilities.http),
        };
        self.refused(checked)?;
        if self.requested.len() >= MAX_EFFECTS_PER_CALL {
            return Err(self.refuse(format!(
                "requested more than {MAX_EFFECTS_PER_CALL} effects in one call"
            )));
        }
        let headers: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let bytes = request.body.len() + request.url.len() + headers;
        if self.call_bytes + bytes > self.limits.max_call_bytes {
            let max = self.limits.max_call_bytes;
            return Err(self.refuse(format!(
                "handed the host more than {max} bytes in one call (commands, requests and log lines together)"
            )));
        }
        self.call_bytes += bytes;
        self.requested.push(EffectRequest { name, request });
        Ok(())
    }
}

fn query_error(err: QueryError) -> read_models::QueryError {
    match err {
        QueryError::UnknownCollection { .. } => read_models::QueryError::UnknownCollection(err.to_string()),
        QueryError::NotIndexed { .. } => read_models::QueryError::NotIndexed(err.to_string()),
        _ => read_models::QueryError::Invalid(err.to_string()),
    }
}

fn documents(docs: Vec<(String, String)>) -> Vec<read_models::Document> {
    docs.into_iter()
        .map(|(id, body)| read_models::Document { id, body })
        .collect()
}

impl HostState {
    /// Refuse a query of a collection the plugin was not granted (a
    /// projection may read what it writes), before anything is looked up:
    /// a refusal says nothing about whether the collection exists.
    fn check_read(&mut self, collection: &str) -> Result<(), read_models::QueryError> {
        if self.manifest.may_read(collection) || self.read_models.owns(&self.plugin, collection) {
            return Ok(());
        }
        let granted = crate::text::quoted_list(self.manifest.capabilities.read.iter().map(String::as_str));
        let message = format!(
            "`{}` may not read collection `{collection}` (granted: {granted}); add it to `read` under \
             [capabilities] in the plugin's manifest, or deploy with `--grant read={collection}`",
            self.plugin
        );
        Err(read_models::QueryError::Invalid(self.refuse(message)))
    }
}

impl read_models::Host for HostState {
    fn get(&mut self, collection: String, id: String) -> Result<Option<String>, read_models::QueryError> {
        self.check_read(&collection)?;
        self.read_models.get(&collection, &id).map_err(query_error)
    }

    fn find(
        &mut self,
        collection: String,
        field: String,
        value: String,
    ) -> Result<Vec<read_models::Document>, read_models::QueryError> {
        self.check_read(&collection)?;
        let docs = self
            .read_models
            .find(&collection, &field, &value)
            .map_err(query_error)?;
        Ok(documents(docs))
    }

    fn list(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<read_models::Page, read_models::QueryError> {
        self.check_read(&collection)?;
        let (docs, next) = self
            .read_models
            .list(&collection, after.as_deref(), limit as usize)
            .map_err(query_error)?;
        Ok(read_models::Page {
            documents: documents(docs),
            next,
        })
    }
}

impl read_model_writer::Host for HostState {
    fn put(&mut self, collection: String, id: String, body: String) -> Result<(), String> {
        let written = self.read_models.put(&self.plugin, &collection, &id, &body);
        self.refused(written)
    }

    fn delete(&mut self, collection: String, id: String) -> Result<(), String> {
        let deleted = self.read_models.delete(&self.plugin, &collection, &id);
        self.refused(deleted)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        let message = truncate(message, MAX_TEXT_BYTES);
        if self.logs.len() >= self.limits.max_log_lines || self.call_bytes + message.len() > self.limits.max_call_bytes
        {
            self.dropped_logs += 1;
            return;
        }
        self.call_bytes += message.len();
        self.logs.push((level, message));
    }
}

/// The engine and linker shared by every plugin.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    /// Stops the epoch ticker thread when the sandbox goes away.
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// An engine with the component model and a linker with every import a
    /// Cascade guest may use. `epoch_interruption` enforces time budgets; it
    /// is off only to measure its cost.
    ///
    /// # Errors
    ///
    /// wasmtime rejected the configuration.
    pub fn new(epoch_interruption: bool) -> anyhow::Result<Sandbox> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(epoch_interruption);
        let engine = Engine::new(&config)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("cascade-epoch".into())
            .spawn(move || {
                while !ticker.1.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker.0.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the epoch ticker: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        clock::add_to_linker(&mut linker)?;
        bindings::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Sandbox {
            engine,
            linker,
            stop_ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// A fresh store for one instance of `plugin`, under its manifest's limits.
    pub fn new_store(&self, plugin: &str, env: &PluginEnv) -> wasmtime::Store<HostState> {
        let mut store = wasmtime::Store::new(&self.engine, HostState::new(plugin, env));
        store.limiter(|state| &mut state.memory);
        arm(&mut store);
        store
    }

    /// Key of a precompiled artifact: content hash plus this engine's
    /// compatibility, so an upgraded wasmtime recompiles instead of loading
    /// incompatible code.
    pub fn artifact_key(&self, hash: &str) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{hash}-{:016x}", hasher.finish())
    }

    /// Compile component bytes.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid component.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        Ok(Component::new(&self.engine, bytes)?)
    }

    /// Load an artifact made by [`Component::serialize`] with this engine.
    ///
    /// # Safety
    ///
    /// `artifact` runs as native code: it must be bytes this engine's
    /// `Component::serialize` produced, read back unchanged (the store
    /// checks each artifact's checksum before handing it out).
    ///
    /// # Errors
    ///
    /// The artifact is not compatible with this engine.
    pub(crate) unsafe fn deserialize(&self, artifact: &[u8]) -> anyhow::Result<Component> {
        // SAFETY: the caller's contract above.
        Ok(unsafe { Component::deserialize(&self.engine, artifact) }?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose one core instance defines `count` memories of
    /// `mib` MiB each.
    fn component_with_memories(count: usize, mib: u64) -> Vec<u8> {
        use wasm_encoder::{InstanceSection, MemorySection, MemoryType, Module, ModuleSection};
        let mut memories = MemorySection::new();
        for _ in 0..count {
            memories.memory(MemoryType {
                minimum: mib * 16,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut module = Module::new();
        module.section(&memories);
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        let mut component = wasm_encoder::Component::new();
        component.section(&ModuleSection(&module)).section(&instances);
        component.finish()
    }

    /// No collections: the sandbox sees read models only through
    /// [`DocumentAccess`], so its tests need no store.
    struct NoDocuments;

    impl DocumentAccess for NoDocuments {
        fn get(&self, collection: &str, _: &str) -> Result<Option<String>, QueryError> {
            Err(QueryError::Invalid(format!("no collection `{collection}`")))
        }

        fn find(&self, collection: &str, _: &str, _: &str) -> Result<Vec<(String, String)>, QueryError> {
            Err(QueryError::Invalid(format!("no collection `{collection}`")))
        }

        fn list(
            &self,
            collection: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<(Vec<(String, String)>, Option<String>), QueryError> {
            Err(QueryError::Invalid(format!("no collection `{collection}`")))
        }

        fn put(&self, _: &str, collection: &str, _: &str, _: &str) -> Result<(), Refusal> {
            Err(Refusal::NotGranted(format!("no collection `{collection}`")))
        }

        fn delete(&self, _: &str, collection: &str, _: &str) -> Result<(), Refusal> {
            Err(Refusal::NotGranted(format!("no collection `{collection}`")))
        }

        fn owns(&self, plugin: &str, collection: &str) -> bool {
            (plugin, collection) == ("probe", "own")
        }
    }

    fn env() -> PluginEnv {
        PluginEnv {
            read_models: Arc::new(NoDocuments),
            manifest: Manifest::default(),
            aggregates: Default::default(),
        }
    }

    #[test]
    fn the_memory_cap_counts_every_memory_of_an_instance_together() {
        let sandbox = Sandbox::new(true).unwrap();
        let env = env();
        let start = |count: usize, mib: u64| {
            let component = sandbox.compile(&component_with_memories(count, mib)).unwrap();
            let mut store = sandbox.new_store("hog", &env);
            let started = sandbox.linker().instantiate(&mut store, &component).is_ok();
            (started, store.data().memory_cap_hit())
        };
        // The default cap is 64 MiB: one memory of 40 fits, two do not, nor
        // do forty of 2 MiB.
        assert_eq!(start(1, 40), (true, false));
        assert_eq!(start(2, 40), (false, true));
        assert_eq!(start(40, 2), (false, true));
        assert_eq!(start(30, 2), (true, false));
    }

    fn event(position: u64, correlation_id: &str) -> Event {
        Event {
            position,
            name: "UserCreated".into(),
            stream_type: "users".into(),
            stream_id: "u1".into(),
            stream_version: 1,
            payload: "{}".into(),
            metadata: r#"{"k":1}"#.into(),
            actor_id: Some("ada".into()),
            causation_id: format!("c{position}"),
            correlation_id: correlation_id.into(),
            created_at: 0,
        }
    }

    #[test]
    fn a_query_of_an_ungranted_collection_is_refused_before_it_is_looked_up() {
        let mut env = env();
        env.manifest.capabilities.read = vec!["profiles".into()];
        let mut state = HostState::new("probe", &env);
        use read_models::Host;
        let refused = |result: Result<Option<String>, read_models::QueryError>| match result {
            Err(read_models::QueryError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let message = refused(state.get("projects".into(), "p1".into()));
        assert!(message.contains("may not read collection `projects`"), "{message}");
        assert!(message.contains("--grant read=projects"), "{message}");
        // Granted, or its own: looked up (and here unknown to the store).
        let looked_up = refused(state.get("profiles".into(), "a".into()));
        assert!(looked_up.starts_with("no collection `profiles`"), "{looked_up}");
        let own = refused(state.get("own".into(), "a".into()));
        assert!(own.starts_with("no collection `own`"), "{own}");
        assert!(state.list("projects".into(), None, 10).is_err());
        assert!(state.find("projects".into(), "f".into(), "1".into()).is_err());
    }

    #[test]
    fn the_envelope_is_only_given_for_the_event_of_the_current_call() {
        let env = env();
        let mut state = HostState::new("probe", &env);
        use event_envelope::Host;
        assert!(state.get(0).is_none(), "no call yet");

        state.set_current_event(Some(&event(7, "k7")));
        let envelope = state.get(7).expect("the current event's envelope");
        assert_eq!(envelope.correlation_id, "k7");
        assert_eq!(envelope.causation_id, "c7");
        assert_eq!(envelope.actor_id.as_deref(), Some("ada"));
        assert_eq!(envelope.metadata, r#"{"k":1}"#);
        assert!(state.get(6).is_none(), "an earlier event");

        // The buffers are reused: a shorter envelope leaves nothing behind.
        let mut next = event(8, "k");
        next.actor_id = None;
        state.set_current_event(Some(&next));
        let envelope = state.get(8).unwrap();
        assert_eq!((envelope.correlation_id.as_str(), envelope.actor_id), ("k", None));
        assert!(state.get(7).is_none());

        state.set_current_event(None);
        assert!(state.get(8).is_none(), "between calls");
    }
}
