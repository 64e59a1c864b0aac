//! A minimum rate for request bodies (`MinRate`): a client that sends its
//! body slower than that is cut off with 408 (`request-body-too-slow`), and
//! its HTTP/1.1 connection is closed, instead of holding a connection and a
//! handler for as long as the route's time limit allows (an hour for an
//! attachment upload).
//!
//! The rate is checked over windows of the time the server spends *waiting*
//! for the body: in each `window` of waiting, at least
//! `bytes_per_second * window` bytes must arrive. The first window is the
//! grace period. Time the server spends with what it already has (writing
//! an upload to the object store, which stops it reading) is not counted,
//! so a slow store never makes a fast client look slow. A 1 GiB upload is
//! not affected at any rate at which it could finish within
//! `file-upload-timeout-minutes`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::time::{Instant, Sleep};

use crate::config::MinRate;
use crate::problem::ApiError;

/// The error the body gives its reader once it is too slow.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes per second")]
pub struct TooSlow(pub u64);

/// Middleware: wraps the request body in [`MinRateBody`]; when the body
/// turned out too slow, whatever the handler answered becomes a 408.
pub async fn enforce(rate: MinRate, request: Request, next: Next) -> Response {
    let slow = Arc::new(AtomicBool::new(false));
    let http1 = request.version() < Version::HTTP_2;
    let request = request.map(|body| Body::new(MinRateBody::new(body, rate, Arc::clone(&slow))));
    let response = next.run(request).await;
    if !slow.load(Ordering::Acquire) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-body-too-slow",
        "Request body too slow",
        TooSlow(rate.bytes_per_second).to_string(),
    )
    .into_response();
    if http1 {
        // The rest of the body is not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The rate bookkeeping of one body, fed the time (pure: [`MinRateBody`]
/// drives it with the clock and a timer).
#[derive(Debug, Clone)]
pub struct RateWindow {
    rate: MinRate,
    /// Bytes received and time spent waiting in the current window.
    window_bytes: u64,
    window_waited: Duration,
    /// Since when the reader has been waiting for the next piece.
    waiting_since: Option<Instant>,
}

impl RateWindow {
    pub fn new(rate: MinRate) -> RateWindow {
        RateWindow {
            rate,
            window_bytes: 0,
            window_waited: Duration::ZERO,
            waiting_since: None,
        }
    }

    /// The bytes a whole window must bring.
    fn needed(&self) -> u64 {
        let bytes = u128::from(self.rate.bytes_per_second) * self.rate.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// When a window is complete: Err if it brought too little, else a new
    /// window starts.
    fn close_window(&mut self, now: Instant) -> Result<(), TooSlow> {
        let waiting = self.waiting_since.map_or(Duration::ZERO, |s| now - s);
        if self.window_waited + waiting < self.rate.window {
            return Ok(());
        }
        if self.window_bytes < self.needed() {
            return Err(TooSlow(self.rate.bytes_per_second));
        }
        self.window_bytes = 0;
        self.window_waited = Duration::ZERO;
        if self.waiting_since.is_some() {
            self.waiting_since = Some(now);
        }
        Ok(())
    }

    /// The reader got `bytes` at `now`.
    pub fn received(&mut self, bytes: u64, now: Instant) -> Result<(), TooSlow> {
        self.ended(now);
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        self.close_window(now)
    }

    /// The reader is waiting at `now` (again or still): Ok with when to look
    /// again if it is still waiting then.
    pub fn waiting(&mut self, now: Instant) -> Result<Instant, TooSlow> {
        let since = *self.waiting_since.get_or_insert(now);
        self.close_window(now)?;
        let since = self.waiting_since.unwrap_or(since);
        Ok(since + self.rate.window.saturating_sub(self.window_waited))
    }

    /// The reader stopped waiting (the body ended or failed).
    pub fn ended(&mut self, now: Instant) {
        if let Some(since) = self.waiting_since.take() {
            self.window_waited += now - since;
        }
    }
}

/// A request body that fails when it arrives slower than its [`MinRate`].
pub struct MinRateBody {
    inner: Body,
    window: RateWindow,
    timer: Option<Pin<Box<Sleep>>>,
    slow: Arc<AtomicBool>,
}

impl MinRateBody {
    pub fn new(inner: Body, rate: MinRate, slow: Arc<AtomicBool>) -> MinRateBody {
        MinRateBody {
            inner,
            window: RateWindow::new(rate),
            timer: None,
            slow,
        }
    }

    fn too_slow(&self, e: TooSlow) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.slow.store(true, Ordering::Release);
        Poll::Ready(Some(Err(e.into())))
    }
}

impl http_body::Body for MinRateBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if this.slow.load(Ordering::Acquire) {
            return this.too_slow(TooSlow(this.window.rate.bytes_per_second));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let bytes = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if let Err(e) = this.window.received(bytes, Instant::now()) {
                        return this.too_slow(e);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(other) => {
                    this.window.ended(Instant::now());
                    return Poll::Ready(other.map(|r| r.map_err(Into::into)));
                }
                Poll::Pending => {
                    let deadline = match this.window.waiting(Instant::now()) {
                        Ok(deadline) => deadline,
                        Err(e) => return this.too_slow(e),
                    };
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The window ended just now: look again.
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WINDOW_MS: u64 = 1000;

    fn rate(bytes_per_second: u64) -> MinRate {
        MinRate {
            bytes_per_second,
            window: Duration::from_millis(WINDOW_MS),
        }
    }

    /// Feeds a body's pieces to a [`RateWindow`] as `MinRateBody` does: each
    /// piece comes after `gap` ms of waiting (during which the timer makes
    /// the reader look at every deadline it is given) and after `busy` ms in
    /// which the reader is not reading. Returns how many pieces were taken
    /// and the waiting time (ms) when it failed, if it did.
    fn feed(rate: MinRate, pieces: &[(u64, u64, u64)]) -> (usize, Option<u64>) {
        let start = Instant::now();
        let mut now = start;
        let mut window = RateWindow::new(rate);
        let mut waited_ms = 0;
        for (i, &(gap, bytes, busy)) in pieces.iter().enumerate() {
            let arrives = now + Duration::from_millis(gap);
            let wait_started = now;
            let mut deadline = match window.waiting(now) {
                Ok(d) => d,
                Err(_) => return (i, Some(waited_ms)),
            };
            while deadline <= arrives {
                match window.waiting(deadline) {
                    Ok(d) => deadline = d,
                    Err(_) => {
                        let ms = (deadline - wait_started).as_millis() as u64;
                        return (i, Some(waited_ms + ms));
                    }
                }
            }
            now = arrives;
            waited_ms += gap;
            if window.received(bytes, now).is_err() {
                return (i + 1, Some(waited_ms));
            }
            now += Duration::from_millis(busy);
        }
        (pieces.len(), None)
    }

    #[test]
    fn a_stalled_body_fails_after_exactly_one_window_of_waiting() {
        let (taken, failed) = feed(rate(1000), &[(0, 10, 0), (60_000, 10, 0)]);
        assert_eq!(taken, 1);
        assert_eq!(failed, Some(WINDOW_MS));
    }

    #[test]
    fn a_fast_body_with_a_slow_reader_passes() {
        // 100 bytes a piece, no waiting, the reader busy 5 s after each.
        let pieces = vec![(0, 100, 5000); 20];
        assert_eq!(feed(rate(1000), &pieces), (20, None));
    }

    proptest! {
        /// A client that never waits longer than half a window between
        /// pieces, each bringing at least twice the rate's worth of that
        /// longest gap, is never cut off, whatever the reader's pauses.
        #[test]
        fn fast_enough_is_never_cut_off(
            max_gap in 1u64..=WINDOW_MS / 2,
            rate_bps in 1u64..100_000,
            pieces in proptest::collection::vec((0u64..=1000, 0u64..=1000, 0u64..3000), 1..80),
        ) {
            let least = 2 * rate_bps * max_gap / 1000 + 1;
            let pieces: Vec<_> = pieces
                .into_iter()
                .map(|(gap, extra, busy)| (gap % (max_gap + 1), least + extra, busy))
                .collect();
            prop_assert_eq!(feed(rate(rate_bps), &pieces), (pieces.len(), None));
        }

        /// A client sending under a third of the rate (for the time it makes
        /// the reader wait) is cut off, and never before one whole window of
        /// waiting (the grace period).
        #[test]
        fn too_slow_is_cut_off_after_the_grace(
            rate_bps in 100u64..100_000,
            pieces in proptest::collection::vec((1u64..=WINDOW_MS, 0u64..3000), 1..200),
        ) {
            let pieces: Vec<_> = pieces
                .into_iter()
                .map(|(gap, busy)| (gap, rate_bps * gap / 3000, busy))
                .collect();
            let total_wait: u64 = pieces.iter().map(|p| p.0).sum();
            let (_, failed) = feed(rate(rate_bps), &pieces);
            match failed {
                Some(waited) => prop_assert!(waited >= WINDOW_MS, "cut off after {waited} ms"),
                None => prop_assert!(total_wait < WINDOW_MS, "{total_wait} ms of waiting passed"),
            }
        }
    }
}
