//! The CLI's side of a running server: find it through `server.json` in the
//! data directory and run a command there.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use cascade::ServerInfo;

use crate::api::{CliAnswer, CliRequest};
use crate::args::Action;
use crate::exit::Exit;

/// A server that holds a data directory and answers.
pub struct Server {
    info: ServerInfo,
    agent: ureq::Agent,
}

impl Server {
    /// The server that holds `dir`, if one is recorded there and answers
    /// `/healthz`; a record left by a server that died is ignored.
    pub fn find(dir: &Path) -> Option<Server> {
        let info = ServerInfo::read(dir)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let health = agent.get(format!("http://{}/healthz", info.address)).call().ok()?;
        health.status().is_success().then_some(Server { info, agent })
    }

    /// Run `action` on the server, printing what it printed; returns its
    /// exit status.
    ///
    /// # Errors
    ///
    /// The server could not be reached, refused the token, or the command
    /// failed there ([`Exit`] carries its status and message).
    pub fn run(&self, action: &Action, cwd: &Path, out: &mut dyn Write) -> anyhow::Result<u8> {
        let body = serde_json::to_vec(&CliRequest {
            action: action.clone(),
            cwd: cwd.to_owned(),
        })?;
        let mut request = self
            .agent
            .post(format!("http://{}/cli", self.info.address))
            .header("content-type", "application/json");
        if let Some(file) = &self.info.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read the server's token file `{}`: {e}", file.display()))?;
            let token = token.lines().next().unwrap_or("").trim().to_owned();
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .config()
            .timeout_global(None)
            .build()
            .send(&body[..])
            .map_err(|e| anyhow::anyhow!("cannot reach the server on http://{}: {e}", self.info.address))?;
        let status = response.status();
        let text = response.body_mut().with_config().limit(u64::MAX).read_to_string()?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            anyhow::bail!(
                "the server on http://{} answered {status}: {message}",
                self.info.address
            );
        }
        let answer: CliAnswer = serde_json::from_str(&text)?;
        out.write_all(answer.stdout.as_bytes())?;
        match answer.error {
            Some(message) => Err(Exit {
                status: answer.status,
                message,
            }
            .into()),
            None => Ok(answer.status),
        }
    }
}
