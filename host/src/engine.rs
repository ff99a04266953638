//! The engine: one writer thread that owns a [`Runtime`], and a cloneable
//! [`EngineHandle`] that any number of threads and tasks use to submit
//! commands, await their settled answers, deploy plugins and read.
//!
//! The writer loop drains every request that arrived while it was busy, so
//! concurrent callers share one submit transaction and one group commit per
//! step; a lone caller pays for its own. Operator actions (deploys, refreshes,
//! parked retries) run on the writer between two steps, never during one.
//! Reads of the log go through [`LogReader`] on the store's read views and
//! never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::error::{Error, StoreError};
use crate::pipeline::{Options, Settled, Submission};
use crate::plugin::PluginRecord;
use crate::read_model::ReadModels;
use crate::runtime::{Compiled, Runtime, Swap};
use crate::sandbox::Sandbox;
use crate::store::{Backend, LogReader};

mod operations;
mod outbox;

pub use outbox::{EFFECT_LATENCY_BUCKETS, EffectStats, MAX_EFFECTS_IN_FLIGHT, PluginEffects};

/// Send `answer` to every caller: logs and trace go to the first, the
/// others get the rest of it; an error to each.
fn send_to_all(replies: Vec<SettledReply>, answer: Result<Settled, Error>) {
    let shared = answer.map_err(Arc::new);
    let mut replies = replies.into_iter();
    let Some(first) = replies.next() else { return };
    for reply in replies {
        let answer = match &shared {
            Ok(settled) => Ok(Settled {
                trace: Vec::new(),
                logs: Vec::new(),
                ..settled.clone()
            }),
            Err(err) => Err(Error::Batch(err.clone())),
        };
        let _ = reply.send(answer);
    }
    let _ = first.send(shared.map_err(|err| Arc::try_unwrap(err).unwrap_or_else(Error::Batch)));
}

/// How long an idle writer looks for the next request before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(100);

/// Where the writer answers a submission with its correlation ids.
type SubmitReply = oneshot::Sender<Result<Vec<String>, Error>>;

/// Where the writer answers a caller waiting for a cascade.
type SettledReply = oneshot::Sender<Result<Settled, Error>>;

/// A command to queue and a caller waiting for its cascade.
struct Execution {
    submission: Submission,
    reply: SettledReply,
    /// Told the correlation id as soon as the command is queued, for a
    /// caller that may stop waiting before the cascade settled.
    id: Option<oneshot::Sender<String>>,
}

/// Work for the writer thread.
enum Request {
    /// Queue commands; answer with their correlation ids.
    Submit(Vec<Submission>, SubmitReply),
    /// Queue a command and answer once its cascade has settled: one
    /// hand-over each way for a caller that waits.
    Execute(Execution),
    /// Answer once this cascade has settled.
    Settled(String, SettledReply),
    /// Run this on the runtime between two steps.
    Call(Box<dyn FnOnce(&mut Runtime) + Send>),
    /// An effect's outcome, from the outbox's workers, to record.
    Outcome(crate::effect::EffectOutcome),
    /// Finish the current step, answer what can be answered, and stop.
    Stop,
}

/// Figures the writer keeps for metrics, read without locking.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Group commits that did work.
    pub batches: AtomicU64,
    /// Units of work (events through both phases, commands executed).
    pub units: AtomicU64,
    /// Units of the last batch.
    pub last_batch_units: AtomicU64,
    /// Total time spent in steps, in microseconds.
    pub step_micros: AtomicU64,
    /// Plugin deploys and rollbacks that took effect.
    pub swaps: AtomicU64,
    /// Total and longest time the writer was held by a swap, in microseconds.
    pub swap_micros: AtomicU64,
    /// See `swap_micros`.
    pub swap_max_micros: AtomicU64,
    /// Deploys that were refused; the old version kept running.
    pub swaps_refused: AtomicU64,
    /// Commands submitted from outside.
    pub submitted: AtomicU64,
}

/// What a deploy did.
#[derive(Clone, Debug)]
pub struct Deployed {
    /// The plugin as registered.
    pub record: PluginRecord,
    /// Its version number.
    pub version: u64,
    /// The pipeline position at the swap: the old version handled every
    /// event up to it, the new one handles every event after it.
    pub position: u64,
    /// How long the swap held the writer.
    pub held: Duration,
}

/// The writer thread over one data directory. Dropping it stops the thread
/// after the current step.
pub struct Engine {
    handle: EngineHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap, cloneable, `Send + Sync` handle to a running [`Engine`].
#[derive(Clone)]
pub struct EngineHandle {
    requests: mpsc::Sender<Request>,
    log: LogReader,
    read_models: ReadModels,
    head: watch::Receiver<u64>,
    sandbox: Arc<Sandbox>,
    stats: Arc<EngineStats>,
    effects: Arc<EffectStats>,
}

impl Engine {
    /// Open the data directory `dir` on a new writer thread (waiting up to
    /// `lock_timeout` while another process holds it), load every registered
    /// plugin, and resume queued work.
    ///
    /// # Errors
    ///
    /// As [`Runtime::open_waiting`].
    pub fn start(dir: &Path, options: Options, lock_timeout: Duration) -> Result<Engine, Error> {
        Self::spawn(dir, options, lock_timeout, true)
    }

    /// Like [`Engine::start`], for a short-lived program that runs one
    /// command (the `cascade` command line): the pipeline runs only for work
    /// submitted through the handle and the cascades callers wait for. Work
    /// queued before is left as it is unless a submitted command's batch
    /// reaches it, so an operator can inspect or cancel it.
    ///
    /// # Errors
    ///
    /// As [`Runtime::open_waiting`].
    pub fn start_on_demand(dir: &Path, options: Options, lock_timeout: Duration) -> Result<Engine, Error> {
        Self::spawn(dir, options, lock_timeout, false)
    }

    fn spawn(dir: &Path, options: Options, lock_timeout: Duration, live: bool) -> Result<Engine, Error> {
        let (requests, inbox) = mpsc::channel();
        let (ready, opened) = mpsc::sync_channel(1);
        let owned_dir = dir.to_owned();
        let effects = Arc::new(EffectStats::default());
        // A live engine performs effects; a short-lived one leaves them in
        // the outbox for the next live one.
        let workers = match live {
            true => Some(
                outbox::Workers::start(requests.clone(), effects.clone()).map_err(|source| Error::Io {
                    context: "cannot start the effect workers".into(),
                    source,
                })?,
            ),
            false => None,
        };
        let thread = std::thread::Builder::new()
            .name("cascade-writer".into())
            .spawn(move || {
                let runtime = match Runtime::open_waiting(&owned_dir, options, lock_timeout) {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                let log = runtime.pipeline_ref().store().reader();
                let read_models = runtime.pipeline_ref().read_models().committed();
                let head = log.head().unwrap_or(0);
                let (head_tx, head_rx) = watch::channel(head);
                let stats = Arc::new(EngineStats::default());
                let sandbox = runtime.sandbox().clone();
                let _ = ready.send(Ok((log, read_models, head_rx, sandbox, stats.clone())));
                Writer {
                    runtime,
                    inbox,
                    head: head_tx,
                    stats,
                    waiting: HashMap::new(),
                    live,
                    workers,
                }
                .run();
            })
            .map_err(|source| Error::Io {
                context: "cannot start the writer thread".into(),
                source,
            })?;
        let (log, read_models, head, sandbox, stats) = opened.recv().map_err(|_| Error::EngineStopped)??;
        Ok(Engine {
            handle: EngineHandle {
                requests,
                log,
                read_models,
                head,
                sandbox,
                stats,
                effects,
            },
            thread: Some(thread),
        })
    }

    /// A handle to submit work and read.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Stop the writer after its current step, answering waiting callers
    /// whose cascades settled, and wait for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl EngineHandle {
    /// Queue `submission` as the first command of a new cascade; returns its
    /// correlation id (the first one's, for a repeated idempotency key).
    ///
    /// # Errors
    ///
    /// An unknown aggregate or command, args that are not JSON; a storage
    /// error; the engine stopped.
    pub async fn submit(&self, submission: Submission) -> Result<String, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Submit(vec![submission], reply))?;
        let mut ids = answer.await.map_err(|_| Error::EngineStopped)??;
        Ok(ids.pop().expect("one id per submission"))
    }

    /// Wait until the cascade `correlation_id` has settled. Trace entries and
    /// guest logs go to the first caller that collects them.
    ///
    /// # Errors
    ///
    /// An unknown correlation id; a storage error; the engine stopped.
    pub async fn settled(&self, correlation_id: &str) -> Result<Settled, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Settled(correlation_id.to_owned(), reply))?;
        answer.await.map_err(|_| Error::EngineStopped)?
    }

    /// Submit and wait until settled.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::submit`] and [`EngineHandle::settled`].
    pub async fn execute(&self, submission: impl Into<Submission>) -> Result<Settled, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Execute(Execution {
            submission: submission.into(),
            reply,
            id: None,
        }))?;
        answer.await.map_err(|_| Error::EngineStopped)?
    }

    /// [`EngineHandle::execute`] that stops waiting after `wait`: then it
    /// answers `Err(correlation id)` and the cascade goes on. One hand-over
    /// each way when it settles in time (`POST /commands`).
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::execute`]. Needs tokio's time driver.
    pub async fn execute_within(
        &self,
        submission: impl Into<Submission>,
        wait: Duration,
    ) -> Result<Result<Settled, String>, Error> {
        let (reply, mut answer) = oneshot::channel();
        let (id_reply, id) = oneshot::channel();
        self.send(Request::Execute(Execution {
            submission: submission.into(),
            reply,
            id: Some(id_reply),
        }))?;
        match tokio::time::timeout(wait, &mut answer).await {
            Ok(answer) => answer.map_err(|_| Error::EngineStopped)?.map(Ok),
            Err(_) => match id.await {
                Ok(id) => Ok(Err(id)),
                // Never queued: the answer says why.
                Err(_) => answer.await.map_err(|_| Error::EngineStopped)?.map(Ok),
            },
        }
    }

    /// Whether the cascade `correlation_id` has settled, without waiting.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn is_settled(&self, correlation_id: &str) -> Result<bool, StoreError> {
        Ok(!self.log.settled_of(std::iter::once(correlation_id))?.is_empty())
    }

    /// Run `f` on the runtime on the writer thread, between two steps.
    ///
    /// # Errors
    ///
    /// The engine stopped.
    pub async fn with_runtime<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Runtime) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Call(Box::new(move |runtime| {
            // A panic fails this call alone: the writer rolls its memory
            // back to the last commit and goes on.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *runtime)));
            let answer = result.map_err(|panic| {
                runtime.pipeline().reload_committed();
                Error::Panicked {
                    message: crate::text::panic_message(panic.as_ref()).to_owned(),
                }
            });
            let _ = reply.send(answer);
        })))?;
        answer.await.map_err(|_| Error::EngineStopped)?
    }

    /// Compile `bytes` off the writer thread, then validate and swap the
    /// plugin in between two batches (see [`Runtime::install`]).
    ///
    /// # Errors
    ///
    /// Not a component, does not validate, a failing `load-state`: the old
    /// version keeps running.
    pub async fn deploy(
        &self,
        name: &str,
        source: &str,
        bytes: Vec<u8>,
        (manifest, start_from): (crate::manifest::Manifest, crate::manifest::StartFrom),
        swap: Swap,
    ) -> Result<Deployed, Error> {
        let (name, source) = (name.to_owned(), source.to_owned());
        self.compile_and_install(
            move |sandbox| Compiled::new(sandbox, &name, &source, bytes, manifest).map(|c| c.starting_from(start_from)),
            swap,
        )
        .await
    }

    /// [`EngineHandle::deploy`] for a component file and the manifest beside
    /// it (`NAME.toml`), as [`Runtime::add_plugin_with`] reads them.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::deploy`]; the file cannot be read.
    pub async fn deploy_file(&self, file: &Path, swap: Swap) -> Result<Deployed, Error> {
        let file = file.to_owned();
        self.compile_and_install(move |sandbox| Compiled::from_file(sandbox, &file), swap)
            .await
    }

    /// Compile on a blocking thread, then swap the plugin in on the writer
    /// between two batches; every deploy that does not take effect, a
    /// failed compile included, counts as refused.
    async fn compile_and_install(
        &self,
        compile: impl FnOnce(&Sandbox) -> Result<Compiled, Error> + Send + 'static,
        swap: Swap,
    ) -> Result<Deployed, Error> {
        let sandbox = self.sandbox.clone();
        let compiled = tokio::task::spawn_blocking(move || compile(&sandbox))
            .await
            .map_err(|_| Error::EngineStopped)?
            .inspect_err(|_| self.stats.record_swap(false, Duration::ZERO))?;
        let stats = self.stats.clone();
        self.with_runtime(move |runtime| {
            let started = Instant::now();
            let result = runtime.install(compiled, &swap);
            let held = started.elapsed();
            stats.record_swap(result.is_ok(), held);
            let record = result?;
            Ok(Deployed {
                version: runtime.versions(&record.name)?.1,
                position: runtime.pipeline_ref().position()?,
                record,
                held,
            })
        })
        .await?
    }

    /// The log, for reads that never wait for the writer.
    pub fn log(&self) -> &LogReader {
        &self.log
    }

    /// The read models, for queries that never wait for the writer: they
    /// read the last commit ([`ReadModels::committed`]).
    pub fn read_models(&self) -> &ReadModels {
        &self.read_models
    }

    /// The committed head of the log; changes after every commit that
    /// appended events.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// The sandbox, to compile components off the writer thread.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The writer's figures.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// What the outbox's workers did (a live engine's only).
    pub fn effect_stats(&self) -> &EffectStats {
        &self.effects
    }

    fn send(&self, request: Request) -> Result<(), Error> {
        self.requests.send(request).map_err(|_| Error::EngineStopped)
    }
}

impl EngineStats {
    /// Count a deploy or rollback that held the writer for `held`.
    pub fn record_swap(&self, ok: bool, held: Duration) {
        if !ok {
            self.swaps_refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let micros = held.as_micros() as u64;
        self.swaps.fetch_add(1, Ordering::Relaxed);
        self.swap_micros.fetch_add(micros, Ordering::Relaxed);
        self.swap_max_micros.fetch_max(micros, Ordering::Relaxed);
    }
}

/// The writer thread's state.
struct Writer {
    runtime: Runtime,
    inbox: mpsc::Receiver<Request>,
    head: watch::Sender<u64>,
    stats: Arc<EngineStats>,
    /// Callers waiting for a cascade to settle, by correlation id.
    waiting: HashMap<String, Vec<SettledReply>>,
    /// Whether the pipeline runs by itself (a server), or only for
    /// submissions and waiting callers (see [`Engine::start_on_demand`]).
    live: bool,
    /// The outbox's workers, when live.
    workers: Option<outbox::Workers>,
}

/// What arrived since the last step and waits for it.
#[derive(Default)]
struct Arrived {
    submits: Vec<(Vec<Submission>, SubmitReply)>,
    executes: Vec<Execution>,
    /// Callers to answer once their cascade settled: those of `executes`
    /// join once the step named their cascades.
    waiters: Vec<(String, SettledReply)>,
}

impl Arrived {
    fn has_commands(&self) -> bool {
        !self.submits.is_empty() || !self.executes.is_empty()
    }
}

impl Writer {
    fn run(mut self) {
        // From now on the pipeline names the cascades each commit settled.
        self.runtime.pipeline().take_settled();
        self.resume_effects();
        // Work queued before a restart resumes at once.
        let mut busy = self.live;
        loop {
            // Idle: sleep until a request arrives, until a listener in
            // backoff may retry, or until a timer is due. Busy: take what is there.
            let first = if busy {
                self.inbox.try_recv().ok()
            } else if let Some(wake) = self.wake_at() {
                match self.inbox.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                    Ok(request) => Some(request),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.next_request() {
                    Some(request) => Some(request),
                    None => return,
                }
            };
            let (mut stop, mut more) = (false, false);
            let mut arrived = Arrived::default();
            let inbox = &self.inbox;
            let requests: Vec<Request> = first
                .into_iter()
                .chain(std::iter::from_fn(|| inbox.try_recv().ok()))
                .collect();
            for request in requests {
                match request {
                    Request::Submit(submissions, reply) => arrived.submits.push((submissions, reply)),
                    Request::Execute(execution) => arrived.executes.push(execution),
                    Request::Settled(id, reply) => arrived.waiters.push((id, reply)),
                    Request::Call(call) => {
                        // Keep arrival order: commands submitted before the
                        // call are committed before it runs.
                        if arrived.has_commands() {
                            more |= self.step(&mut arrived);
                        }
                        call(&mut self.runtime);
                    }
                    Request::Outcome(outcome) => {
                        self.runtime.pipeline().outbox().report(outcome);
                        more = true;
                    }
                    Request::Stop => stop = true,
                }
            }
            let wanted = self.live
                || busy
                || more
                || arrived.has_commands()
                || !arrived.waiters.is_empty()
                || !self.waiting.is_empty();
            busy = wanted && self.step(&mut arrived);
            self.hand_over_effects();
            self.publish_head();
            self.answer_settled(arrived.waiters);
            if stop {
                self.answer_stopped();
                return;
            }
        }
    }

    /// At start, the effects left in the outbox by the last run (but parked
    /// ones) go to the workers again, with the same keys.
    fn resume_effects(&mut self) {
        if self.workers.is_none() {
            return;
        }
        match self
            .runtime
            .pipeline_ref()
            .store()
            .read(|tx| tx.effects(None, usize::MAX))
        {
            Ok(effects) => self.hand_to_workers(effects.into_iter().filter(|e| e.parked.is_none()).collect()),
            Err(err) => eprintln!("cascade: effects in the outbox wait for the next start: {err}"),
        }
    }

    /// The effects committed since the last hand-over go to the workers.
    fn hand_over_effects(&mut self) {
        let effects = self.runtime.pipeline().outbox().take_requested();
        if !effects.is_empty() {
            self.hand_to_workers(effects);
        }
    }

    fn hand_to_workers(&self, effects: Vec<crate::records::Effect>) {
        if let Some(workers) = &self.workers {
            workers.perform(effects);
        }
    }

    /// When an idle writer must step without a request: a listener in
    /// backoff may retry, or (a live writer) the next timer is due.
    fn wake_at(&mut self) -> Option<Instant> {
        let retry = self.runtime.pipeline_ref().next_retry();
        let timer = match self.live {
            // A timer it cannot read is looked for again at the next step.
            true => self.runtime.pipeline().next_timer().ok().flatten().map(|due| {
                let wait = due.saturating_sub(crate::clock::now_millis());
                Instant::now() + Duration::from_millis(wait)
            }),
            false => None,
        };
        // Outcomes a failed step put back are recorded again shortly.
        let outcomes = self
            .runtime
            .pipeline()
            .outbox()
            .has_outcomes()
            .then(|| Instant::now() + Duration::from_millis(50));
        retry.into_iter().chain(timer).chain(outcomes).min()
    }

    /// The next request, waiting for it; `None` once every handle is gone.
    /// A caller that just got its answer often sends the next request
    /// within microseconds: the writer looks for it a little while before
    /// it sleeps, since waking a sleeping thread costs tens of
    /// microseconds on a virtual machine.
    fn next_request(&self) -> Option<Request> {
        let until = Instant::now() + IDLE_SPIN;
        while Instant::now() < until {
            match self.inbox.try_recv() {
                Ok(request) => return Some(request),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.inbox.recv().ok()
    }

    /// One group commit that first queues every pending submission, so
    /// concurrent callers share it and a lone caller pays one commit for its
    /// command and its first batch. Invalid commands are answered alone
    /// first: one caller's typo fails only its own. Returns whether work may
    /// be left (the batch was full): a batch that ran out of work leaves the
    /// writer idle instead of opening a write transaction to find nothing.
    fn step(&mut self, arrived: &mut Arrived) -> bool {
        let aggregates = self.runtime.pipeline_ref().aggregates();
        let mut submits = Vec::with_capacity(arrived.submits.len());
        for (submissions, reply) in arrived.submits.drain(..) {
            match submissions.iter().try_for_each(|s| aggregates.check(&s.command)) {
                Ok(()) => submits.push((submissions, reply)),
                Err(err) => {
                    let _ = reply.send(Err(err.into()));
                }
            }
        }
        let mut executes = Vec::with_capacity(arrived.executes.len());
        for execution in arrived.executes.drain(..) {
            match aggregates.check(&execution.submission.command) {
                Ok(()) => executes.push(execution),
                Err(err) => {
                    let _ = execution.reply.send(Err(err.into()));
                }
            }
        }
        let counts: Vec<usize> = submits.iter().map(|(s, _)| s.len()).collect();
        let mut all: Vec<Submission> = submits.iter_mut().flat_map(|(s, _)| s.drain(..)).collect();
        all.extend(executes.iter().map(|e| e.submission.clone()));
        let submitted = all.len() as u64;
        let started = Instant::now();
        match self.runtime.pipeline().step_with(all) {
            Ok((ids, units)) => {
                let mut ids = ids.into_iter();
                for ((_, reply), count) in submits.into_iter().zip(counts) {
                    let _ = reply.send(Ok(ids.by_ref().take(count).collect()));
                }
                for (id, execution) in ids.zip(executes) {
                    if let Some(tell) = execution.id {
                        let _ = tell.send(id.clone());
                    }
                    arrived.waiters.push((id, execution.reply));
                }
                let stats = &self.stats;
                stats.submitted.fetch_add(submitted, Ordering::Relaxed);
                if units > 0 {
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.units.fetch_add(units as u64, Ordering::Relaxed);
                    stats.last_batch_units.store(units as u64, Ordering::Relaxed);
                    stats
                        .step_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                units >= self.runtime.pipeline_ref().batch_size()
            }
            Err(err) => {
                // The batch rolled back, submissions included: everyone
                // involved learns why rather than hanging.
                let shared = Arc::new(err);
                for (_, reply) in submits {
                    let _ = reply.send(Err(Error::Batch(shared.clone())));
                }
                for execution in executes {
                    let _ = execution.reply.send(Err(Error::Batch(shared.clone())));
                }
                for (_, replies) in self.waiting.drain() {
                    for reply in replies {
                        let _ = reply.send(Err(Error::Batch(shared.clone())));
                    }
                }
                false
            }
        }
    }

    /// Tell live tails about new events, whoever appended them (a step, or
    /// an operator action that ran the pipeline itself).
    fn publish_head(&mut self) {
        if let Ok(head) = self.runtime.pipeline_ref().store().reader().head() {
            self.head.send_if_modified(|h| std::mem::replace(h, head) != head);
        }
    }

    /// Answer the callers whose cascades settled in the commits since the
    /// last answer: work proportional to the cascades that finished, not to
    /// the callers waiting, read in one transaction. A caller new since then
    /// is answered at once if its cascade settled before, else it waits.
    fn answer_settled(&mut self, new: Vec<(String, SettledReply)>) {
        let mut replies: Vec<(String, Vec<SettledReply>)> = self
            .runtime
            .pipeline()
            .take_settled()
            .into_iter()
            .filter_map(|id| self.waiting.remove(&id).map(|r| (id, r)))
            .collect();
        replies.extend(new.into_iter().map(|(id, reply)| (id, vec![reply])));
        if replies.is_empty() {
            return;
        }
        let ids: Vec<&str> = replies.iter().map(|(id, _)| id.as_str()).collect();
        let answers = match self.runtime.pipeline().settled_all(&ids) {
            Ok(answers) => answers,
            Err(err) => {
                let shared = Arc::new(err);
                for reply in replies.into_iter().flat_map(|(_, r)| r) {
                    let _ = reply.send(Err(Error::Batch(shared.clone())));
                }
                return;
            }
        };
        for ((id, replies), answer) in replies.into_iter().zip(answers) {
            let answer = match answer {
                Ok(Some(settled)) => Ok(settled),
                // Not settled (yet, or again: an operator action after it
                // settled dispatched more): it waits.
                Ok(None) => {
                    self.waiting.entry(id).or_default().extend(replies);
                    continue;
                }
                Err(err) => Err(err),
            };
            send_to_all(replies, answer);
        }
    }

    /// On shutdown, callers still waiting learn why they get no answer.
    fn answer_stopped(&mut self) {
        for (_, replies) in self.waiting.drain() {
            for reply in replies {
                let _ = reply.send(Err(Error::EngineStopped));
            }
        }
    }
}
