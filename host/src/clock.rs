//! The host's time: when events are appended and when timers are due.
//!
//! The wall clock by default. A test or a demo can start the process with a
//! clock that only moves when told ([`set_test_clock`]; the command line's
//! `CASCADE_TEST_CLOCK=MS`), so a 30-minute deadline passes at once and
//! nothing sleeps for a timer. Process-wide, like the wall clock it stands in
//! for.

use std::sync::atomic::{AtomicU64, Ordering};

/// The test clock's time in milliseconds since the Unix epoch; 0: the wall clock.
static TEST_NOW: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the Unix epoch, by the host's clock.
pub fn now_millis() -> u64 {
    match TEST_NOW.load(Ordering::Relaxed) {
        0 => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        now => now,
    }
}

/// Replace the wall clock with one that stands at `millis` until moved.
/// For tests and demos only: events and timers then carry this time.
pub fn set_test_clock(millis: u64) {
    TEST_NOW.store(millis.max(1), Ordering::Relaxed);
}

/// Whether the test clock is on.
pub fn is_test_clock() -> bool {
    TEST_NOW.load(Ordering::Relaxed) != 0
}

/// Move the test clock forward by `millis` (it never goes back). Returns the
/// new time, or `None` when the wall clock is in use.
pub fn advance_test_clock(millis: u64) -> Option<u64> {
    let previous = TEST_NOW
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            (now != 0).then(|| now.saturating_add(millis))
        })
        .ok()?;
    Some(previous.saturating_add(millis))
}
