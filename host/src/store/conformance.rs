//! The conformance suite every store passes: what the engine relies on, as
//! checks over [`Backend`]. `run(make)` calls `make` for a fresh, empty
//! store per check and panics naming the first broken promise. The redb
//! store, the in-memory store and the PostgreSQL store run it in this
//! crate's tests; a new store calls it from its own:
//!
//! ```
//! cascade::store::conformance::run(cascade::store::MemoryStore::new);
//! ```

use super::traits::{Backend, Documents, EventLog, Instances, Outbox, Progress, Registry, WorkQueue};
use super::{Packed, StreamHead};
use crate::error::{ConcurrencyError, StoreError};
use crate::event::{Command, Envelope, NewEvent};
use crate::manifest::Manifest;
use crate::records::{
    CascadeRecord, Effect, InstanceRecord, Parked, ParkedEffect, PluginKind, PluginRecord, PluginVersion,
    QueuedCommand, Skipped, Timer,
};

/// A named check of one promise.
type Check<B> = (&'static str, fn(&B));

/// A named check of a promise about several handles on one store, as
/// several threads or processes hold them.
type SharedCheck<B> = (&'static str, fn(&[B]));

/// Run every check, each on a store `make` returns new and empty.
///
/// # Panics
///
/// The first check the store fails, naming it.
pub fn run<B: Backend + Sync + Clone>(make: impl Fn() -> B) {
    run_shared(make, B::clone);
}

/// [`run`] for a store that several processes share (PostgreSQL): `again`
/// opens another handle on the same store, as another process would, for
/// the checks of concurrent writers and readers.
///
/// # Panics
///
/// The first check the store fails, naming it.
pub fn run_shared<B: Backend + Sync>(make: impl Fn() -> B, again: impl Fn(&B) -> B) {
    let checks: [Check<B>; 10] = [
        ("appends are gapless and versioned per stream", appends),
        ("a stale expected version writes nothing", stale_version),
        ("an Err rolls the whole unit of work back", rollback),
        ("the queue is first in, first out by sequence", queue),
        (
            "cascades, idempotency keys, budgets, parked and skipped events",
            work_records,
        ),
        ("checkpoints and stopped listeners", progress),
        ("instances and their timers", instances),
        (
            "the registry keeps versions and collects what no version uses",
            registry,
        ),
        ("documents, indexes and clearing a collection", documents),
        ("the effects outbox, by key", outbox),
    ];
    let shared: [SharedCheck<B>; 3] = [
        ("of two writers racing for one version, one wins whole", racing_writers),
        (
            "a read view does not see, nor wait for, an open unit of work",
            isolation,
        ),
        (
            "positions are gapless and visible in commit order",
            gapless_in_commit_order,
        ),
    ];
    for (name, check) in checks {
        let store = make();
        checked(name, || check(&store));
    }
    for (name, check) in shared {
        let store = make();
        let handles = [again(&store), again(&store), again(&store), store];
        checked(name, || check(&handles));
    }
}

fn checked(name: &str, check: impl FnOnce()) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("panicked");
        panic!("store conformance: {name}: {message}");
    }
}

fn write<B: Backend, R>(store: &B, f: impl FnOnce(&mut B::Tx<'_>) -> Result<R, StoreError>) -> R {
    store.write(f).expect("the write commits")
}

fn read<B: Backend, R>(store: &B, f: impl FnOnce(&B::Tx<'_>) -> Result<R, StoreError>) -> R {
    store.read(f).expect("the read succeeds")
}

fn envelope() -> Envelope {
    Envelope {
        metadata: "{}".into(),
        actor_id: Some("ada".into()),
        causation_id: "c1".into(),
        correlation_id: "c1".into(),
    }
}

fn created(name: &str) -> NewEvent {
    NewEvent {
        name: "UserCreated".into(),
        payload: format!(r#"{{"name":"{name}"}}"#),
    }
}

fn appends<B: Backend>(store: &B) {
    assert_eq!(read(store, |tx| tx.head()), 0, "an empty log has head 0");
    let appended = write(store, |tx| {
        let a = tx.append(
            "users",
            "u1",
            0,
            &[created("a"), created("b")],
            &envelope(),
            Some(b"s2".to_vec()),
        )?;
        let b = tx.append("users", "u2", 0, &[created("c")], &envelope(), None)?;
        Ok((a.expect("version 0 is current"), b.expect("version 0 is current")))
    });
    let positions: Vec<u64> = appended.0.iter().chain(&appended.1).map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3], "positions start at 1 and have no gaps");
    assert_eq!(appended.0[1].stream_version, 2, "versions count per stream");
    assert_eq!(appended.1[0].stream_version, 1, "versions count per stream");
    assert_eq!(appended.0[0].actor_id.as_deref(), Some("ada"), "the envelope is kept");
    read(store, |tx| {
        assert_eq!(tx.head()?, 3);
        let event = tx.logged_event(2)?;
        assert_eq!(
            (event.stream_id.as_str(), event.payload.as_str()),
            ("u1", r#"{"name":"b"}"#)
        );
        assert_eq!(tx.event(4)?, None, "nothing past the head");
        let range: Vec<u64> = tx.events(2, 5)?.into_iter().map(|e| e.position).collect();
        assert_eq!(range, [2, 3], "a range from a position, up to the head");
        assert!(tx.logged_event(4).is_err(), "a missing logged event is an error");
        let u1 = tx.stream("users", "u1")?;
        assert_eq!(
            u1,
            StreamHead {
                version: 2,
                state: Some(b"s2".to_vec())
            }
        );
        assert_eq!(tx.stream("users", "none")?, StreamHead::default());
        Ok(())
    });
    // `None` keeps the stored state; new events move the version.
    write(store, |tx| {
        tx.append("users", "u1", 2, &[created("d")], &envelope(), None)
    })
    .expect("version 2 is current");
    let u1 = read(store, |tx| tx.stream("users", "u1"));
    assert_eq!(
        u1,
        StreamHead {
            version: 3,
            state: Some(b"s2".to_vec())
        }
    );
}

fn stale_version<B: Backend>(store: &B) {
    write(store, |tx| {
        tx.append("users", "u1", 0, &[created("a")], &envelope(), None)
    })
    .expect("version 0 is current");
    let conflict = write(store, |tx| {
        tx.append("users", "u1", 0, &[created("b")], &envelope(), None)
    });
    assert_eq!(
        conflict.unwrap_err(),
        ConcurrencyError {
            stream: "users:u1".into(),
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(read(store, |tx| tx.head()), 1, "nothing appended");
}

fn rollback<B: Backend>(store: &B) {
    let failed: Result<(), StoreError> = store.write(|tx| {
        tx.append("users", "u1", 0, &[created("a")], &envelope(), None)?
            .unwrap();
        tx.set_checkpoint("p", 1)?;
        tx.rm_put("c", "d", "{}")?;
        Err(StoreError::Corrupt {
            table: "test",
            message: "injected".into(),
        })
    });
    assert!(failed.is_err(), "the closure's error is returned");
    read(store, |tx| {
        assert_eq!(tx.head()?, 0, "no event survives");
        assert_eq!(tx.checkpoint("p")?, None, "no checkpoint survives");
        assert_eq!(tx.rm_doc("c", "d")?, None, "no document survives");
        Ok(())
    });
}

fn queued(id: &str) -> QueuedCommand {
    QueuedCommand {
        id: id.into(),
        command: Command::new("users", id, "create", "{}"),
        correlation_id: format!("c-{id}"),
        causation_id: None,
        cause: None,
        expected_version: None,
    }
}

fn queue<B: Backend>(store: &B) {
    assert_eq!(read(store, |tx| tx.next_command_seq()), 1, "sequences start at 1");
    write(store, |tx| {
        tx.enqueue(7, &queued("b"))?;
        tx.enqueue(3, &queued("a"))?;
        tx.enqueue(9, &queued("c"))?;
        tx.set_next_command_seq(10)
    });
    read(store, |tx| {
        assert_eq!(tx.next_command_seq()?, 10);
        assert_eq!(tx.queued_commands()?, 3);
        let seqs: Vec<u64> = tx.queue()?.into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [3, 7, 9], "the queue lists in sequence order");
        Ok(())
    });
    let (first, second) = write(store, |tx| {
        tx.unqueue(7)?;
        Ok((tx.dequeue()?, tx.dequeue()?))
    });
    assert_eq!(first.map(|c| c.id).as_deref(), Some("a"), "lowest sequence first");
    assert_eq!(
        second.map(|c| c.id).as_deref(),
        Some("c"),
        "an unqueued command is gone"
    );
    assert!(write(store, |tx| tx.dequeue()).is_none(), "then the queue is empty");
}

fn parked(plugin: &str) -> Parked {
    Parked {
        plugin: plugin.into(),
        handler: "on-user-created".into(),
        event: "UserCreated".into(),
        position: 1,
        correlation_id: "c1".into(),
        message: "boom".into(),
        attempts: 3,
        parked_at: 5,
    }
}

fn work_records<B: Backend>(store: &B) {
    let record = CascadeRecord {
        outstanding: 2,
        events: vec![1, 2],
        ..CascadeRecord::default()
    };
    let (first, second) = write(store, |tx| {
        tx.put_cascade("c1", &record)?;
        tx.put_idempotent("key-1", "c1")?;
        tx.put_cascade_budget("c1", 50)?;
        Ok((tx.park(None, &parked("a"))?, tx.park(None, &parked("b"))?))
    });
    assert!(second > first, "parked ids grow");
    read(store, |tx| {
        let stored = tx.cascade("c1")?.expect("the cascade record");
        assert_eq!((stored.outstanding, stored.events), (2, vec![1, 2]));
        assert!(tx.cascade("c2")?.is_none());
        assert_eq!(tx.idempotent("key-1")?.as_deref(), Some("c1"));
        assert_eq!(tx.idempotent("key-2")?, None);
        assert_eq!((tx.cascade_budget("c1")?, tx.cascade_budget("c2")?), (Some(50), None));
        let all: Vec<(u64, String)> = tx.parked()?.into_iter().map(|(id, p)| (id, p.plugin)).collect();
        assert_eq!(all, [(first, "a".to_owned()), (second, "b".to_owned())], "oldest first");
        assert_eq!(tx.parked_entry(second)?.map(|p| p.plugin).as_deref(), Some("b"));
        Ok(())
    });
    // Taking one out and parking again never reuses its id; a retried one
    // keeps its own.
    let third = write(store, |tx| {
        let taken = tx.take_parked(second)?.expect("it was parked");
        tx.put_skipped(
            second,
            &Skipped {
                parked: taken,
                skipped_by: "op".into(),
                skipped_at: 6,
            },
        )?;
        assert!(tx.take_parked(second)?.is_none(), "taken once");
        tx.park(Some(first), &parked("a"))?;
        tx.park(None, &parked("c"))
    });
    assert!(third > second, "an id is never reused");
    assert_eq!(read(store, |tx| tx.parked()).len(), 2);
}

fn progress<B: Backend>(store: &B) {
    read(store, |tx| {
        assert_eq!(tx.pipeline_position()?, 0);
        assert_eq!(tx.checkpoint("p")?, None);
        assert!(!tx.is_stopped("p")?);
        Ok(())
    });
    write(store, |tx| {
        tx.set_pipeline_position(4)?;
        tx.set_checkpoint("p", 3)?;
        tx.stop_for("q", "its state would not load")?;
        tx.set_stopped("r", true)
    });
    read(store, |tx| {
        assert_eq!(tx.pipeline_position()?, 4);
        assert_eq!(tx.checkpoint("p")?, Some(3));
        assert!(tx.is_stopped("q")? && tx.is_stopped("r")?);
        assert_eq!(tx.stop_reason("q")?.as_deref(), Some("its state would not load"));
        assert_eq!(tx.stop_reason("r")?, None, "stopped by the operator: no reason");
        Ok(())
    });
    write(store, |tx| tx.set_stopped("q", false));
    read(store, |tx| {
        assert!(!tx.is_stopped("q")?);
        assert_eq!(tx.stop_reason("q")?, None, "starting clears the reason");
        Ok(())
    });
}

fn timer(plugin: &str, instance: &str, name: &str, due: u64) -> Timer {
    Timer {
        plugin: plugin.into(),
        instance: instance.into(),
        name: name.into(),
        due,
        payload: format!(r#"{{"n":"{name}"}}"#),
    }
}

/// Instances by (plugin, id), paged; timers by due time, replaced by name,
/// cancelled with their instance and their plugin.
fn instances<B: Backend>(store: &B) {
    let record = |n: u8| InstanceRecord {
        state: Some(vec![n]),
        last_position: u64::from(n),
    };
    write(store, |tx| {
        for id in ["a", "b", "b\0x", "c"] {
            tx.put_instance("p", id, &record(1))?;
        }
        tx.put_instance("p2", "a", &record(2))?;
        tx.put_timer(&timer("p", "a", "late", 30))?;
        tx.put_timer(&timer("p", "a", "soon", 10))?;
        tx.put_timer(&timer("p", "b", "soon", 20))?;
        tx.put_timer(&timer("p", "b\0x", "soon", 20))?;
        tx.put_timer(&timer("p2", "a", "soon", 5))?;
        // Replaces `p/a/late` at 30.
        tx.put_timer(&timer("p", "a", "late", 40))
    });
    read(store, |tx| {
        assert_eq!(tx.instance("p", "a")?, Some(record(1)));
        assert_eq!(tx.instance("p", "z")?, None);
        assert_eq!((tx.instance_count("p")?, tx.instance_count("p2")?), (4, 1));
        assert!(
            tx.state_bytes("p")? > tx.state_bytes("p2")?,
            "four states weigh more than one"
        );
        let page = tx.instances("p", None, 2)?;
        assert_eq!(page.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let page = tx.instances("p", Some("b"), 10)?;
        assert_eq!(
            page.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["b\0x", "c"]
        );
        let due: Vec<(u64, String)> = tx
            .due_timers(u64::MAX, None, 10)?
            .into_iter()
            .map(|t| (t.due, format!("{}/{}/{}", t.plugin, t.instance, t.name)))
            .collect();
        assert_eq!(
            due,
            [
                (5, "p2/a/soon".to_owned()),
                (10, "p/a/soon".to_owned()),
                (20, "p/b/soon".to_owned()),
                (20, "p/b\0x/soon".to_owned()),
                (40, "p/a/late".to_owned()),
            ]
        );
        let first = tx.due_timers(20, None, 2)?;
        let rest = tx.due_timers(20, first.last(), 10)?;
        assert_eq!(first.len() + rest.len(), 4, "paged by the last one seen, through 20");
        assert_eq!(tx.timers_of("p", Some("b"))?.len(), 1, "`b` is not a prefix of `b\\0x`");
        assert_eq!(tx.timers_of("p", None)?.len(), 4);
        assert_eq!(tx.pending_timers()?, 5);
        assert_eq!(
            (tx.timer_count("p")?, tx.timer_count("p2")?),
            (4, 1),
            "a replaced timer counts once"
        );
        Ok(())
    });
    write(store, |tx| {
        assert_eq!(tx.remove_timer("p", "a", "soon")?.map(|t| t.due), Some(10));
        assert_eq!(tx.remove_timer("p", "a", "soon")?, None, "cancelled once");
        tx.remove_instance("p", "b")?;
        tx.remove_instances("p2")
    });
    read(store, |tx| {
        assert_eq!(tx.instance("p", "b")?, None);
        assert_eq!(tx.instance("p2", "a")?, None);
        assert_eq!((tx.instance_count("p")?, tx.instance_count("p2")?), (3, 0));
        assert_eq!(tx.state_bytes("p2")?, 0, "no instance, no bytes");
        let left: Vec<String> = tx
            .due_timers(u64::MAX, None, 10)?
            .into_iter()
            .map(|t| format!("{}/{}", t.instance, t.name))
            .collect();
        assert_eq!(left, ["b\0x/soon", "a/late"]);
        assert_eq!(tx.timers_of("p", Some("a"))?[0].payload, r#"{"n":"late"}"#);
        assert_eq!(
            (tx.timer_count("p")?, tx.timer_count("p2")?),
            (2, 0),
            "counts follow cancels and removed instances"
        );
        Ok(())
    });
}

fn plugin(name: &str, hash: &str, order: u64) -> PluginRecord {
    let mut manifest = Manifest::default();
    manifest.capabilities.http.push("https://hooks.example.com/v1".into());
    manifest.capabilities.read.push("profiles".into());
    manifest
        .config
        .insert("url".into(), r#""https://hooks.example.com/v1/x""#.into());
    manifest.secrets.insert("token".into(), r#""t0k3n""#.into());
    PluginRecord {
        name: name.into(),
        kind: PluginKind::ProcessManager,
        hash: hash.into(),
        order,
        source: format!("{name}.wasm"),
        manifest,
        exports: Some(crate::records::Exports {
            handles: vec!["on-user-created".into()],
            writes: Vec::new(),
            ..crate::records::Exports::default()
        }),
    }
}

fn effect(key: &str, parked: bool) -> Effect {
    Effect {
        key: key.into(),
        plugin: "notify".into(),
        name: "hook".into(),
        instance: Some("o1".into()),
        correlation_id: "k1".into(),
        position: 7,
        request: crate::effect::HttpRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:9/x".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        },
        requested_at: 1,
        policy: crate::manifest::EffectPolicy::default(),
        parked: parked.then(|| ParkedEffect {
            error: "answered 500".into(),
            attempts: 5,
            parked_at: 2,
        }),
    }
}

fn outbox<B: Backend>(store: &B) {
    write(store, |tx| {
        tx.put_effect(&effect("notify-9-on-x-0", false))?;
        tx.put_effect(&effect("notify-7-on-x-1", true))?;
        tx.put_effect(&effect("notify-7-on-x-0", false))
    });
    read(store, |tx| {
        let keys: Vec<String> = tx.effects(None, 10)?.into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            ["notify-7-on-x-0", "notify-7-on-x-1", "notify-9-on-x-0"],
            "key order"
        );
        let after: Vec<String> = tx
            .effects(Some("notify-7-on-x-0"), 1)?
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(after, ["notify-7-on-x-1"], "a page after a key");
        assert_eq!(
            tx.effect("notify-7-on-x-1")?,
            Some(effect("notify-7-on-x-1", true)),
            "read back whole"
        );
        assert_eq!(tx.effect_count()?, 3);
        assert_eq!((tx.effect_count_of("notify")?, tx.effect_count_of("other")?), (3, 0));
        Ok(())
    });
    let removed = write(store, |tx| tx.remove_effect("notify-9-on-x-0"));
    assert_eq!(removed.map(|e| e.key).as_deref(), Some("notify-9-on-x-0"));
    assert_eq!(
        write(store, |tx| tx.remove_effect("notify-9-on-x-0")),
        None,
        "removed once"
    );
    // Replacing an effect (parking it) keeps the count.
    write(store, |tx| tx.put_effect(&effect("notify-7-on-x-0", true)));
    read(store, |tx| {
        assert_eq!(tx.effect_count()?, 2);
        assert_eq!(tx.effect_count_of("notify")?, 2);
        Ok(())
    });
}

fn version(name: &str, version: u64, hash: &str) -> PluginVersion {
    PluginVersion {
        name: name.into(),
        version,
        kind: PluginKind::ProcessManager,
        hash: hash.into(),
        source: format!("{name}.wasm"),
        manifest: Manifest::default(),
        exports: None,
        deployed_at: version,
        deployed_by: "op".into(),
    }
}

fn registry<B: Backend>(store: &B) {
    let bytes = Packed::new(b"\0asm component bytes");
    write(store, |tx| {
        tx.put_plugin(&plugin("zeta", "h1", 1))?;
        tx.put_plugin(&plugin("alpha", "h2", 2))?;
        for (v, hash) in [(1, "h0"), (2, "h1")] {
            tx.put_component(hash, &bytes)?;
            tx.put_artifact(&format!("{hash}-engine"), &bytes)?;
            tx.put_plugin_version(&version("zeta", v, hash))?;
        }
        tx.put_component("h2", &bytes)?;
        tx.set_checkpoint("zeta", 9)
    });
    read(store, |tx| {
        let plugins = tx.plugins()?;
        let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"], "registration order, not name order");
        assert_eq!(
            plugins[0],
            plugin("zeta", "h1", 1),
            "grants, config and secrets read back"
        );
        assert_eq!(
            tx.component("h1")?.as_deref(),
            Some(b"\0asm component bytes".as_slice())
        );
        assert_eq!(
            tx.artifact("h0-engine")?.as_deref(),
            Some(b"\0asm component bytes".as_slice())
        );
        let (versions, active) = tx.plugin_versions("zeta")?;
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(active, Some(2), "the newest put is active");
        Ok(())
    });
    // Keep one version: v1 is forgotten with its component and artifact.
    let forgotten = write(store, |tx| tx.prune_versions("zeta", 1));
    assert_eq!(forgotten, [1]);
    read(store, |tx| {
        assert_eq!(tx.component("h0")?, None, "no version uses h0");
        assert_eq!(tx.artifact("h0-engine")?, None, "nor its artifact");
        assert!(tx.component("h1")?.is_some() && tx.artifact("h1-engine")?.is_some());
        assert!(tx.component("h2")?.is_some(), "a registered plugin's component stays");
        Ok(())
    });
    // A rollback makes an older version active; pruning keeps the active one.
    write(store, |tx| {
        tx.put_plugin_version(&version("zeta", 3, "h1"))?;
        tx.set_active_version("zeta", 2)
    });
    let forgotten = write(store, |tx| tx.prune_versions("zeta", 1));
    assert!(forgotten.is_empty(), "the active version is kept: {forgotten:?}");
    write(store, |tx| tx.remove_plugin("zeta"));
    read(store, |tx| {
        assert_eq!(tx.plugins()?.len(), 1);
        assert_eq!(tx.checkpoint("zeta")?, None, "removing forgets its checkpoint");
        Ok(())
    });
}

fn documents<B: Backend>(store: &B) {
    write(store, |tx| {
        tx.rm_put("projects", "p2", r#"{"g":"g1"}"#)?;
        tx.rm_put("projects", "p1", r#"{"g":"g1"}"#)?;
        tx.rm_put("groups", "g1", r#"{"n":1}"#)?;
        tx.rm_index("projects", "g", r#""g1""#, "p2")?;
        tx.rm_index("projects", "g", r#""g1""#, "p1")?;
        tx.rm_index("projects", "g", r#""g2""#, "p3")?;
        tx.set_rm_indexed("projects", &["g".to_owned()])
    });
    read(store, |tx| {
        let ids: Vec<String> = tx.rm_docs("projects")?.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["p1", "p2"], "one collection, in id order");
        assert_eq!(tx.rm_doc("groups", "g1")?.as_deref(), Some(r#"{"n":1}"#));
        assert_eq!(tx.rm_find("projects", "g", r#""g1""#)?, ["p1", "p2"]);
        let page: Vec<String> = tx
            .rm_page("projects", "p1", 10)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(page, ["p2"], "a page starts after `after`");
        assert_eq!(tx.rm_page("projects", "", 1)?.len(), 1, "and holds at most `limit`");
        assert_eq!(tx.rm_indexed("projects")?, Some(vec!["g".to_owned()]));
        assert_eq!(tx.rm_indexed("groups")?, None);
        assert_eq!(
            (tx.rm_bytes("projects")?, tx.rm_bytes("groups")?),
            (24, 9),
            "ids and bodies"
        );
        Ok(())
    });
    write(store, |tx| {
        tx.rm_put("projects", "p1", r#"{"g":"g1","n":1}"#)?;
        tx.rm_delete("projects", "p2")?;
        tx.rm_unindex("projects", "g", r#""g1""#, "p2")
    });
    assert_eq!(
        read(store, |tx| tx.rm_bytes("projects")),
        18,
        "a replaced body counts once"
    );
    assert_eq!(read(store, |tx| tx.rm_find("projects", "g", r#""g1""#)), ["p1"]);
    write(store, |tx| tx.rm_clear("projects"));
    read(store, |tx| {
        assert!(tx.rm_docs("projects")?.is_empty());
        assert!(
            tx.rm_find("projects", "g", r#""g2""#)?.is_empty(),
            "its index is cleared too"
        );
        assert_eq!(tx.rm_docs("groups")?.len(), 1, "other collections stay");
        assert_eq!((tx.rm_bytes("projects")?, tx.rm_bytes("groups")?), (0, 9));
        Ok(())
    });
}

/// Two units of work race for the same expected version: one appends, the
/// other gets a concurrency error and everything it wrote before is gone.
fn racing_writers<B: Backend + Sync>(stores: &[B]) {
    let start = std::sync::Barrier::new(2);
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .zip(stores)
            .map(|(who, store)| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let outcome: Result<(), StoreError> = store.write(|tx| {
                        tx.put_cascade(who, &CascadeRecord::default())?;
                        match tx.append("orders", "o1", 0, &[created(who), created(who)], &envelope(), None)? {
                            Ok(_) => Ok(()),
                            Err(conflict) => Err(StoreError::Corrupt {
                                table: "test",
                                message: conflict.to_string(),
                            }),
                        }
                    });
                    match outcome {
                        Ok(()) => true,
                        Err(StoreError::Corrupt { table: "test", .. }) => false,
                        Err(err) => panic!("the loser gets a storage error, not a concurrency error: {err}"),
                    }
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("a racer")).collect()
    });
    assert_eq!(
        outcomes.iter().filter(|won| **won).count(),
        1,
        "exactly one wins: {outcomes:?}"
    );
    let winner = if outcomes[0] { "w1" } else { "w2" };
    let loser = if outcomes[0] { "w2" } else { "w1" };
    read(&stores[0], |tx| {
        assert_eq!(tx.head()?, 2, "only the winner's two events");
        assert_eq!(tx.stream("orders", "o1")?.version, 2);
        assert!(tx.cascade(winner)?.is_some(), "the winner's other writes commit");
        assert!(tx.cascade(loser)?.is_none(), "nothing of the loser is half-written");
        Ok(())
    });
}

/// A read view does not see a unit of work that has not committed, and
/// taking one does not wait for it.
fn isolation<B: Backend + Sync>(stores: &[B]) {
    let (store, other) = (&stores[0], &stores[1]);
    write(store, |tx| {
        tx.append("users", "u1", 0, &[created("a")], &envelope(), None)
    })
    .expect("version 0 is current");
    write(store, |tx| {
        tx.append("users", "u1", 1, &[created("b")], &envelope(), None)?
            .expect("version 1 is current");
        tx.rm_put("c", "d", "{}")?;
        // On another thread: a reader while this unit of work is open.
        let seen = std::thread::scope(|scope| {
            scope
                .spawn(|| read(other, |tx| Ok((tx.head()?, tx.rm_doc("c", "d")?))))
                .join()
                .expect("the reader")
        });
        assert_eq!(seen, (1, None), "an open unit of work is invisible to a read view");
        Ok(())
    });
    assert_eq!(read(other, |tx| tx.head()), 2, "and visible once committed");
}

/// Several writers append while a reader follows the log: the reader
/// never sees a position before every lower one is visible, so following
/// the head never skips an event.
fn gapless_in_commit_order<B: Backend + Sync>(stores: &[B]) {
    const WRITERS: usize = 4;
    const APPENDS: usize = 25;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (done, store) = (&done, &stores[w % stores.len()]);
            scope.spawn(move || {
                // Counted even when a write panics, so the reader stops.
                let _done = Done(done);
                for n in 0..APPENDS {
                    let id = format!("w{w}-{n}");
                    write(store, |tx| {
                        tx.append("users", &id, 0, &[created(&id)], &envelope(), None)
                    })
                    .expect("a new stream");
                }
            });
        }
        let mut seen = Vec::new();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
            let next = seen.len() as u64 + 1;
            let page = read(&stores[0], |tx| tx.events(next, 1000));
            for (offset, event) in page.iter().enumerate() {
                assert_eq!(event.position, next + offset as u64, "a reader never sees a gap");
            }
            seen.extend(page.into_iter().map(|e| e.position));
            if finished {
                break seen;
            }
        }
    });
    let total = (WRITERS * APPENDS) as u64;
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "every event seen once, in order");
}

/// Counts a finished thread when dropped.
struct Done<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
