//! What each command does: it runs through an [`EngineHandle`] (commands
//! and operator actions on the writer thread, reads beside it) and prints.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use cascade::{
    Command, EngineHandle, Event, Failure, HandlerFailure, Outcome, RefreshReport, Settled, Submission, Swap,
};
use serde_json::{Value, json};

use crate::api::timer_json;
use crate::args::{Action, ClockAction, EffectsAction, GraphFormat, ParkedAction, PluginAction, PmAction, QueueAction};
use crate::exit::EXIT_STORAGE;

/// What `plugin add` adds to the manifests it deploys: `--grant`,
/// `--config`, and `--secret KEY=@FILE` with FILE read here (relative to
/// `cwd`), on the client's side.
///
/// # Errors
///
/// A malformed flag; a secret file that cannot be read.
pub(crate) fn additions(
    grants: Vec<String>,
    config: &[String],
    secrets: &[String],
    cwd: &Path,
) -> anyhow::Result<cascade::ManifestAdditions> {
    let mut additions = cascade::ManifestAdditions {
        grants,
        ..Default::default()
    };
    for pair in config {
        let (key, value) =
            cascade::ManifestAdditions::config_pair(pair).map_err(|e| anyhow::anyhow!("--config {e}"))?;
        additions.config.insert(key, value);
    }
    for pair in secrets {
        let Some((key, file)) = pair.split_once("=@").filter(|(k, f)| !k.is_empty() && !f.is_empty()) else {
            anyhow::bail!(
                "--secret `{}` must be KEY=@FILE",
                pair.split('=').next().unwrap_or_default()
            );
        };
        let file = cwd.join(file);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read secret `{key}` from `{}`", file.display()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        additions
            .secrets
            .insert(key.to_owned(), Value::String(value.to_owned()).to_string());
    }
    Ok(additions)
}

/// Run one action through the engine's handle, writing to `out`; relative
/// paths are taken from `cwd`. The command line runs its commands here, and
/// so does a server for the commands of CLI clients.
///
/// # Errors
///
/// As [`crate::run`].
pub async fn execute(
    action: Action,
    engine: &EngineHandle,
    cwd: &Path,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u8> {
    match action {
        Action::Serve(_) => anyhow::bail!("`cascade serve` cannot run inside a server"),
        Action::New { .. } => anyhow::bail!("`cascade new` writes files where it runs, not on a server"),
        Action::Plugin(add @ PluginAction::Add { .. }) => {
            let (files, swap) = deploy_swap(&add, cwd)?;
            for file in files {
                let file = cwd.join(file);
                // Compiled off the writer: a server goes on meanwhile.
                let record = engine.deploy_file(&file, swap.clone()).await?.record;
                writeln!(out, "{}", added_line(&record))?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Versions { name, json }) => {
            let (versions, active) = engine.versions(&name).await?;
            if json {
                let list: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let mut value = serde_json::to_value(v).expect("versions serialize");
                        value["active"] = json!(v.version == active);
                        value
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                return Ok(0);
            }
            for v in &versions {
                let mark = if v.version == active { '*' } else { ' ' };
                writeln!(
                    out,
                    "{mark} v{:<4} {}  {}  by {}  {}",
                    v.version,
                    short_hash(&v.hash),
                    v.deployed_at,
                    escape(&v.deployed_by),
                    escape(&v.source)
                )?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Rollback { name, state }) => {
            let swap = Swap {
                state,
                ..Swap::default()
            };
            let version = engine.rollback(&name, swap).await?;
            writeln!(
                out,
                "rolled `{name}` back to v{} ({})",
                version.version,
                short_hash(&version.hash)
            )?;
            Ok(0)
        }
        Action::Plugin(PluginAction::List { json }) => {
            let statuses = engine.statuses().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&statuses)?)?;
                return Ok(0);
            }
            let width = statuses.iter().map(|s| s.record.name.len()).max().unwrap_or(0).max(4);
            for s in &statuses {
                let p = &s.record;
                let mut line = format!(
                    "{:<width$} {:<15} v{:<3} {}  {}",
                    escape(&p.name),
                    p.kind,
                    s.version,
                    short_hash(&p.hash),
                    escape(&p.source)
                );
                if let Some(l) = &s.listener {
                    line.push_str(&format!(
                        "  checkpoint #{} (lag {}), {} call(s), {} failure(s), {} parked",
                        l.checkpoint, l.lag, l.calls, l.failures, l.parked
                    ));
                    line.push_str(&usage_text(&l.usage, &p.manifest.limits().quotas));
                    if let Some(bytes) = l.memory_bytes {
                        line.push_str(&format!(", memory {:.1} MiB", bytes as f64 / f64::from(1 << 20)));
                    }
                    if l.stopped {
                        line.push_str(&format!("  stopped after #{}", l.checkpoint));
                    }
                }
                if let Some(reason) = &s.stopped_because {
                    line.push_str(&format!("  stopped: {}", escape(reason)));
                }
                line.push_str(&escape(&grants_text(&s.reach, &p.manifest)));
                writeln!(out, "{line}")?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Stop { name, by }) => {
            let by = operator(by);
            engine.stop_plugin(&name, &by).await?;
            writeln!(out, "`{name}` stopped; `cascade plugin start {name}` resumes it")?;
            Ok(0)
        }
        Action::Plugin(PluginAction::Remove { name }) => {
            let record = engine.remove_plugin(&name).await?;
            writeln!(out, "removed {} `{}`", record.kind, record.name)?;
            Ok(0)
        }
        Action::Plugin(PluginAction::Start { name }) => {
            let (handled, stopped_at) = engine.start_plugin(&name).await?;
            match stopped_at {
                Some(at) => {
                    writeln!(
                        out,
                        "`{name}` caught up {handled} event(s) and stopped again after #{at}"
                    )?;
                    Ok(1)
                }
                None => {
                    writeln!(out, "`{name}` caught up {handled} event(s) and is running")?;
                    Ok(0)
                }
            }
        }
        Action::Exec {
            stream_type,
            stream_id,
            command,
            args,
            args_file,
            actor,
            expect_version,
            idempotency_key,
            budget,
            json,
            trace,
        } => {
            let args = match (args, args_file) {
                (Some(args), _) => args,
                (None, None) => "{}".to_owned(),
                (None, Some(file)) => crate::read_args(&file, cwd)?,
            };
            let mut command = Command::new(&stream_type, &stream_id, &command, &args);
            command.actor_id = actor;
            let submission = Submission {
                command,
                expected_version: expect_version,
                idempotency_key,
                cascade_budget: budget,
                trace,
            };
            let settled = engine.execute(submission).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&settled.to_json())?)?;
            } else {
                print_settled(out, &settled, trace)?;
            }
            Ok(if settled.is_ok() { 0 } else { 1 })
        }
        Action::Pm(PmAction::Instances {
            name,
            after,
            limit,
            json,
        }) => {
            let page = engine.instances(&name, after, limit).await?;
            if json {
                let next = (page.len() == limit)
                    .then(|| page.last().map(|i| i.id.clone()))
                    .flatten();
                let value = json!({ "instances": page, "next": next });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                return Ok(0);
            }
            if page.is_empty() {
                writeln!(out, "`{name}` has no instances")?;
            }
            for i in &page {
                writeln!(
                    out,
                    "{}  state {} B, {} timer(s), last changed by #{}",
                    escape(&i.id),
                    i.state_bytes,
                    i.timers,
                    i.last_position
                )?;
            }
            if page.len() == limit
                && let Some(last) = page.last()
            {
                writeln!(out, "more: --after {}", escape(&last.id))?;
            }
            Ok(0)
        }
        Action::Pm(PmAction::State { name, instance, json }) => {
            // Without --instance: the one instance of a single-instance
            // process manager.
            let id = instance.unwrap_or_else(|| cascade::SINGLETON.to_owned());
            let Some((record, timers)) = engine.instance(&name, &id).await? else {
                if json {
                    let value = json!({ "instance": id, "state": null, "lastPosition": 0, "timers": [] });
                    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                } else {
                    writeln!(
                        out,
                        "`{name}` has no state yet for instance `{id}` (never started, or completed)"
                    )?;
                }
                return Ok(0);
            };
            let state = record.state.as_deref().map(cascade::state_json);
            if json {
                let value = json!({
                    "instance": id,
                    "state": state,
                    "lastPosition": record.last_position,
                    "timers": timers.iter().map(timer_json).collect::<Vec<_>>(),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                return Ok(0);
            }
            match state {
                None => writeln!(out, "instance `{id}` of `{name}` has no state yet")?,
                Some(state) => writeln!(out, "{}", serde_json::to_string_pretty(&state)?)?,
            }
            for t in &timers {
                writeln!(out, "timer `{}` due {}", escape(&t.name), due_text(t.due))?;
            }
            Ok(0)
        }
        Action::Graph { format } => {
            let graph = cascade::flow_graph(&engine.statuses().await?);
            match format {
                GraphFormat::Dot => write!(out, "{}", graph.to_dot())?,
                GraphFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&graph)?)?,
            }
            Ok(0)
        }
        Action::Timers { limit, json } => {
            let (timers, pending) = engine.timers(None, limit).await?;
            if json {
                let value = json!({
                    "timers": timers.iter().map(timer_json).collect::<Vec<_>>(),
                    "pending": pending,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                return Ok(0);
            }
            if timers.is_empty() {
                writeln!(out, "no timers pending")?;
            }
            for t in &timers {
                writeln!(
                    out,
                    "{}  {}/{}  `{}`",
                    due_text(t.due),
                    escape(&t.plugin),
                    escape(&t.instance),
                    escape(&t.name)
                )?;
            }
            if (timers.len() as u64) < pending {
                writeln!(out, "{} more pending (--limit)", pending - timers.len() as u64)?;
            }
            Ok(0)
        }
        Action::Clock(ClockAction::Advance { millis }) => {
            let now = engine.advance_clock(millis).await?;
            writeln!(out, "test clock at {now} ({})", due_text(now))?;
            Ok(0)
        }
        Action::Pm(PmAction::Refresh { name, instance, json }) => {
            let bar = progress_bar();
            bar.set_message(name.clone());
            let progress = bar.clone();
            let report = engine
                .refresh(&name, instance, move |done, total| {
                    progress.set_length(total);
                    progress.set_position(done);
                })
                .await?;
            bar.finish_and_clear();
            print_reports(out, &[report], json)
        }
        Action::Rebuild { json } => {
            let bar = progress_bar();
            let progress = bar.clone();
            let reports = engine
                .rebuild(move |name, done, total| {
                    progress.set_message(name.to_owned());
                    progress.set_length(total);
                    progress.set_position(done);
                })
                .await?;
            bar.finish_and_clear();
            print_reports(out, &reports, json)
        }
        Action::Read {
            collection,
            id,
            filter,
            json,
        } => {
            // Queries read the last commit, beside the writer.
            let read_models = engine.read_models();
            let print = |out: &mut (dyn Write + Send), documents: Vec<(String, String)>| {
                documents.into_iter().try_for_each(|(id, body)| match json {
                    true => writeln!(out, "{body}"),
                    false => writeln!(out, "{id}  {body}"),
                })
            };
            match (id, filter) {
                (Some(id), _) => match read_models.get(&collection, &id)? {
                    Some(body) => print(out, vec![(id, body)])?,
                    None => anyhow::bail!("collection `{collection}` has no document `{id}`"),
                },
                (None, Some(filter)) => {
                    let (field, value) = filter
                        .split_once('=')
                        .with_context(|| format!("--where `{filter}` must be FIELD=VALUE, e.g. groupId=g1"))?;
                    // A bare word is a string; anything else must be JSON.
                    let value = match serde_json::from_str::<Value>(value) {
                        Ok(_) => value.to_owned(),
                        Err(_) => Value::String(value.to_owned()).to_string(),
                    };
                    print(out, read_models.find(&collection, field, &value)?)?;
                }
                // Page by page: memory stays flat.
                (None, None) => {
                    let mut after = None;
                    loop {
                        let (page, next) = read_models.list(&collection, after.as_deref(), 1000)?;
                        print(out, page)?;
                        match next {
                            Some(next) => after = Some(next),
                            None => break,
                        }
                    }
                }
            }
            Ok(0)
        }
        Action::Effects {
            action: None,
            pending,
            failed,
            limit,
            json,
        } => {
            let only = match (pending, failed) {
                (true, _) => Some(false),
                (_, true) => Some(true),
                _ => None,
            };
            let (effects, _, total) = crate::api::effects_page(engine, None, limit.max(1), only).await?;
            if json {
                let list: Vec<Value> = effects.iter().map(crate::api::effect_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                return Ok(0);
            }
            for e in &effects {
                let status = match &e.parked {
                    None => "pending".to_owned(),
                    Some(p) => format!("failed after {} attempt(s): {}", p.attempts, escape(&p.error)),
                };
                writeln!(
                    out,
                    "{}  {} {} {}  {status}",
                    e.key,
                    escape(&e.name),
                    e.request.method,
                    escape(cascade::shown_url(&e.request.url))
                )?;
            }
            if effects.is_empty() {
                writeln!(out, "no effects ({total} in the outbox)")?;
            }
            Ok(0)
        }
        Action::Effects {
            action: Some(EffectsAction::Retry { key }),
            ..
        } => {
            let effect = engine.retry_effect(&key).await?;
            writeln!(
                out,
                "effect {} is tried again, with the same key, by `cascade serve` (now, if it runs)",
                effect.key
            )?;
            Ok(0)
        }
        Action::Effects {
            action: Some(EffectsAction::Skip { key, by }),
            ..
        } => {
            let by = operator(by);
            let effect = engine.skip_effect(&key, &by).await?;
            writeln!(
                out,
                "skipped effect {}; `{}` gets its failure as the outcome",
                effect.key, effect.plugin
            )?;
            Ok(0)
        }
        Action::Parked { action: None, json } => {
            let parked = engine.parked().await?;
            if json {
                let list: Vec<Value> = parked.iter().map(|(id, p)| p.to_json(*id)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for (id, p) in &parked {
                    writeln!(
                        out,
                        "#{id:<4} {} {} {} #{} ({} attempt(s)): {}",
                        p.plugin, p.handler, p.event, p.position, p.attempts, p.message
                    )?;
                }
            }
            Ok(0)
        }
        Action::Parked {
            action: Some(ParkedAction::Retry { id }),
            ..
        } => match engine.retry_parked(id).await? {
            None => {
                writeln!(out, "parked #{id} succeeded and is no longer parked")?;
                Ok(0)
            }
            Some(again) => {
                let parked = engine.parked().await?;
                let message = parked
                    .iter()
                    .find(|(i, _)| *i == again)
                    .map_or("", |(_, p)| p.message.as_str());
                writeln!(out, "parked #{id} failed again and is parked as #{again}: {message}")?;
                Ok(1)
            }
        },
        Action::Parked {
            action: Some(ParkedAction::Skip { id, by }),
            ..
        } => {
            let by = operator(by);
            let skipped = engine.skip_parked(id, &by).await?;
            writeln!(
                out,
                "skipped parked #{id} ({} {} #{}), recorded as skipped by {by}",
                skipped.parked.plugin, skipped.parked.event, skipped.parked.position
            )?;
            Ok(0)
        }
        Action::Queue { action: None, json } => {
            let queue = engine.queue().await?;
            if json {
                let list: Vec<Value> = queue
                    .iter()
                    .map(|(id, n, oldest)| json!({ "correlationId": id, "queued": n, "oldest": oldest }))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for (id, n, oldest) in &queue {
                    writeln!(
                        out,
                        "{id:<8} {n} queued, oldest {} on {}",
                        escape(&oldest.name),
                        escape(&oldest.stream())
                    )?;
                }
            }
            Ok(0)
        }
        Action::Queue {
            action: Some(QueueAction::Cancel { correlation_id, by }),
            ..
        } => {
            let by = operator(by);
            let dropped = engine.cancel(&correlation_id, &by).await?;
            writeln!(
                out,
                "cancelled cascade {correlation_id}: {dropped} queued command(s) dropped, recorded as by {by}"
            )?;
            Ok(0)
        }
        Action::Verify { json } => {
            let verification = engine.verify().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&verification)?)?;
            } else {
                for problem in &verification.problems {
                    writeln!(out, "{}", escape(problem))?;
                }
                if verification.unlisted > 0 {
                    writeln!(out, "... and {} more problem(s)", verification.unlisted)?;
                }
                let v = &verification;
                let summary = match v.problems.len() as u64 + v.unlisted {
                    0 => "no problem found".to_owned(),
                    n => format!("{n} problem(s)"),
                };
                writeln!(
                    out,
                    "verified {} event(s), {} stream(s), {} checkpoint(s), {} state blob(s), {} artifact(s): {summary}",
                    v.events, v.streams, v.checkpoints, v.states, v.artifacts
                )?;
            }
            Ok(if verification.is_ok() { 0 } else { EXIT_STORAGE })
        }
        Action::Events { stream, from, json } => {
            let print = |out: &mut (dyn Write + Send), event: &Event| match json {
                true => writeln!(out, "{}", event.to_json()),
                false => writeln!(out, "{}", event_line(event)),
            };
            let log = engine.log();
            match stream {
                Some(stream) => {
                    let (stream_type, stream_id) = stream
                        .split_once(':')
                        .with_context(|| format!("--stream `{stream}` must be TYPE:ID, e.g. users:u1"))?;
                    for event in log
                        .read_stream(stream_type, stream_id)?
                        .iter()
                        .filter(|e| e.position >= from)
                    {
                        print(out, event)?;
                    }
                }
                // Page by page: memory stays flat however long the log is.
                None => {
                    let mut next = from.max(1);
                    loop {
                        let page = log.read_log(next, EVENTS_PAGE)?;
                        let Some(last) = page.last() else { break };
                        next = last.position + 1;
                        for event in &page {
                            print(out, event)?;
                        }
                    }
                }
            }
            Ok(0)
        }
    }
}

/// The files of `plugin add` and how to deploy them: state, additions
/// (secrets read from their files), who, and whether a widening is accepted.
pub(crate) fn deploy_swap(add: &PluginAction, cwd: &Path) -> anyhow::Result<(Vec<std::path::PathBuf>, Swap)> {
    let PluginAction::Add {
        files,
        state,
        grants,
        accept_grants,
        by,
        config,
        secrets,
    } = add
    else {
        anyhow::bail!("not a `plugin add`");
    };
    let swap = Swap {
        state: *state,
        additions: additions(grants.clone(), config, secrets, cwd)?,
        by: operator(by.clone()),
        accept_grants: *accept_grants,
    };
    Ok((files.clone(), swap))
}

/// Who an operator action is recorded as: `--by`, else `$USER`.
fn operator(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Events read per read transaction by `cascade events`.
const EVENTS_PAGE: usize = 1024;

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Milliseconds since the Unix epoch as UTC time, e.g. `2026-12-03T12:00:00.000Z`.
fn due_text(millis: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_millis(at).to_string()
}

fn print_reports(out: &mut (dyn Write + Send), reports: &[RefreshReport], json: bool) -> anyhow::Result<u8> {
    if json {
        let reports: Vec<Value> = reports.iter().map(RefreshReport::to_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?;
    } else {
        if reports.is_empty() {
            writeln!(out, "no stateful process manager to refresh")?;
        }
        for r in reports {
            let rate = r.through as f64 / r.elapsed.as_secs_f64().max(1e-9);
            writeln!(
                out,
                "refreshed `{}` through position {}: {} event(s) replayed, {} call(s), {} skipped, \
                 {} parked or skipped call(s) left out, {} dispatched command(s) and {} effect(s) dropped, \
                 {} failure(s), in {:.2?} ({rate:.0} events/s scanned)",
                r.listener,
                r.through,
                r.events,
                r.calls,
                r.skipped,
                r.parked,
                r.dropped_commands,
                r.dropped_effects,
                r.failures.len(),
                r.elapsed
            )?;
            for failure in &r.failures {
                writeln!(out, "failed: {failure}")?;
            }
        }
    }
    Ok(if reports.iter().all(|r| r.failures.is_empty()) {
        0
    } else {
        1
    })
}

fn event_line(e: &Event) -> String {
    // Names and ids come from outside: escaped, so they cannot move the
    // cursor or fake lines on a terminal.
    format!(
        "#{:<5} {:<16} {}:{} v{}  {}  (correlation {}, caused by {})",
        e.position,
        escape(&e.name),
        escape(&e.stream_type),
        escape(&e.stream_id),
        e.stream_version,
        escape(&e.payload),
        e.correlation_id,
        e.causation_id
    )
}

fn print_settled(out: &mut (dyn Write + Send), settled: &Settled, trace: bool) -> std::io::Result<()> {
    writeln!(
        out,
        "cascade {} settled: {} event(s), {} command(s), {} failure(s)",
        settled.correlation_id,
        settled.events.len(),
        settled.commands.len(),
        settled.failures.len()
    )?;
    for event in &settled.events {
        writeln!(out, "  {}", event_line(event))?;
    }
    if trace {
        writeln!(out, "trace:")?;
        // Columns as wide as their longest entry, at least the usual width.
        let plugin_width = settled.trace.iter().map(|t| t.plugin.len()).max().unwrap_or(0).max(16);
        let handler_width = settled.trace.iter().map(|t| t.handler.len()).max().unwrap_or(0).max(24);
        for t in &settled.trace {
            let outcome = match &t.outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Skipped => "skipped".to_owned(),
                Outcome::Failed(message) => format!("failed: {message}"),
            };
            writeln!(
                out,
                "  {:<plugin_width$} {:<handler_width$} {} #{}  {}  {:?}",
                t.plugin,
                t.handler,
                t.event,
                t.position,
                escape(&outcome),
                t.duration
            )?;
        }
    }
    for line in &settled.logs {
        writeln!(out, "  [{}] {:?}: {}", line.plugin, line.level, escape(&line.message))?;
    }
    for failure in &settled.failures {
        writeln!(out, "failed: {failure}")?;
        match failure {
            Failure::Handler(HandlerFailure { parked: Some(id), .. }) => {
                writeln!(
                    out,
                    "  parked as #{id}: `cascade parked retry {id}` or `cascade parked skip {id}`"
                )?;
            }
            Failure::Handler(HandlerFailure {
                stopped: true, plugin, ..
            }) => {
                writeln!(
                    out,
                    "  `{plugin}` stopped; fix it, then `cascade plugin start {plugin}`"
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Text for a terminal: control characters (newlines, escape codes) are
/// shown escaped instead of acting on the screen.
pub(crate) fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What `plugin add` prints for each plugin, embedded or through a server:
/// everything it will receive and may do, its limits included.
pub(crate) fn added_line(record: &cascade::PluginRecord) -> String {
    let line = format!("added {} `{}` ({})", record.kind, record.name, short_hash(&record.hash));
    let reach = cascade::Reach::of(&record.manifest, record.exports.as_ref());
    let limits: Vec<String> = reach.limits.iter().map(|(k, v)| format!("{k} {v}")).collect();
    line + &grants_text(&reach, &record.manifest) + &format!("; limits {}", limits.join(", "))
}

/// What a plugin receives and may do, so a grant is never a surprise:
/// `; handles on-a; may dispatch a.b, read c, call ORIGIN; writes d;
/// secrets K` (what it has none of is left out).
fn grants_text(reach: &cascade::Reach, manifest: &cascade::Manifest) -> String {
    let mut text = String::new();
    if let Some(handles) = reach.handles.as_ref().filter(|h| !h.is_empty()) {
        text.push_str(&format!("; handles {}", handles.join(", ")));
    }
    let grants: Vec<String> = (reach.dispatch.iter().map(|d| format!("dispatch {d}")))
        .chain(reach.read.iter().map(|r| format!("read {r}")))
        .chain(reach.http.iter().map(|h| format!("call {h}")))
        .collect();
    if !grants.is_empty() {
        text.push_str(&format!("; may {}", grants.join(", ")));
    }
    if let Some(writes) = reach.writes.as_ref().filter(|w| !w.is_empty()) {
        text.push_str(&format!("; writes {}", writes.join(", ")));
    }
    if !manifest.secrets.is_empty() {
        let keys: Vec<&str> = manifest.secrets.keys().map(String::as_str).collect();
        text.push_str(&format!("; secrets {}", keys.join(", ")));
    }
    text
}

/// What a listener holds against its quotas, each it holds any of:
/// `, 2 of 10000000 instance(s), 1 of 100000 effect(s), 0.25 of 1024 MiB
/// of documents`.
fn usage_text(usage: &cascade::Usage, quotas: &cascade::Quotas) -> String {
    let mut text = String::new();
    let counts = [
        (usage.instances.unwrap_or(0), quotas.instances, "instance(s)"),
        (usage.timers, quotas.timers, "timer(s)"),
        (usage.effects, quotas.effects, "effect(s)"),
    ];
    for (held, quota, what) in counts.into_iter().filter(|(held, ..)| *held > 0) {
        text.push_str(&format!(", {held} of {quota} {what}"));
    }
    if usage.read_model_bytes > 0 {
        let mib = usage.read_model_bytes as f64 / f64::from(1 << 20);
        text.push_str(&format!(
            ", {mib:.2} of {} MiB of documents",
            quotas.read_model_bytes >> 20
        ));
    }
    text
}

/// The first twelve characters of a content hash (all of a shorter one).
pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
