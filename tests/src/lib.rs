//! Helpers for the end-to-end tests in `tests/all/`: a host over a fresh
//! data directory with real plugins, and the CLI driven in-process.

use std::path::Path;

use cascade::{Command, CommandError, Event, Failure, HandlerFailure, Options, Runtime, Settled};

/// A headless Chromium driven over WebDriver.
pub mod browser;
/// A PostgreSQL database of a test's own.
pub mod postgres;
/// A test HTTP receiver for effects.
pub mod receiver;

/// Paths of the built components: `plugins::WELCOME`, `plugins::FIXTURE_FAILING`, ...
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A runtime over a temporary data directory.
pub struct TestHost {
    /// Kept alive for the runtime's lifetime.
    pub dir: tempfile::TempDir,
    /// The runtime under test.
    pub runtime: Runtime,
}

impl TestHost {
    /// A host with `plugins` added in order.
    pub fn with(plugins: &[&str]) -> TestHost {
        Self::with_options(plugins, Options::default())
    }

    /// A host with `plugins` added in order and the given pipeline options.
    pub fn with_options(plugins: &[&str], options: Options) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime = Runtime::open(dir.path(), options).unwrap();
        for plugin in plugins {
            runtime.add_plugin(Path::new(plugin)).unwrap();
        }
        TestHost { dir, runtime }
    }

    /// Drop the runtime and open the same data directory again.
    pub fn reopen(self, options: Options) -> TestHost {
        let TestHost { dir, runtime } = self;
        drop(runtime);
        let runtime = Runtime::open(dir.path(), options).unwrap();
        TestHost { dir, runtime }
    }

    /// Execute a command and wait until it settled.
    pub fn exec(&mut self, stream_type: &str, stream_id: &str, command: &str, args: &str) -> Settled {
        self.runtime
            .pipeline()
            .execute(Command::new(stream_type, stream_id, command, args))
            .unwrap()
    }

    /// The whole event log.
    pub fn log(&mut self) -> Vec<Event> {
        self.runtime
            .pipeline()
            .store()
            .reader()
            .read_log(1, usize::MAX)
            .unwrap()
    }

    /// Names of the events in the log, in order.
    pub fn log_names(&mut self) -> Vec<String> {
        self.log().into_iter().map(|e| e.name).collect()
    }

    /// The stored state of instance `id` of process manager `name`, as
    /// JSON; `None` when it has none.
    pub fn instance_state(&mut self, name: &str, id: &str) -> Option<serde_json::Value> {
        let record = self.runtime.pipeline().instance_state(name, id).unwrap()?;
        Some(serde_json::from_slice(&record.state?).unwrap())
    }
}

/// Run the CLI in-process against `data`; returns the exit status and stdout,
/// or the error message the binary would print after `cascade: `.
pub fn cli(data: &Path, args: &[&str]) -> (u8, String) {
    use clap::Parser;
    let mut argv = vec!["cascade", "--data", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    let parsed = cascade_cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    match cascade_cli::run(parsed, &mut out) {
        Ok(status) => (status, String::from_utf8(out).unwrap()),
        Err(err) => (2, format!("{err:#}")),
    }
}

/// The one failure of a settled cascade, which must be a handler failure.
pub fn only_handler_failure(settled: &Settled) -> &HandlerFailure {
    match settled.failures.as_slice() {
        [Failure::Handler(failure)] => failure,
        other => panic!("expected one handler failure, got {other:?}"),
    }
}

/// The one failure of a settled cascade, which must be a command error.
pub fn only_command_error(settled: &Settled) -> &CommandError {
    match settled.failures.as_slice() {
        [Failure::Command(err)] => err,
        other => panic!("expected one command error, got {other:?}"),
    }
}

/// The `cascade` binary under test: `$CASCADE_BIN`, else the one beside the
/// test executable's profile directory (`scripts/test.sh` builds it first).
pub fn cascade_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CASCADE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/all-<hash> → target/release/cascade
    let bin = exe.parent().unwrap().parent().unwrap().join("cascade");
    assert!(
        bin.exists(),
        "`{}` is missing: build it with `cargo build --release -p cascade` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Run the real `cascade` binary with `args` on `data`; returns the exit
/// status, stdout and stderr.
pub fn cascade_process(data: &Path, args: &[&str]) -> (i32, String, String) {
    cascade_process_env(data, args, &[])
}

/// [`cascade_process`] with environment variables set (e.g. the test clock).
pub fn cascade_process_env(data: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let output = std::process::Command::new(cascade_bin())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A real `cascade serve` process on an ephemeral 127.0.0.1 port, stopped
/// (SIGKILL) when dropped unless stopped before.
pub struct ServerProcess {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data directory it holds.
    pub data: std::path::PathBuf,
    agent: ureq::Agent,
    token: Option<String>,
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, parsed as JSON when it is JSON (else a JSON string).
    pub body: serde_json::Value,
}

impl ServerProcess {
    /// Start `cascade serve` on `data` with `extra` arguments and wait until
    /// it answers `/healthz` (at most 60 s).
    pub fn start(data: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(data, extra, &[])
    }

    /// [`ServerProcess::start`] with environment variables set (e.g. the
    /// test clock).
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, String)]) -> ServerProcess {
        let _ = std::fs::remove_file(data.join("server.json"));
        let child = std::process::Command::new(cascade_bin())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut server = ServerProcess {
            child: Some(child),
            url: String::new(),
            data: data.to_owned(),
            agent,
            token: None,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start within 60 s"
            );
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited at start with {status}");
            }
            let info = std::fs::read(data.join("server.json"))
                .ok()
                .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok());
            if let Some(address) = info.as_ref().and_then(|i| i["address"].as_str()) {
                server.url = format!("http://{address}");
                if server.get("/healthz").status == 200 {
                    return server;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Send `Authorization: Bearer TOKEN` from now on (none: send nothing).
    pub fn set_token(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_owned);
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        try_answer(request.call()).unwrap()
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send("POST", path, "application/json", body.to_string().into_bytes())
    }

    /// `METHOD path` with `body` of `content_type`.
    pub fn send(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        self.try_send(method, path, content_type, body).unwrap()
    }

    /// [`ServerProcess::send`], with a connection failure as an error.
    pub fn try_send(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Result<Answer, String> {
        let url = format!("{}{path}", self.url);
        let mut request = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            other => panic!("no method {other} in this helper"),
        }
        .header("content-type", content_type);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        try_answer(request.send(&body[..]))
    }

    /// `POST /commands` for `users.create` of `id` (waits until settled).
    pub fn create_user(&self, id: &str) -> Answer {
        self.post(
            "/commands",
            &serde_json::json!({
                "stream_type": "users", "stream_id": id, "command": "create", "args": {"name": id}
            }),
        )
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn try_answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, String> {
    let mut response = result.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Answer { status, body })
}
