//! The CLI's side of a running server: find it through `server.json` in the
//! data directory and run a command there.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use cascade::{Manifest, ManifestAdditions, PluginRecord, ServerInfo, Swap};

use crate::api::{CliAnswer, CliRequest};
use crate::args::{Action, PluginAction};
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
        // The server may not see the client's files: plugins travel as bytes.
        if let Action::Plugin(add @ PluginAction::Add { .. }) = action {
            let (files, swap) = crate::commands::deploy_swap(add, cwd)?;
            for file in files {
                let record = self.upload(&cwd.join(file), &swap)?;
                writeln!(out, "{}", crate::commands::added_line(&record))?;
            }
            return Ok(0);
        }
        let body = serde_json::to_vec(&CliRequest {
            action: action.clone(),
            cwd: cwd.to_owned(),
        })?;
        let text = self.send("POST", "/cli", "application/json", &body)?;
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

    /// Deploy the component `file` and the manifest beside it
    /// (`PUT /plugins/{name}`, as a form), named as `plugin add` names it.
    fn upload(&self, file: &Path, swap: &Swap) -> anyhow::Result<PluginRecord> {
        let additions = &swap.additions;
        let component = std::fs::read(file).with_context(|| format!("cannot read plugin `{}`", file.display()))?;
        let manifest_file = file.with_extension("toml");
        // No manifest: the defaults, as embedded (not the active version's).
        let manifest = match std::fs::read_to_string(&manifest_file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => anyhow::bail!("cannot read manifest `{}`: {err}", manifest_file.display()),
        };
        let name = Manifest::parse_with_placement(&manifest)
            .ok()
            .and_then(|(_, placement)| placement.name)
            .unwrap_or_else(|| cascade::plugin_name_from_path(file));
        // A boundary that cannot occur in the parts: the component's own hash.
        let boundary = format!("cascade-{}", cascade::content_hash(&component));
        let mut body = Vec::with_capacity(component.len() + manifest.len() + 512);
        let mut parts = vec![
            ("component", "application/wasm", component.clone()),
            ("manifest", "application/toml", manifest.clone().into_bytes()),
        ];
        // Only when there are any: a server older than them takes the rest.
        if *additions != ManifestAdditions::default() {
            parts.push(("additions", "application/json", serde_json::to_vec(additions)?));
        }
        for (part, content_type, bytes) in parts {
            write!(
                body,
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{part}\"; filename=\"{part}\"\r\n\
                 content-type: {content_type}\r\n\r\n"
            )?;
            body.extend_from_slice(&bytes);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n")?;
        let state = serde_json::to_value(swap.state)?;
        let mut path = format!(
            "/plugins/{name}?state={}&by={}",
            state.as_str().unwrap_or("carry"),
            form_urlencoded::byte_serialize(swap.by.as_bytes()).collect::<String>()
        );
        if swap.accept_grants {
            path.push_str("&acceptGrants=true");
        }
        let text = self.send(
            "PUT",
            &path,
            &format!("multipart/form-data; boundary={boundary}"),
            &body,
        )?;
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        Ok(serde_json::from_value(answer["plugin"].clone())?)
    }

    /// `METHOD path` with the token, waiting as long as the server works;
    /// the body of a success, an error naming the server's message else.
    fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<String> {
        let url = format!("http://{}{path}", self.info.address);
        let mut request = match method {
            "PUT" => self.agent.put(url),
            _ => self.agent.post(url),
        }
        .header("content-type", content_type);
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
            .send(body)
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
        Ok(text)
    }
}
