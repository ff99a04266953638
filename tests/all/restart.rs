//! Dropping or crashing the host in the middle of a cascade loses nothing
//! and runs nothing twice.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cascade::{Command, Context, Effects, Event, Handler, HandlerError, Listener, Options};
use cascade_tests::{TestHost, plugins};

fn one_unit_per_commit() -> Options {
    Options {
        batch_size: 1,
        ..Options::default()
    }
}

#[test]
fn reopening_mid_cascade_resumes_from_the_checkpoint_without_repeating_work() {
    let mut host = TestHost::with_options(
        &[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME],
        one_unit_per_commit(),
    );
    let pipeline = host.runtime.pipeline();
    let correlation_id = pipeline
        .submit(Command::new("users", "u1", "create", r#"{"name":"Torsten"}"#), None)
        .unwrap();
    assert_eq!(pipeline.step().unwrap(), 1); // executes `create`: UserCreated
    assert_eq!(pipeline.step().unwrap(), 1); // runs UserCreated: welcome queues `open`
    assert!(pipeline.settled(&correlation_id).unwrap().is_none());
    assert_eq!(host.log_names(), ["UserCreated"]);

    let mut host = host.reopen(one_unit_per_commit());

    let pipeline = host.runtime.pipeline();
    assert_eq!(pipeline.checkpoint("welcome").unwrap(), Some(1));
    let settled = pipeline.run_until_settled(&correlation_id).unwrap();
    // `open` ran once: a second run would have been rejected ("already open").
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
    assert_eq!(host.runtime.pipeline().run_until_idle().unwrap(), 0);
}

/// A native listener that panics on its first call: the host process dying
/// in the middle of a batch.
struct Crash {
    handlers: Vec<Handler>,
}

impl Listener for Crash {
    fn name(&self) -> &str {
        "crash"
    }
    fn handlers(&self) -> &[Handler] {
        &self.handlers
    }
    fn handle(&mut self, _: usize, _: &Event, _: Context, _: &mut Effects) -> Result<(), HandlerError> {
        panic!("simulated crash in the middle of a batch")
    }
}

#[test]
fn a_crash_mid_batch_rolls_back_to_the_last_commit_and_the_work_is_redone() {
    let mut host = TestHost::with(&[plugins::USERS, plugins::ACCOUNTS, plugins::WELCOME]);
    host.runtime
        .pipeline()
        .register_listener(Box::new(Crash {
            handlers: vec![Handler::after("AccountOpened")],
        }))
        .unwrap();
    let correlation_id = host
        .runtime
        .pipeline()
        .submit(Command::new("users", "u1", "create", r#"{"name":"Torsten"}"#), None)
        .unwrap();

    // One batch would cover the whole cascade; the crash comes at its end.
    let crashed = catch_unwind(AssertUnwindSafe(|| host.runtime.pipeline().run_until_idle()));
    assert!(crashed.is_err());
    assert!(host.log().is_empty(), "nothing of the batch may be committed");

    // The crashing listener is not registered in the data directory.
    let mut host = host.reopen(Options::default());
    let settled = host.runtime.pipeline().run_until_settled(&correlation_id).unwrap();
    assert!(settled.is_ok(), "{:?}", settled.failures);
    assert_eq!(host.log_names(), ["UserCreated", "AccountOpened"]);
}
