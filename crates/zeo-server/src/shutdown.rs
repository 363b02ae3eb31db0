//! Graceful stop through a broadcast, as in mini-redis: the listener stops
//! accepting and sends one message; every connection task holds a [`Shutdown`] and
//! winds down when it fires — right away when idle, after its voted transaction
//! finished or aborted otherwise.

use tokio::sync::broadcast;

/// Listens for the server's shutdown signal.
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>) -> Self {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    /// Whether the signal has been received.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Wait for the signal (returns at once if it was already received).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // Lagged or closed both mean the server is going away.
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}
