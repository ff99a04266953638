//! End-to-end tests: real plugins built to wasm32-wasip2 (by tests/build.rs),
//! the real host, a real redb file in a temporary directory.
//!
//! - `cascade`: commands, phases, checkpoints, causation and settling;
//! - `restart`: dropping the host mid-cascade and crash recovery;
//! - `exactly_once`: a stateful process manager's state under failures, restarts and kills, against a model;
//! - `bad_input`: every kind of bad input gets a clear error and stores nothing;
//! - `stateful`: per-instance state, refresh, rebuild, redeploys, order fulfilment;
//! - `timers`: instances and durable timers on the test clock, kill -9 while they fire;
//! - `effects`: HTTP effects through the outbox against a real receiver, kill -9 in flight;
//! - `loops`: InfiniteLoopError and the causation depth limit;
//! - `postgres`: the command line and `cascade serve` on PostgreSQL, a standby host taking over;
//! - `guests`: the same process managers in Python and JavaScript;
//! - `read_models`: projections, read-model queries, the cascade delete by query;
//! - `integrity`: checksums, `cascade verify`, bytes flipped in real data files;
//! - `sandbox`: hostile plugins: time and memory limits, traps, refused imports;
//! - `graph`: the flow graph of the registered plugins, on the command line and over HTTP;
//! - `least_privilege`: a third party's plugin sees only what it was granted; widening needs consent;
//! - `fuzz`: property tests over component bytes and JSON command args;
//! - `cli`: the `cascade` command line, driven in-process;
//! - `console`: the browser console in a real headless Chromium against a real `cascade serve`;
//! - `engine`: the engine handle as an embedding program uses it;
//! - `server`: a real `cascade serve` process over HTTP, and the CLI as its client;
//! - `scaffold`: `cascade new` in each language, built and run by its own test.

mod bad_input;
mod cascade;
mod cli;
mod console;
mod effects;
mod engine;
mod exactly_once;
mod fuzz;
mod graph;
mod guests;
mod integrity;
mod least_privilege;
mod loops;
mod postgres;
mod read_models;
mod restart;
mod sandbox;
mod scaffold;
mod server;
mod stateful;
mod stores;
mod timers;
