//! `cascade serve` against the engine's handle in one process: settled
//! `users.create` commands per second (each settles after `welcome`'s
//! `accounts.open`) with 1, 8 and 64 concurrent clients, p50/p99 latency;
//! the writer pause of 100 hot swaps; the server's RSS after a long run.
//!
//! The server is the real binary (`target/release/cascade serve`) on an
//! ephemeral 127.0.0.1 port; HTTP clients are keep-alive connections
//! driven by tasks on one thread of the benchmark's process. Run with `scripts/bench.sh`, or
//! `cargo bench -p cascade --bench server -- [--commands N] [--rss-users N]`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cascade::{Command, Engine, Options, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn plugins() -> PathBuf {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        plugins.join("welcome.wasm").exists(),
        "build the plugins first: scripts/build-plugins.sh"
    );
    plugins
}

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = Runtime::open(dir.path(), Options::default()).unwrap();
    for name in ["users", "accounts", "welcome", "user-counter"] {
        runtime.add_plugin(&plugins().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// `commands` settled commands from `clients` tasks through the handle.
fn engine_run(clients: usize, commands: usize) -> Figures {
    let dir = data_dir();
    let engine = Engine::start(dir.path(), Options::default(), Duration::from_secs(10)).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let latencies = tokio.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let handle = engine.handle();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for i in 0..commands / clients {
                        let id = format!("u{client}-{i}");
                        let command = Command::new("users", &id, "create", r#"{"name":"x"}"#);
                        let t = Instant::now();
                        let settled = handle.execute(command).await.unwrap();
                        assert!(settled.is_ok());
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    engine.shutdown();
    figures(latencies, elapsed)
}

struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/cascade");
        let child = std::process::Command::new(bin)
            .arg("--data")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("build the binary first: cargo build --release -p cascade");
        // Owned at once, so that a panic below still kills and reaps it.
        let mut server = Server {
            child,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the server did not start");
            if let Ok(text) = std::fs::read(dir.join("server.json"))
                && let Ok(info) = serde_json::from_slice::<serde_json::Value>(&text)
            {
                server.url = format!("http://{}", info["address"].as_str().unwrap());
                if ureq::get(format!("{}/healthz", server.url)).call().is_ok() {
                    return server;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> String {
    agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection to `host`, driven by a task.
async fn connect(host: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// The floor of one HTTP request here: `GET /healthz` (no engine work)
/// `requests` times over one connection.
fn http_floor(requests: usize) -> Figures {
    http_load(1, requests, |host, _, _| {
        let request = hyper::Request::get("/healthz").header("host", host);
        (request.body(Full::default()).unwrap(), "ok")
    })
}

/// `commands` settled commands over HTTP from `clients` connections.
fn http_run(clients: usize, commands: usize) -> Figures {
    http_load(clients, commands / clients, |host, client, i| {
        let body = format!(
            r#"{{"stream_type":"users","stream_id":"u{client}-{i}","command":"create","args":{{"name":"x"}}}}"#
        );
        let request = hyper::Request::post("/commands")
            .header("host", host)
            .header("content-type", "application/json");
        (request.body(Full::new(Bytes::from(body))).unwrap(), r#""failures":[]"#)
    })
}

/// What `http_load` sends: request `i` of connection `client` to `host`,
/// and what its answer must contain.
type MakeRequest = fn(&str, usize, usize) -> (hyper::Request<Full<Bytes>>, &'static str);

/// `per_client` requests from each of `clients` keep-alive connections to
/// a fresh server, each connection driven by a task on one thread: the load
/// generator takes one core at most, where 64 client threads competed with
/// the server for the machine's two.
fn http_load(clients: usize, per_client: usize, make: MakeRequest) -> Figures {
    let dir = data_dir();
    let server = Server::start(dir.path());
    let host = server.url.trim_start_matches("http://").to_owned();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let latencies = tokio.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let host = host.clone();
                tokio::spawn(async move {
                    let mut sender = connect(&host).await;
                    let mut latencies = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        let (request, expected) = make(&host, client, i);
                        let t = Instant::now();
                        sender.ready().await.unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        let answer = response.into_body().collect().await.unwrap().to_bytes();
                        latencies.push(t.elapsed());
                        let answer = String::from_utf8_lossy(&answer);
                        assert!(answer.contains(expected), "{answer}");
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    figures(latencies, started.elapsed())
}

/// 100 deploys alternating two builds of `user-counter` while one client
/// sends commands; the writer pause each swap reports.
fn swaps() -> (Duration, Duration, Duration) {
    let dir = data_dir();
    let server = Server::start(dir.path());
    let builds = [
        std::fs::read(plugins().join("user-counter-by-two.wasm")).unwrap(),
        std::fs::read(plugins().join("user-counter.wasm")).unwrap(),
    ];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = format!("{}/commands", server.url);
    let mut pauses = std::thread::scope(|scope| {
        let (stop, url) = (&stop, &url);
        scope.spawn(move || {
            let agent = ureq::Agent::new_with_defaults();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!(r#"{{"stream_type":"users","stream_id":"s{i}","command":"create"}}"#);
                post(&agent, url, &body);
                i += 1;
            }
        });
        let agent = ureq::Agent::new_with_defaults();
        let pauses: Vec<Duration> = (0..100)
            .map(|i| {
                let answer = agent
                    .put(format!("{}/plugins/user-counter", server.url))
                    .header("content-type", "application/wasm")
                    .send(&builds[i % 2][..])
                    .unwrap()
                    .body_mut()
                    .read_to_string()
                    .unwrap();
                let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                Duration::from_micros(answer["swapMicros"].as_u64().unwrap())
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        pauses
    });
    pauses.sort();
    (pauses[49], pauses[98], pauses[99])
}

/// Server RSS before and after `users` commands (2 events each) sent by 8
/// clients without waiting, then until the log has every event.
fn rss(users: usize) -> (f64, f64) {
    let dir = data_dir();
    let server = Server::start(dir.path());
    let before = server.rss_mib();
    let url = format!("{}/commands?wait=false", server.url);
    std::thread::scope(|scope| {
        for client in 0..8 {
            let url = &url;
            scope.spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                for i in 0..users / 8 {
                    let body = format!(
                        r#"{{"stream_type":"users","stream_id":"r{client}-{i}","command":"create","args":{{"name":"x"}}}}"#
                    );
                    post(&agent, url, &body);
                }
            });
        }
    });
    let agent = ureq::Agent::new_with_defaults();
    let want = 2 * (users / 8) * 8;
    loop {
        let page = agent
            .get(format!("{}/events?from={want}&limit=1", server.url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        if page.contains("\"position\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (before, server.rss_mib())
}

fn main() {
    let mut commands = 4_000;
    let mut rss_users = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--commands" => commands = value().expect("--commands N"),
            "--rss-users" => rss_users = value().expect("--rss-users N"),
            _ => {}
        }
    }
    println!("server: {commands} x users.create settled (welcome -> accounts.open), durable group commit");
    println!("  clients  engine handle cmd/s  p50      p99     | HTTP cmd/s  p50      p99     | HTTP/handle");
    for clients in [1, 8, 64] {
        let engine = engine_run(clients, commands);
        let http = http_run(clients, commands);
        println!(
            "  {clients:>7}  {:>19.0}  {:>7.2?} {:>7.2?} | {:>10.0}  {:>7.2?} {:>7.2?} | {:.2}",
            engine.per_second,
            engine.p50,
            engine.p99,
            http.per_second,
            http.p50,
            http.p99,
            http.per_second / engine.per_second
        );
    }
    let floor = http_floor(commands);
    println!(
        "  HTTP floor, GET /healthz over one connection: p50 {:.2?}, p99 {:.2?}",
        floor.p50, floor.p99
    );
    let (p50, p99, max) = swaps();
    println!("  hot swap pause over 100 deploys under load: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}");
    let (before, after) = rss(rss_users);
    println!(
        "  server RSS: {before:.0} MiB idle, {after:.0} MiB after {} events (cache 64 MiB)",
        2 * rss_users
    );
}
