//! The longest pause allowed in a body that streams: a timer that starts when the reader
//! finds nothing to read and is reset by every frame, so a stream that keeps moving may run
//! for as long as it likes while one that stalls is cut.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// A pause limit for one body.
#[derive(Debug)]
pub(crate) struct Silence {
    limit: Duration,
    since: Option<Pin<Box<Sleep>>>,
}

impl Silence {
    /// Allows pauses up to `limit`.
    pub(crate) fn new(limit: Duration) -> Silence {
        Silence { limit, since: None }
    }

    /// The limit.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// A frame came: the pause is over.
    pub(crate) fn heard(&mut self) {
        self.since = None;
    }

    /// Nothing to read now: true once the pause has lasted the limit (the timer wakes the
    /// reader then).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let timer = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        matches!(timer.as_mut().poll(cx), Poll::Ready(()))
    }
}
