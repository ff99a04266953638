//! A test HTTP receiver on an ephemeral 127.0.0.1 port: it records every
//! request (method, path, `Idempotency-Key`, body) and answers as told:
//! a status, after a delay, failing the first N requests with 500, or
//! never answering (hanging) for paths under `/hang`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// `POST`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Its `Idempotency-Key` header, if any.
    pub key: Option<String>,
    /// The body as text.
    pub body: String,
}

/// How the receiver answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The status of an answer (after `fail_first` failures).
    pub status: u16,
    /// The body of an answer.
    pub body: String,
    /// Answer this many requests with 500 first.
    pub fail_first: usize,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            body: r#"{"received":true}"#.into(),
            fail_first: 0,
            delay: Duration::ZERO,
        }
    }
}

/// The receiver; it runs until the test process ends.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Receiver {
    /// Start one answering 200 at once.
    pub fn start() -> Receiver {
        Receiver::start_with(Behaviour::default())
    }

    /// Start one answering as `behaviour` says.
    pub fn start_with(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver {
            url,
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let shared = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || shared.serve(stream));
            }
        });
        receiver
    }

    /// Change how it answers from now on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Wait up to `timeout` until `done` holds for the requests so far.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let until = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) || Instant::now() > until {
                return received;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let (mut length, mut key) = (0usize, None);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "idempotency-key" => key = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let (status, answer, delay) = {
                let mut received = self.received.lock().unwrap();
                received.push(Received {
                    method,
                    path: path.clone(),
                    key,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let mut behaviour = self.behaviour.lock().unwrap();
                if behaviour.fail_first > 0 {
                    behaviour.fail_first -= 1;
                    (500, "failing on purpose".to_owned(), behaviour.delay)
                } else {
                    (behaviour.status, behaviour.body.clone(), behaviour.delay)
                }
            };
            if path.starts_with("/hang") {
                // Hold the connection open, never answering.
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            std::thread::sleep(delay);
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }
}
