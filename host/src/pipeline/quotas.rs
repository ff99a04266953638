//! The quotas of what a listener accumulates in the store, checked by the
//! batch around a call: live instances before a call that would start one,
//! pending timers and effects in the outbox once the handler returned,
//! before what it scheduled and requested is stored. (Read-model bytes are
//! checked by the read models at each `put`.) Past a quota the call fails
//! naming it; a call that adds nothing passes even past a lowered quota.

use std::collections::BTreeSet;

use super::batch::Batch;
use crate::error::StoreError;
use crate::instance::{InstanceCall, TimerRequest};
use crate::store::UnitOfWork;

/// How the operator raises quota `key`.
fn raise(key: &str) -> String {
    format!("raise `{key}` under [limits] in its manifest (a redeploy with --accept-grants)")
}

impl Batch<'_> {
    /// Why a new instance of the listener in `slot` may not start: it has
    /// as many live instances as its quota allows.
    pub(super) fn over_instance_quota(
        &self,
        tx: &(impl UnitOfWork + ?Sized),
        slot: usize,
    ) -> Result<Option<String>, StoreError> {
        let listener = &self.slots[slot].listener;
        let max = listener.quotas().instances;
        let live = tx.instance_count(listener.name())?;
        Ok((live >= max).then(|| {
            format!(
                "`{}` has {live} live instances, its quota: complete some, or {}",
                listener.name(),
                raise("max-instances")
            )
        }))
    }

    /// Why what the successful call of the listener in `slot` scheduled
    /// and requested may not be stored: it would take the listener's
    /// pending timers or effects past their quotas.
    pub(super) fn over_call_quotas(
        &self,
        tx: &(impl UnitOfWork + ?Sized),
        slot: usize,
    ) -> Result<Option<String>, StoreError> {
        let listener = &self.slots[slot].listener;
        let (plugin, quotas) = (listener.name(), listener.quotas());
        if let Some(call) = &self.effects.instance
            && !call.timers.is_empty()
        {
            let pending = tx.timer_count(plugin)?;
            // At most one more per request; counted exactly only near the
            // quota. A call that adds none passes even past it (a lowered
            // quota): it may cancel.
            let at_most = call.timers.len() as u64;
            if pending.saturating_add(at_most) > quotas.timers {
                let added = timers_added(tx, plugin, call)?;
                if added > 0 && pending.saturating_add(added) > quotas.timers {
                    return Ok(Some(format!(
                        "`{plugin}` has {pending} pending timers, its quota: let some fire or cancel them, or {}",
                        raise("max-timers")
                    )));
                }
            }
        }
        let requested = self.effects.requests.len() as u64;
        if requested > 0 {
            let pending = tx.effect_count_of(plugin)?;
            if pending.saturating_add(requested) > quotas.effects {
                return Ok(Some(format!(
                    "`{plugin}` has {pending} effects in the outbox, its quota: let them be performed (by a \
                     running engine) or skip parked ones, or {}",
                    raise("max-effects")
                )));
            }
        }
        Ok(None)
    }
}

/// How many more timers `plugin` has pending once `call` is stored: the
/// timers it schedules under names its instance has no timer by, less
/// those it cancels; none when it completes the instance.
fn timers_added(tx: &(impl UnitOfWork + ?Sized), plugin: &str, call: &InstanceCall) -> Result<u64, StoreError> {
    let schedules = call.timers.iter().any(|r| matches!(r, TimerRequest::Schedule { .. }));
    if call.completed || !schedules {
        return Ok(0);
    }
    let mut names: BTreeSet<String> = tx
        .timers_of(plugin, Some(&call.id))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let before = names.len();
    for request in &call.timers {
        match request {
            TimerRequest::Schedule { name, .. } => names.insert(name.clone()),
            TimerRequest::Cancel { name } => names.remove(name),
        };
    }
    Ok(names.len().saturating_sub(before) as u64)
}
