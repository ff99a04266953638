//! Listeners: process managers (and, later, projections) that the pipeline
//! calls for each event, phase by phase.
//!
//! A [`Listener`] declares its handlers once; the pipeline routes each event
//! to the handlers that name it and passes the handler's index back, so the
//! per-event path does no lookup by name inside the listener.

use heck::ToKebabCase;

use crate::event::Event;
use crate::host_api::Effects;
use crate::instance::InstanceRules;

/// When a handler runs for an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Phase 1: `on-<event>`, alongside every other listener's `on-` handler.
    On,
    /// Phase 2: `after-<event>`, once phase 1 finished everywhere.
    After,
}

/// One handler: a phase and the event it handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// The phase.
    pub phase: Phase,
    /// PascalCase event name.
    pub event: String,
}

impl Handler {
    /// An `on-` handler of `event`.
    pub fn on(event: &str) -> Self {
        Handler {
            phase: Phase::On,
            event: event.to_owned(),
        }
    }

    /// An `after-` handler of `event`.
    pub fn after(event: &str) -> Self {
        Handler {
            phase: Phase::After,
            event: event.to_owned(),
        }
    }

    /// The component export implementing it, e.g. `on-user-created`.
    pub fn export_name(&self) -> String {
        let prefix = match self.phase {
            Phase::On => "on-",
            Phase::After => "after-",
        };
        format!("{prefix}{}", self.event.to_kebab_case())
    }
}

/// What the host tells a handler about the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// True while history is replayed.
    pub refreshing: bool,
}

/// Why a handler did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerError {
    /// The handler failed (or, for WASM, trapped) with this message.
    Failed(String),
    /// The handler chose not to run while refreshing.
    SkipRefreshing,
}

/// A process manager, native or WASM.
pub trait Listener: Send {
    /// Unique name; checkpoints and failures are recorded under it.
    fn name(&self) -> &str;

    /// Every handler; the pipeline passes an index into this slice to
    /// [`Listener::handle`].
    fn handlers(&self) -> &[Handler];

    /// Run handler number `handler` for `event`, pushing dispatched commands
    /// and logs into `effects`. When the call fails, the caller drops the
    /// commands it pushed: a failed call is atomic.
    ///
    /// # Errors
    ///
    /// The handler's failure.
    fn handle(
        &mut self,
        handler: usize,
        event: &Event,
        ctx: Context,
        effects: &mut Effects,
    ) -> Result<(), HandlerError>;

    /// For a projection: the collections it owns (it may only write those).
    /// `None` for a process manager.
    fn collections(&self) -> Option<&[crate::read_model::Collection]> {
        None
    }

    /// What happens when a handler fails: how many attempts, then park the
    /// event or stop the listener. Native listeners park after one attempt.
    fn on_error(&self) -> crate::manifest::OnError {
        crate::manifest::OnError {
            attempts: 1,
            policy: crate::manifest::Policy::Park,
        }
    }

    /// How its effects are performed, from its manifest.
    fn effect_policy(&self) -> crate::manifest::EffectPolicy {
        crate::manifest::EffectPolicy::default()
    }

    /// The budget of events and commands for cascades this listener
    /// dispatches into, from its manifest; `None`: the host's.
    fn cascade_budget(&self) -> Option<usize> {
        None
    }

    /// What it may accumulate in the store, from its manifest.
    fn quotas(&self) -> crate::manifest::Quotas {
        crate::manifest::Quotas::UNBOUNDED
    }

    /// Memory (linear memories and tables) of its sandbox instance, when one
    /// is live; `None` for a native listener.
    fn memory_bytes(&self) -> Option<u64> {
        None
    }

    /// For a per-instance process manager: which instance each event
    /// belongs to. The pipeline then hands each call its instance
    /// ([`Effects::instance`]) and stores what the call did to it.
    fn instance_rules(&self) -> Option<&InstanceRules> {
        None
    }
}
