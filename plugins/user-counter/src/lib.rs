//! Stateful process manager `user-counter`: the JS library's
//! `withState({usersCreated: 0})`, counting `UserCreated` and `UserUpdated`
//! in one instance (`singleton`) for every event.
//! The increment is a build-time constant (feature `by-two`), so a second
//! build can be deployed and refreshed.

use cascade_sdk::{Context, Event, HandlerResult, InstanceRule, process_manager};
use serde::{Deserialize, Serialize};

const INCREMENT: u64 = if cfg!(feature = "by-two") { 2 } else { 1 };

struct UserCounter;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Count {
    users_created: u64,
}

#[process_manager(state = Count)]
impl UserCounter {
    fn instances() -> Vec<InstanceRule> {
        vec![InstanceRule::single("*")]
    }

    fn on_user_created(state: &mut Count, _event: Event, _ctx: Context) -> HandlerResult {
        state.users_created += INCREMENT;
        Ok(())
    }

    fn on_user_updated(state: &mut Count, _event: Event, _ctx: Context) -> HandlerResult {
        state.users_created += INCREMENT;
        Ok(())
    }
}
