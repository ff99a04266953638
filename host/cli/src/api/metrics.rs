//! `GET /metrics` in the Prometheus text format.
//!
//! The figures live where they are produced (atomics on the engine, per
//! handler counters in the pipeline's slots) and are read as one snapshot
//! here, so the hot path never touches a metrics registry.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use cascade::{DURATION_BUCKETS, EFFECT_LATENCY_BUCKETS, LATENESS_BUCKETS, ListenerStats, PluginEffects, TimerStats};

pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let listeners = state.engine.listener_stats().await?;
    let (timers, pending_timers) = state.engine.timer_stats().await?;
    let (_, in_outbox) = state.engine.effects(None, 0, None).await?;
    let statuses = state.engine.statuses().await?;
    let parked = state.engine.parked().await.map(|p| p.len());
    let log = state.engine.log();
    let head = log.head()?;
    let queued = log.queued_commands()?;
    let stats = state.engine.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric(
        "cascade_log_head",
        "gauge",
        "Position of the newest event.",
        head as f64,
    );
    metric(
        "cascade_commands_submitted_total",
        "counter",
        "Commands submitted from outside.",
        load(&stats.submitted) as f64,
    );
    metric(
        "cascade_queue_depth",
        "gauge",
        "Commands waiting in the queue.",
        queued as f64,
    );
    metric(
        "cascade_parked",
        "gauge",
        "Events parked after failing every attempt.",
        parked? as f64,
    );
    metric(
        "cascade_batches_total",
        "counter",
        "Group commits that did work.",
        load(&stats.batches) as f64,
    );
    metric(
        "cascade_batch_units_total",
        "counter",
        "Units of work (events through both phases, commands) committed.",
        load(&stats.units) as f64,
    );
    metric(
        "cascade_last_batch_units",
        "gauge",
        "Units of work in the last group commit.",
        load(&stats.last_batch_units) as f64,
    );
    metric(
        "cascade_batch_seconds_total",
        "counter",
        "Time spent in group commits, handlers and fsync included.",
        load(&stats.step_micros) as f64 / 1e6,
    );
    metric(
        "cascade_swaps_total",
        "counter",
        "Hot swaps (deploys and rollbacks) that took effect.",
        load(&stats.swaps) as f64,
    );
    metric(
        "cascade_swaps_refused_total",
        "counter",
        "Deploys refused; the old version kept running.",
        load(&stats.swaps_refused) as f64,
    );
    metric(
        "cascade_swap_pause_seconds_total",
        "counter",
        "Time the writer was held by hot swaps.",
        load(&stats.swap_micros) as f64 / 1e6,
    );
    metric(
        "cascade_swap_pause_seconds_max",
        "gauge",
        "Longest time one hot swap held the writer.",
        load(&stats.swap_max_micros) as f64 / 1e6,
    );
    metric(
        "cascade_timers_pending",
        "gauge",
        "Timers scheduled and not yet fired or cancelled.",
        pending_timers as f64,
    );
    metric(
        "cascade_timers_fired_total",
        "counter",
        "Timers fired since the server started.",
        timers.fired as f64,
    );
    metric(
        "cascade_effects_pending",
        "gauge",
        "Effects in the outbox: waiting, in flight, or parked.",
        in_outbox as f64,
    );
    write_lateness(&mut out, &timers);
    write_effects(&mut out, &state.engine.effect_stats().snapshot());
    let _ = writeln!(
        out,
        "# HELP cascade_instances Live instances of each per-instance process manager.\n# TYPE cascade_instances gauge"
    );
    for status in &statuses {
        if let Some(instances) = status.listener.as_ref().and_then(|l| l.usage.instances) {
            let _ = writeln!(
                out,
                "cascade_instances{{plugin=\"{}\"}} {instances}",
                label(&status.record.name)
            );
        }
    }
    write_handlers(&mut out, &listeners);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

fn write_effects(out: &mut String, plugins: &std::collections::BTreeMap<String, PluginEffects>) {
    for (name, help, value) in [
        (
            "cascade_effects_performed_total",
            "Effects that got a final answer, per plugin.",
            (|p: &PluginEffects| p.performed) as fn(&PluginEffects) -> u64,
        ),
        (
            "cascade_effects_failed_total",
            "Effects parked after every attempt failed, per plugin.",
            |p| p.failed,
        ),
        (
            "cascade_effect_attempts_total",
            "HTTP attempts made, per plugin.",
            |p| p.attempts,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (plugin, stats) in plugins {
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", label(plugin), value(stats));
        }
    }
    let _ = writeln!(
        out,
        "# HELP cascade_effect_seconds Time from an effect's request to its outcome, per plugin.\n\
         # TYPE cascade_effect_seconds histogram"
    );
    for (plugin, stats) in plugins {
        let labels = format!("plugin=\"{}\"", label(plugin));
        let count = stats.performed + stats.failed;
        let series = (
            &EFFECT_LATENCY_BUCKETS[..],
            &stats.latency[..],
            stats.latency_seconds,
            count,
        );
        write_series(out, "cascade_effect_seconds", &labels, series);
    }
}

/// One histogram series: cumulative buckets (upper bounds `bounds`,
/// per-bucket `counts`), sum and count; `labels` may be empty.
fn write_series(out: &mut String, name: &str, labels: &str, (bounds, counts, sum, count): (&[f64], &[u64], f64, u64)) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (le, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let le = if le.is_infinite() {
            "+Inf".to_owned()
        } else {
            le.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

fn write_lateness(out: &mut String, timers: &TimerStats) {
    let _ = writeln!(
        out,
        "# HELP cascade_timer_lateness_seconds How long after its due time each timer fired.\n\
         # TYPE cascade_timer_lateness_seconds histogram"
    );
    let series = (
        &LATENESS_BUCKETS[..],
        &timers.lateness[..],
        timers.lateness_seconds,
        timers.fired,
    );
    write_series(out, "cascade_timer_lateness_seconds", "", series);
}

fn write_handlers(out: &mut String, listeners: &[ListenerStats]) {
    let _ = writeln!(
        out,
        "# HELP cascade_listener_checkpoint Last position a listener has seen."
    );
    let _ = writeln!(out, "# TYPE cascade_listener_checkpoint gauge");
    for l in listeners {
        let _ = writeln!(
            out,
            "cascade_listener_checkpoint{{plugin=\"{}\"}} {}",
            label(&l.name),
            l.checkpoint
        );
    }
    let _ = writeln!(
        out,
        "# HELP cascade_handler_failures_total Handler calls that failed, retries included."
    );
    let _ = writeln!(out, "# TYPE cascade_handler_failures_total counter");
    for l in listeners {
        for h in &l.handlers {
            let labels = format!("plugin=\"{}\",handler=\"{}\"", label(&l.name), label(&h.export));
            let _ = writeln!(out, "cascade_handler_failures_total{{{labels}}} {}", h.failures);
        }
    }
    let _ = writeln!(
        out,
        "# HELP cascade_handler_call_seconds Live handler calls and their wall time."
    );
    let _ = writeln!(out, "# TYPE cascade_handler_call_seconds histogram");
    for l in listeners {
        for h in &l.handlers {
            let labels = format!("plugin=\"{}\",handler=\"{}\"", label(&l.name), label(&h.export));
            let series = (&DURATION_BUCKETS[..], &h.buckets[..], h.seconds, h.calls);
            write_series(out, "cascade_handler_call_seconds", &labels, series);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
