//! Operator actions and registry reads through the handle, each a named
//! operation that runs on the writer between two batches: what the command
//! line, the server and an embedding program call instead of handing the
//! writer closures of their own.

use std::time::Instant;

use super::EngineHandle;
use crate::error::Error;
use crate::event::Command;
use crate::manifest::Manifest;
use crate::pipeline::{ListenerStats, Parked, RefreshReport, Skipped, TimerStats};
use crate::plugin::{PluginRecord, PluginVersion};
use crate::records::{Effect, InstanceRecord, Timer};
use crate::runtime::{InstanceSummary, PluginStatus, Runtime, Swap};
use crate::store::Verification;

impl EngineHandle {
    /// Run `f` on the writer; its error and a panic alike come back as the
    /// call's error.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Runtime) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.with_runtime(f).await?
    }

    /// Every plugin in registration order, with where it is.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn statuses(&self) -> Result<Vec<PluginStatus>, Error> {
        self.call(|runtime| runtime.statuses()).await
    }

    /// Every registered plugin's record.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn plugins(&self) -> Result<Vec<PluginRecord>, Error> {
        self.call(|runtime| Ok(runtime.plugins()?)).await
    }

    /// The versions plugin `name` has had, and the active one.
    ///
    /// # Errors
    ///
    /// An unknown plugin; a storage error; the engine stopped.
    pub async fn versions(&self, name: &str) -> Result<(Vec<PluginVersion>, u64), Error> {
        let name = name.to_owned();
        self.call(move |runtime| runtime.versions(&name)).await
    }

    /// The manifest of the active version of `name`; the defaults for a
    /// name not registered.
    ///
    /// # Errors
    ///
    /// The engine stopped.
    pub async fn active_manifest(&self, name: &str) -> Result<Manifest, Error> {
        let name = name.to_owned();
        self.call(move |runtime| Ok(runtime.active_version(&name).map(|v| v.manifest).unwrap_or_default()))
            .await
    }

    /// Make the newest version of `name` older than the active one active
    /// again (see [`Runtime::rollback`]); counted like a deploy.
    ///
    /// # Errors
    ///
    /// No older version; it does not load; the engine stopped.
    pub async fn rollback(&self, name: &str, swap: Swap) -> Result<PluginVersion, Error> {
        let (name, stats) = (name.to_owned(), self.stats.clone());
        self.call(move |runtime| {
            let started = Instant::now();
            let result = runtime.rollback(&name, &swap);
            stats.record_swap(result.is_ok(), started.elapsed());
            result
        })
        .await
    }

    /// Stop plugin `name`, recording that `by` did.
    ///
    /// # Errors
    ///
    /// An unknown listener; a storage error; the engine stopped.
    pub async fn stop_plugin(&self, name: &str, by: &str) -> Result<(), Error> {
        let (name, by) = (name.to_owned(), by.to_owned());
        self.call(move |runtime| runtime.stop_plugin(&name, &by)).await
    }

    /// Start a stopped plugin: it catches up from where it stopped. Returns
    /// the events it handled and, if it stopped again, where.
    ///
    /// # Errors
    ///
    /// An unknown listener; a storage error; the engine stopped.
    pub async fn start_plugin(&self, name: &str) -> Result<(u64, Option<u64>), Error> {
        let name = name.to_owned();
        self.call(move |runtime| {
            let handled = runtime.pipeline().start_listener(&name)?;
            let stopped = runtime.pipeline_ref().stopped();
            let at = stopped.iter().find(|(n, _)| *n == name).map(|(_, at)| *at);
            Ok((handled, at))
        })
        .await
    }

    /// Unregister plugin `name`; returns its record.
    ///
    /// # Errors
    ///
    /// An unknown plugin; a storage error; the engine stopped.
    pub async fn remove_plugin(&self, name: &str) -> Result<PluginRecord, Error> {
        let name = name.to_owned();
        self.call(move |runtime| runtime.remove_plugin(&name)).await
    }

    /// Up to `limit` instances of the per-instance process manager `name`
    /// after id `after` (see [`crate::Runtime::instances`]).
    ///
    /// # Errors
    ///
    /// An unknown or stateless process manager; a storage error; the engine
    /// stopped.
    pub async fn instances(
        &self,
        name: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<InstanceSummary>, Error> {
        let name = name.to_owned();
        self.call(move |runtime| runtime.instances(&name, after.as_deref(), limit))
            .await
    }

    /// Instance `id` of process manager `name` with its pending timers.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::instances`].
    pub async fn instance(&self, name: &str, id: &str) -> Result<Option<(InstanceRecord, Vec<Timer>)>, Error> {
        let (name, id) = (name.to_owned(), id.to_owned());
        self.call(move |runtime| runtime.instance(&name, &id)).await
    }

    /// Up to `limit` pending timers in due order after `after`, and how many
    /// are pending in all.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn timers(&self, after: Option<Timer>, limit: usize) -> Result<(Vec<Timer>, u64), Error> {
        self.call(move |runtime| runtime.timers(after.as_ref(), limit)).await
    }

    /// Up to `limit` effects in the outbox with keys after `after`, parked
    /// or not as `parked` says (see [`Runtime::effects`]), and how many are
    /// in it in all.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn effects(
        &self,
        after: Option<String>,
        limit: usize,
        parked: Option<bool>,
    ) -> Result<(Vec<Effect>, u64), Error> {
        self.call(move |runtime| runtime.effects(after.as_deref(), limit, parked))
            .await
    }

    /// Try parked effect `key` again (see [`crate::Pipeline::retry_effect`]).
    ///
    /// # Errors
    ///
    /// No such effect, or it is not parked; a storage error; the engine stopped.
    pub async fn retry_effect(&self, key: &str) -> Result<Effect, Error> {
        let key = key.to_owned();
        self.call(move |runtime| runtime.pipeline().retry_effect(&key)).await
    }

    /// Give up parked effect `key`: its plugin gets the failure as its
    /// outcome (see [`crate::Pipeline::skip_effect`]).
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::retry_effect`].
    pub async fn skip_effect(&self, key: &str, by: &str) -> Result<Effect, Error> {
        let (key, by) = (key.to_owned(), by.to_owned());
        self.call(move |runtime| {
            let effect = runtime.pipeline().skip_effect(&key, &by)?;
            // An engine that runs on demand has no loop of its own to deliver
            // it; steps, not `run_until_idle`, which would wait out a backoff.
            while runtime.pipeline().step()? > 0 {}
            Ok(effect)
        })
        .await
    }

    /// Move the test clock forward by `millis` ([`crate::clock`]); the writer
    /// then fires the timers that became due. Returns the new time.
    ///
    /// # Errors
    ///
    /// [`Error::NoTestClock`] when the host runs on the wall clock; the
    /// engine stopped.
    pub async fn advance_clock(&self, millis: u64) -> Result<u64, Error> {
        self.call(move |runtime| {
            let now = crate::clock::advance_test_clock(millis).ok_or(Error::NoTestClock)?;
            // An engine that runs on demand (the command line) has no loop of
            // its own to fire them.
            runtime.pipeline().run_until_idle()?;
            Ok(now)
        })
        .await
    }

    /// Replay the per-instance process manager `name`'s history into fresh
    /// instances, all or only `instance` (see [`crate::Pipeline::refresh`]);
    /// `progress` is told (events done, events in all).
    ///
    /// # Errors
    ///
    /// Not a per-instance process manager; a storage error; the engine stopped.
    pub async fn refresh(
        &self,
        name: &str,
        instance: Option<String>,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<RefreshReport, Error> {
        let name = name.to_owned();
        self.call(move |runtime| runtime.pipeline().refresh(&name, instance.as_deref(), &mut progress))
            .await
    }

    /// Replay every projection and refresh every stateful process manager
    /// (see [`crate::Pipeline::rebuild`]); `progress` is told (plugin,
    /// events done, events in all).
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::refresh`].
    pub async fn rebuild(
        &self,
        mut progress: impl FnMut(&str, u64, u64) + Send + 'static,
    ) -> Result<Vec<RefreshReport>, Error> {
        self.call(move |runtime| runtime.pipeline().rebuild(&mut progress))
            .await
    }

    /// Each listener's checkpoint, status and handler calls.
    ///
    /// # Errors
    ///
    /// The engine stopped.
    pub async fn listener_stats(&self) -> Result<Vec<ListenerStats>, Error> {
        self.call(|runtime| Ok(runtime.pipeline_ref().listener_stats())).await
    }

    /// Timers fired since the engine started and how late, and how many are
    /// pending.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn timer_stats(&self) -> Result<(TimerStats, u64), Error> {
        self.call(|runtime| {
            let (_, pending) = runtime.timers(None, 0)?;
            Ok((runtime.pipeline_ref().timer_stats().clone(), pending))
        })
        .await
    }

    /// Events parked after their handler failed every attempt, by id.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn parked(&self) -> Result<Vec<(u64, Parked)>, Error> {
        self.call(|runtime| Ok(runtime.pipeline_ref().parked()?)).await
    }

    /// Call parked event `id`'s handler again and run what it dispatches;
    /// `Some(new id)` when it failed and was parked again.
    ///
    /// # Errors
    ///
    /// An unknown id; a storage error; the engine stopped.
    pub async fn retry_parked(&self, id: u64) -> Result<Option<u64>, Error> {
        self.call(move |runtime| runtime.pipeline().retry_parked(id)).await
    }

    /// Drop parked event `id`, recording that `by` skipped it.
    ///
    /// # Errors
    ///
    /// An unknown id; a storage error; the engine stopped.
    pub async fn skip_parked(&self, id: u64, by: &str) -> Result<Skipped, Error> {
        let by = by.to_owned();
        self.call(move |runtime| runtime.pipeline().skip_parked(id, &by)).await
    }

    /// Queued commands grouped by cascade: (correlation id, how many, the
    /// oldest), oldest cascade first.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn queue(&self) -> Result<Vec<(String, u64, Command)>, Error> {
        self.call(|runtime| Ok(runtime.pipeline_ref().queue()?)).await
    }

    /// Drop every queued command of cascade `correlation_id`, recording
    /// that `by` did; returns how many.
    ///
    /// # Errors
    ///
    /// An unknown cascade; a storage error; the engine stopped.
    pub async fn cancel(&self, correlation_id: &str, by: &str) -> Result<u64, Error> {
        let (id, by) = (correlation_id.to_owned(), by.to_owned());
        self.call(move |runtime| runtime.pipeline().cancel(&id, &by)).await
    }

    /// Every check the store can make of itself. A damaged page that makes
    /// redb panic is a finding too, not a failure of the call.
    ///
    /// # Errors
    ///
    /// A storage error; the engine stopped.
    pub async fn verify(&self) -> Result<Verification, Error> {
        self.call(|runtime| {
            let store = runtime.pipeline_ref().store();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.verify())) {
                Ok(verification) => Ok(verification?),
                Err(panic) => {
                    let mut v = Verification::default();
                    v.problems.push(format!(
                        "the file's structure is damaged: redb failed reading it: {}",
                        crate::text::one_line(crate::text::panic_message(panic.as_ref()))
                    ));
                    Ok(v)
                }
            }
        })
        .await
    }
}
