//! Guests' clocks: the wall clock is the handled event's time; sleeping
//! guests stay inside their time budget.
//!
//! The epoch deadline interrupts a guest that computes past its budget, but
//! not one blocked in the host: a `std::thread::sleep` or `time.sleep` waits
//! in `wasi:io/poll` on a pollable from `wasi:clocks/monotonic-clock`, where
//! no epoch check runs. The host therefore shadows the clock's two
//! `subscribe-*` functions with ones whose pollables never wait past the
//! current call's deadline (plus one epoch tick). A sleep cut short fails the
//! call as over budget, and the guest is interrupted at its next epoch
//! check, so it cannot go on as if it had slept.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::clocks::HostMonotonicClock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::{HostState, TICK};

/// The wall clock guests read: the handled event's `created-at` (set per
/// call), so a handler that asks the time gets the same answer live and in a
/// refresh; the host's clock outside a handler call (0).
pub(super) struct CallTime(pub(super) std::sync::Arc<std::sync::atomic::AtomicU64>);

impl wasmtime_wasi::clocks::HostWallClock for CallTime {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Duration::from_millis(crate::clock::now_millis()),
            millis => Duration::from_millis(millis),
        }
    }
}

/// The monotonic clock guests read: nanoseconds since `origin`, the same
/// origin the shadowed `subscribe-instant` measures from.
pub(super) struct GuestClock(pub(super) Instant);

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A sleep that ends at `until`, already clamped to the call's deadline.
struct BudgetSleep(tokio::time::Instant);

impl Pollable for BudgetSleep {
    // What `#[async_trait]` expands to, written out: the trait is declared
    // with it.
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { tokio::time::sleep_until(self.0).await })
    }
}

/// The interface wasmtime-wasi links; imports of older 0.2 versions resolve
/// to it too.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Shadow `subscribe-duration` and `subscribe-instant` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| Ok((sleep(store, Duration::from_nanos(nanos))?,)),
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
            let now = store.data().clock_origin.elapsed().as_nanos() as u64;
            Ok((sleep(store, Duration::from_nanos(when.saturating_sub(now)))?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn sleep(mut store: StoreContextMut<'_, HostState>, wanted: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let state = store.data_mut();
    let left = state.call_deadline.saturating_duration_since(Instant::now()) + TICK;
    if wanted > left {
        let budget = state.limits.time_budget;
        state.refuse(format!(
            "exceeded its time budget of {budget:?} while sleeping and was stopped; make the handler faster or raise the plugin's time budget"
        ));
    }
    let until = tokio::time::Instant::now() + wanted.min(left);
    let sleep = state.table.push(BudgetSleep(until))?;
    let pollable = subscribe(&mut state.table, sleep)?;
    if wanted > left {
        // Interrupt the guest at its first epoch check after the sleep.
        store.set_epoch_deadline(0);
    }
    Ok(pollable)
}
