//! The demo servers' request bodies (`ebb demo-model`, `ebb demo-llm`), read within bounds by
//! the proxy's own reader ([`ebb_proxy::body::read_request`]): a declared length past the
//! bound is answered 413 before a byte is read, a streamed body as soon as it passes it, and
//! a client that stops sending is not waited on for ever.

use bytes::Bytes;
use ebb_proxy::body::{read_request, BodyLimits, ReadBody, Refused};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::time::Duration;

/// The largest request body read: an iris batch or a chat prompt is a few KiB.
pub const MAX_BODY: u64 = 1 << 20;

/// The longest wait for a client's next chunk.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Held whole up to the bound (`retry_bytes` = `max_bytes`: never streamed).
const LIMITS: BodyLimits = BodyLimits {
    max_bytes: MAX_BODY,
    retry_bytes: MAX_BODY,
    read_timeout: READ_TIMEOUT,
};

/// The request's whole body, or the status and message to answer with.
pub async fn read(req: Request<Incoming>) -> Result<Bytes, (StatusCode, String)> {
    let declared = hyper::body::Body::size_hint(req.body()).exact();
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
    };
    match read_request(req.into_body(), declared, LIMITS).await {
        Ok(ReadBody::Whole(bytes)) => Ok(bytes),
        // Not reached with `retry_bytes` at the bound: a body that long is refused first.
        Ok(ReadBody::Streamed(_)) | Err(Refused::TooLarge) => Err(too_large()),
        Err(Refused::TimedOut) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no part of the body came within {}s",
                READ_TIMEOUT.as_secs()
            ),
        )),
        Err(Refused::Broken) => Err((
            StatusCode::BAD_REQUEST,
            "the body broke off before its end".into(),
        )),
    }
}
