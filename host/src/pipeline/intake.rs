//! Commands in: submitting, queueing and executing a command until it settles.

use super::{Pipeline, Settled};
use crate::error::{Error, StoreError};
use crate::event::Command;
use crate::records::{CascadeRecord, QueuedCommand, Submission};
use crate::store::{Storage, UnitOfWork, WorkQueue};

impl<S: Storage> Pipeline<S> {
    /// Queue `command` from outside as the first command of a new cascade and
    /// return the cascade's correlation id. `expected_version`, when given,
    /// makes the command fail unless the stream is at that version.
    ///
    /// # Errors
    ///
    /// A [`crate::CommandError`] when the aggregate or command is unknown or
    /// the args are not JSON (nothing is queued); a storage error.
    pub fn submit(&mut self, command: Command, expected_version: Option<u64>) -> Result<String, Error> {
        let mut ids = self.submit_all(vec![(command, expected_version)])?;
        Ok(ids.pop().expect("one id per command"))
    }

    /// [`Pipeline::submit`] for many commands in one transaction: either all
    /// are queued or, when one is invalid, none is. A submission whose
    /// idempotency key was seen before queues nothing and returns the
    /// correlation id of the first submission with that key.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`], for the first invalid command.
    pub fn submit_all<C: Into<Submission>>(
        &mut self,
        commands: impl IntoIterator<Item = C>,
    ) -> Result<Vec<String>, Error> {
        let submissions: Vec<Submission> = commands.into_iter().map(Into::into).collect();
        for submission in &submissions {
            self.aggregates.check(&submission.command)?;
        }
        let (ids, traced) = self.store.write(|tx| {
            let mut seq = tx.next_command_seq()?;
            let (ids, admitted, traced) = admit(tx, &mut seq, submissions)?;
            for (seq, queued) in admitted {
                tx.enqueue(seq, &queued)?;
                tx.put_cascade(&queued.correlation_id, &new_cascade())?;
            }
            tx.set_next_command_seq(seq)?;
            Ok::<_, StoreError>((ids, traced))
        })?;
        // Only once committed: a rolled-back id is given out again.
        self.traced.extend(traced);
        Ok(ids)
    }

    /// Submit `command` and run the loop until its cascade has settled.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`] and [`Pipeline::step`].
    pub fn execute(&mut self, command: Command) -> Result<Settled, Error> {
        self.execute_submission(command.into())
    }

    /// [`Pipeline::execute`] for a [`Submission`]. The command is queued in
    /// the transaction of the first step that runs it: a lone command that
    /// settles in one batch costs one commit.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`] and [`Pipeline::step`].
    pub fn execute_submission(&mut self, submission: Submission) -> Result<Settled, Error> {
        self.aggregates.check(&submission.command)?;
        let (mut ids, _) = self.step_with(vec![submission])?;
        self.run_until_settled(&ids.remove(0))
    }
}

/// Commands with their sequence numbers, in queue order.
pub(super) type Sequenced = Vec<(u64, QueuedCommand)>;

/// Admit `submissions` as new cascades from sequence `seq` on (advanced past
/// them): returns every submission's correlation id and the new commands
/// with their sequence numbers, for the caller to queue with a
/// [`new_cascade`] record each. A known idempotency key admits nothing and
/// yields the first cascade's id. Also returns the ids of the new cascades
/// to trace.
pub(super) fn admit(
    tx: &mut (impl UnitOfWork + ?Sized),
    seq: &mut u64,
    submissions: Vec<Submission>,
) -> Result<(Vec<String>, Sequenced, Vec<String>), StoreError> {
    let mut traced = Vec::new();
    let mut ids = Vec::with_capacity(submissions.len());
    let mut admitted = Vec::with_capacity(submissions.len());
    for submission in submissions {
        if let Some(key) = &submission.idempotency_key
            && let Some(first) = tx.idempotent(key)?
        {
            ids.push(first);
            continue;
        }
        let id = format!("c{seq}");
        if let Some(key) = &submission.idempotency_key {
            tx.put_idempotent(key, &id)?;
        }
        if let Some(budget) = submission.cascade_budget {
            tx.put_cascade_budget(&id, budget as u64)?;
        }
        if submission.trace {
            traced.push(id.clone());
        }
        let queued = QueuedCommand {
            id: id.clone(),
            command: submission.command,
            correlation_id: id.clone(),
            causation_id: None,
            cause: None,
            expected_version: submission.expected_version,
        };
        admitted.push((*seq, queued));
        *seq += 1;
        ids.push(id);
    }
    Ok((ids, admitted, traced))
}

/// The record of a cascade just submitted: its first command outstanding.
pub(super) fn new_cascade() -> CascadeRecord {
    CascadeRecord {
        outstanding: 1,
        ..CascadeRecord::default()
    }
}
