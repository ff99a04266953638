//! Guest stdout and stderr: captured per call into a capped buffer, then
//! handed to the host's log tagged with the plugin (never to the host's own
//! stdio). Output past the cap is counted and dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of stdout, and of stderr, kept per call.
pub(crate) const CAP: usize = 64 << 10;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

/// One guest output stream (stdout or stderr).
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<(Mutex<Buffer>, AtomicBool)>);

impl Output {
    /// The text written since the last take, and how many bytes were dropped.
    pub(crate) fn take(&self) -> (String, usize) {
        // Most calls print nothing: skip the lock then.
        if !self.0.1.swap(false, Ordering::Acquire) {
            return (String::new(), 0);
        }
        let mut buffer = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&buffer.bytes).into_owned();
        buffer.bytes.clear();
        (text, std::mem::take(&mut buffer.dropped))
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Output {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut buffer = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        self.0.1.store(true, Ordering::Release);
        let room = CAP.saturating_sub(buffer.bytes.len());
        let kept = data.len().min(room);
        buffer.bytes.extend_from_slice(&data[..kept]);
        buffer.dropped += data.len() - kept;
        // Accept everything: a chatty guest loses output, it does not fail.
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
