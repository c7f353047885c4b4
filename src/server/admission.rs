//! Admission: how much work the server takes on. At most [`ServerOptions::concurrency`]
//! transcriptions run at once and [`ServerOptions::queue`] more requests wait; past that a
//! request gets 503 with a `Retry-After` estimated from recent jobs, so a busy server sheds
//! load instead of letting uploads pile up in memory.
//!
//! [`ServerOptions::concurrency`]: super::ServerOptions::concurrency
//! [`ServerOptions::queue`]: super::ServerOptions::queue

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiError, AppState};

impl AppState {
    /// Transcriptions running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Requests admitted but not running (uploading or waiting for a slot).
    pub fn queued(&self) -> usize {
        self.admitted
            .load(Ordering::SeqCst)
            .saturating_sub(self.active())
    }

    fn capacity(&self) -> usize {
        self.options.concurrency.max(1) + self.options.queue
    }

    /// Reserves a place for a request, or `None` when running and waiting requests are at the
    /// limit.
    pub(super) fn admit(&self) -> Option<Admission> {
        let capacity = self.capacity();
        self.admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()?;
        Some(Admission {
            admitted: self.admitted.clone(),
        })
    }

    /// The 503 for a request [`AppState::admit`] turned away.
    pub(super) fn busy(&self) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "The server is busy ({} transcriptions running, {} waiting); retry later.",
                self.active(),
                self.queued()
            ),
            kind: "server_error",
            param: None,
            code: Some("server_busy"),
            retry_after: Some(self.retry_after()),
        }
    }

    fn retry_after(&self) -> u64 {
        let mean = self.mean_job_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let waiting = self.queued() as f64 + 1.0;
        ((mean * waiting / self.options.concurrency.max(1) as f64).ceil() as u64).clamp(1, 600)
    }

    /// Waits for a transcription slot. Dropping this future (client gone) leaves the queue.
    pub(super) async fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))
    }

    /// Counts a transcription as running until the guard is dropped.
    pub(super) fn running(&self) -> Running {
        self.active.fetch_add(1, Ordering::SeqCst);
        Running(self.active.clone())
    }

    /// Folds a finished job's duration into the moving average `Retry-After` is based on.
    pub(super) fn record_job_ms(&self, ms: u64) {
        let old = self.mean_job_ms.load(Ordering::Relaxed);
        self.mean_job_ms
            .store((old * 3 + ms) / 4, Ordering::Relaxed);
    }
}

/// A place among the admitted requests, given back when dropped.
pub(super) struct Admission {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a running job, given back when dropped.
pub(super) struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
