//! The effects outbox around the pipeline. A successful call's requests are
//! stored with its batch ([`Batch::request`](super::call)) and handed to the
//! engine's workers once committed; the outcomes they report are recorded
//! by a later batch, once it has caught up with the log: an answered effect
//! leaves the outbox and becomes `EffectCompleted` on its plugin's effects
//! stream, in a cascade of its own; one that failed every attempt is parked
//! for an operator (`effects retry` / `effects skip`).

use super::Pipeline;
use super::batch::Batch;
use crate::effect::{Attempted, EFFECT_COMPLETED, EffectCompleted, EffectOutcome, effect_stream_id};
use crate::error::{Error, PluginError, StoreError};
use crate::event::NewEvent;
use crate::records::{Effect, ParkedEffect};
use crate::store::{Outbox, Storage, UnitOfWork};

/// What passes between the pipeline and the engine's outbox workers.
#[derive(Debug, Default)]
pub struct OutboxQueue {
    /// Outcomes reported by the workers, recorded by the next batch that
    /// catches up with the log.
    pub(super) outcomes: Vec<EffectOutcome>,
    /// Effects committed since the last take, for the workers.
    pub(super) requested: Vec<Effect>,
}

impl OutboxQueue {
    /// Hand the pipeline an effect's outcome to record.
    pub fn report(&mut self, outcome: EffectOutcome) {
        self.outcomes.push(outcome);
    }

    /// Whether outcomes wait to be recorded.
    pub fn has_outcomes(&self) -> bool {
        !self.outcomes.is_empty()
    }

    /// The effects committed since the last take: the workers' new work.
    pub fn take_requested(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.requested)
    }
}

impl<S: Storage> Pipeline<S> {
    /// The outbox's queues.
    pub fn outbox(&mut self) -> &mut OutboxQueue {
        &mut self.outbox
    }

    /// Try parked effect `key` again: it goes back to the workers.
    ///
    /// # Errors
    ///
    /// No effect has this key, or it is not parked; a storage error.
    pub fn retry_effect(&mut self, key: &str) -> Result<Effect, Error> {
        let effect = self.in_batch(|_, tx| {
            let mut effect = parked_effect(tx, key)?;
            effect.parked = None;
            tx.put_effect(&effect)?;
            Ok((effect, true))
        })?;
        self.outbox.requested.push(effect.clone());
        Ok(effect)
    }

    /// Give up parked effect `key`: its plugin gets its failure as the
    /// outcome (`ok: false`, the last error, and who skipped it).
    ///
    /// # Errors
    ///
    /// As [`Pipeline::retry_effect`].
    pub fn skip_effect(&mut self, key: &str, by: &str) -> Result<Effect, Error> {
        self.in_batch(|batch, tx| {
            let effect = parked_effect(tx, key)?;
            tx.remove_effect(key)?;
            let parked = effect.parked.clone().expect("a parked effect");
            let outcome = EffectOutcome {
                key: key.to_owned(),
                attempted: Attempted::Failed(format!("skipped by {by} after: {}", parked.error)),
                attempts: parked.attempts,
                latency_ms: 0,
            };
            batch.complete_effect(tx, effect.clone(), &outcome)?;
            Ok((effect, true))
        })
    }
}

/// Parked effect `key`, or why there is none.
fn parked_effect(tx: &(impl UnitOfWork + ?Sized), key: &str) -> Result<Effect, Error> {
    match tx.effect(key)? {
        Some(effect) if effect.parked.is_some() => Ok(effect),
        Some(_) => Err(PluginError::EffectNotParked { key: key.to_owned() }.into()),
        None => Err(PluginError::UnknownEffect { key: key.to_owned() }.into()),
    }
}

impl Batch<'_> {
    /// Record `outcomes`: an answered effect leaves the outbox and is
    /// delivered; one that failed every attempt is parked. An outcome of
    /// an effect no longer in the outbox (an operator skipped it meanwhile)
    /// is dropped. Returns how many were recorded.
    pub(super) fn record_outcomes(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        outcomes: &[EffectOutcome],
    ) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for outcome in outcomes {
            // Taken out once: answered, it stays out; else it goes back.
            let Some(mut effect) = tx.remove_effect(&outcome.key)? else {
                continue;
            };
            match &outcome.attempted {
                // Parked meanwhile (a second outcome of one attempt): as it was.
                _ if effect.parked.is_some() => {
                    tx.put_effect(&effect)?;
                    continue;
                }
                Attempted::Answered { .. } => self.complete_effect(tx, effect, outcome)?,
                Attempted::Failed(error) => {
                    effect.parked = Some(ParkedEffect {
                        error: error.clone(),
                        attempts: outcome.attempts,
                        parked_at: crate::clock::now_millis(),
                    });
                    tx.put_effect(&effect)?;
                }
            }
            recorded += 1;
        }
        Ok(recorded)
    }

    /// Append the outcome of `effect`, taken out of the outbox, as
    /// `EffectCompleted` on its plugin's effects stream, in a new cascade.
    fn complete_effect(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        effect: Effect,
        outcome: &EffectOutcome,
    ) -> Result<(), StoreError> {
        let (status, headers, body, error) = match &outcome.attempted {
            Attempted::Answered { status, headers, body } => {
                (Some(*status), headers.iter().cloned().collect(), body.clone(), None)
            }
            Attempted::Failed(error) => (None, Default::default(), String::new(), Some(error.clone())),
        };
        let payload = EffectCompleted {
            effect: effect.name,
            key: effect.key,
            instance: effect.instance,
            ok: status.is_some_and(|s| (200..300).contains(&s)),
            status,
            headers,
            body,
            error,
            attempts: outcome.attempts,
        };
        let metadata = serde_json::json!({ "effect": payload.key, "requestedBy": effect.correlation_id });
        let event = NewEvent {
            name: EFFECT_COMPLETED.to_owned(),
            payload: serde_json::to_string(&payload).expect("outcomes serialize"),
        };
        self.append_host_event(tx, "effect", &effect_stream_id(&effect.plugin), event, metadata)
    }
}
