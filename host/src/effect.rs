//! Effects on the outside world: the HTTP requests a handler call asks for,
//! the grants that allow them, the key that makes them idempotent, and the
//! event an effect's outcome becomes.
//!
//! A request is stored in the outbox with the call's commit and performed
//! after it, off the writer (see the engine's outbox); its outcome is
//! appended as `EffectCompleted` on `cascade:effects/<plugin>` and
//! delivered to the requesting plugin (and instance) only.

use serde::{Deserialize, Serialize};

/// The stream id of `plugin`'s effect outcomes is this prefix and its name.
pub const EFFECT_STREAM_PREFIX: &str = "effects/";
/// The name of the event an effect's outcome becomes.
pub const EFFECT_COMPLETED: &str = "EffectCompleted";
/// Bytes of an effect's name.
pub const MAX_EFFECT_NAME_BYTES: usize = 128;
/// Bytes of a request's body.
pub const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;
/// Requests one handler call may make.
pub const MAX_EFFECTS_PER_CALL: usize = 100;
/// The header that carries an effect's key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Response headers kept in an outcome.
pub const KEPT_RESPONSE_HEADERS: [&str; 4] = ["content-type", "location", "etag", "retry-after"];
/// Request headers only the host sets.
const HOST_HEADERS: [&str; 5] = [
    "idempotency-key",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
];
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// An HTTP request a handler asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A request of one handler call, by the name the plugin gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectRequest {
    /// The plugin's name for it, handed back with its outcome.
    pub name: String,
    /// The request.
    pub request: HttpRequest,
}

/// The key of request number `index` of the call of `handler` (its export
/// name) of `plugin` for `event`: `<plugin>-<position>-<tag>-<handler>-<index>`,
/// the same on every attempt and after every restart, and sent as the
/// `Idempotency-Key` header. The tag (8 hex digits of the event's cascade and
/// time) keeps a key from naming another event at the same position: a data
/// directory restored from a backup, or another one calling the same receiver.
pub fn effect_key(plugin: &str, event: &crate::event::Event, handler: &str, index: usize) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\0{}", event.correlation_id, event.created_at));
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{plugin}-{}-{tag}-{handler}-{index}", event.position)
}

/// The stream id of `plugin`'s effect outcomes.
pub fn effect_stream_id(plugin: &str) -> String {
    format!("{EFFECT_STREAM_PREFIX}{plugin}")
}

/// `url` as messages and listings show it: without its query and fragment,
/// where a secret (an API key) may be.
pub fn shown_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Where a plugin may send requests: a scheme, a host, a port and a path
/// prefix, written as a URL (`https://api.example.com/v1`). A URL is within
/// it when scheme, host and port are equal and its path starts with the
/// prefix at a segment boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Origin {
    /// Parse a grant or a request's URL.
    ///
    /// # Errors
    ///
    /// Not an absolute `http`/`https` URL with a host; a user or password in it.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            _ => return Err(format!("`{text}` must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| format!("`{text}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{text}` holds a user or password; send credentials in a header from a secret"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Origin {
            scheme,
            host,
            port,
            path: uri.path().to_owned(),
        })
    }

    /// Whether the URL `url` is within this grant.
    pub fn permits(&self, url: &Origin) -> bool {
        let prefix = self.path.trim_end_matches('/');
        self.scheme == url.scheme
            && self.host == url.host
            && self.port == url.port
            && url
                .path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The grant that would allow `self` (scheme, host and port).
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Why a call into the host (an effect, a read-model write) is refused, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed: the call may go on (the guest got the reason).
    Malformed(String),
    /// Outside the plugin's grants, naming the grant to add: the call fails.
    NotGranted(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(m) | Refusal::NotGranted(m) => f.write_str(m),
        }
    }
}

/// Check a request a plugin made as effect `name` against its `grants`
/// (checked when the manifest was read).
pub fn check_request(plugin: &str, name: &str, request: &HttpRequest, grants: &[String]) -> Result<(), Refusal> {
    let url = check_name_and_url(name, request).map_err(Refusal::Malformed)?;
    if !grants
        .iter()
        .filter_map(|g| Origin::parse(g).ok())
        .any(|g| g.permits(&url))
    {
        let origin = url.origin();
        return Err(Refusal::NotGranted(format!(
            "`{plugin}` may not call {}: add `http = [\"{origin}\"]` to [capabilities] in its manifest, \
             or deploy it with `--grant http={origin}`",
            shown_url(&request.url)
        )));
    }
    check_body_and_headers(name, request).map_err(Refusal::Malformed)
}

/// The effect's name, the method and the URL, parsed.
fn check_name_and_url(name: &str, request: &HttpRequest) -> Result<Origin, String> {
    if name.is_empty() || name.len() > MAX_EFFECT_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(format!(
            "effect name `{}` must be 1 to {MAX_EFFECT_NAME_BYTES} bytes without control characters",
            crate::text::one_line(name)
        ));
    }
    if !METHODS.contains(&request.method.as_str()) {
        return Err(format!(
            "effect `{name}`: method `{}` is not one of {}",
            crate::text::one_line(&request.method),
            METHODS.join(", ")
        ));
    }
    let url = Origin::parse(&request.url).map_err(|e| format!("effect `{name}`: {e}"))?;
    // A server resolves `..` after the grant was checked: refuse it before.
    if url.path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    }) {
        return Err(format!(
            "effect `{name}`: a URL with `.` or `..` segments is refused ({})",
            shown_url(&request.url)
        ));
    }
    Ok(url)
}

fn check_body_and_headers(name: &str, request: &HttpRequest) -> Result<(), String> {
    if request.body.len() > MAX_REQUEST_BODY_BYTES {
        return Err(format!(
            "effect `{name}`: body of {} bytes exceeds the limit of {MAX_REQUEST_BODY_BYTES}",
            request.body.len()
        ));
    }
    for (header, value) in &request.headers {
        if HOST_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(format!("effect `{name}`: header `{header}` is set by the host"));
        }
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "effect `{name}`: header `{}` is not a valid HTTP header",
                crate::text::one_line(header)
            ));
        }
    }
    Ok(())
}

/// How an effect ended, as the outbox's workers report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attempted {
    /// The endpoint answered with a final status (any but 408, 429, 5xx).
    Answered {
        /// The status code.
        status: u16,
        /// The kept headers ([`KEPT_RESPONSE_HEADERS`]), lower-case names.
        headers: Vec<(String, String)>,
        /// The body, up to the plugin's cap, as text (invalid UTF-8 replaced).
        body: String,
    },
    /// Every attempt failed (no answer in time, no connection, 408, 429,
    /// 5xx); the last failure.
    Failed(String),
}

/// An effect's outcome for the writer to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectOutcome {
    /// The effect's key.
    pub key: String,
    /// How it ended.
    pub attempted: Attempted,
    /// Attempts made.
    pub attempts: u32,
    /// Milliseconds from its request's commit to this outcome.
    pub latency_ms: u64,
}

/// The payload of an [`EFFECT_COMPLETED`] event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectCompleted {
    /// The plugin's name for the effect.
    pub effect: String,
    /// Its key (the `Idempotency-Key` it was sent with).
    pub key: String,
    /// The instance that requested it, for a per-instance process manager.
    pub instance: Option<String>,
    /// Whether the endpoint answered with a 2xx status.
    pub ok: bool,
    /// The status it answered with; none when it never answered.
    pub status: Option<u16>,
    /// The kept response headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The response body up to the cap, as text.
    pub body: String,
    /// Why it failed, when it never answered (or an operator skipped it).
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_grant_allows_its_origin_and_path_prefix_only() {
        let grants = vec!["http://127.0.0.1:9000/hooks".to_owned()];
        let ok = |url: &str| check_request("n", "e", &request(url), &grants).map_err(|r| r.to_string());
        assert!(ok("http://127.0.0.1:9000/hooks").is_ok());
        assert!(ok("http://127.0.0.1:9000/hooks/users?x=1").is_ok());
        for refused in [
            "http://127.0.0.1:9000/hooksmith",
            "http://127.0.0.1:9001/hooks",
            "https://127.0.0.1:9000/hooks",
            "http://localhost:9000/hooks",
        ] {
            let err = ok(refused).unwrap_err();
            assert!(err.contains("may not call") && err.contains("--grant http="), "{err}");
        }
        let any_path = vec!["https://api.example.com".to_owned()];
        assert!(check_request("n", "e", &request("https://API.example.com:443/v1/x"), &any_path).is_ok());
    }

    #[test]
    fn dot_segments_cannot_climb_out_of_a_grant_and_queries_are_never_shown() {
        let grants = vec!["https://h/cascade".to_owned()];
        for climbing in [
            "https://h/cascade/../admin",
            "https://h/cascade/%2E%2e/admin",
            "https://h/cascade/./x",
        ] {
            let err = check_request("n", "e", &request(climbing), &grants)
                .unwrap_err()
                .to_string();
            assert!(err.contains("`..` segments"), "{err}");
        }
        let err = check_request("n", "e", &request("https://other/x?api_key=s3cr3t"), &grants)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn malformed_requests_are_refused_with_what_was_wrong() {
        let grants = vec!["http://h".to_owned()];
        let mut r = request("http://h/x");
        r.method = "BREW".into();
        assert!(
            check_request("n", "e", &r, &grants)
                .unwrap_err()
                .to_string()
                .contains("method `BREW`")
        );
        let mut r = request("http://h/x");
        r.headers.push(("Idempotency-Key".into(), "mine".into()));
        assert!(
            check_request("n", "e", &r, &grants)
                .unwrap_err()
                .to_string()
                .contains("set by the host")
        );
        assert!(
            check_request("n", "", &request("http://h/x"), &grants)
                .unwrap_err()
                .to_string()
                .contains("effect name")
        );
        assert!(
            check_request("n", "e", &request("ftp://h/x"), &grants)
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(
            check_request("n", "e", &request("http://u:p@h/x"), &grants)
                .unwrap_err()
                .to_string()
                .contains("password")
        );
    }
}
