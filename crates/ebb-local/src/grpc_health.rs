//! The gRPC health-checking protocol's `Check` call (`grpc.health.v1.Health/Check`), as
//! `ebb demo-model` answers it: enough gRPC to check that a proxy carries gRPC end to end
//! (HTTP/2 to the replica, `TE: trailers` passed on, the status in the trailers).
//!
//! A gRPC message is framed as one compression byte, a 4-byte big-endian length, then the
//! protobuf bytes; the call's outcome travels in the `grpc-status` trailer
//! (<https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md>).

use bytes::Bytes;
use ebb_proxy::body::Frames;
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, TE};
use hyper::{Request, Response, StatusCode, Version};
use std::collections::VecDeque;

/// The call's path.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse { status: SERVING }`: field 1, varint 1.
const SERVING: [u8; 2] = [0x08, 0x01];
/// `HealthCheckResponse { status: NOT_SERVING }`: field 1, varint 2.
const NOT_SERVING: [u8; 2] = [0x08, 0x02];

/// Whether a `Check` answer says SERVING: `grpc-status: 0` in the trailers (or, for an
/// answer with no message, the headers) and one message whose `status` field (1) is 1.
pub fn serving(headers: &HeaderMap, body: &[u8], trailers: Option<&HeaderMap>) -> bool {
    let status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"));
    if status.is_none_or(|s| s != "0") {
        return false;
    }
    let Some((&0, rest)) = body.split_first() else {
        return false;
    };
    let Some((len, message)) = rest.split_first_chunk::<4>() else {
        return false;
    };
    let len = u32::from_be_bytes(*len) as usize;
    message.len() == len && message == SERVING
}

/// One gRPC message's frame.
pub fn framed(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// Answers a `Check` call with `grpc-status: 0`: SERVING when `serving`, else NOT_SERVING (a
/// server still loading its weights). gRPC runs only over HTTP/2, and
/// its clients send `TE: trailers` (the protocol requires it): a call that arrives over
/// HTTP/1.1, or without it, is refused with 400 and the reason, so a proxy that downgrades
/// the call or drops the header is caught.
pub fn check<B>(req: &Request<B>, serving: bool) -> Response<Frames> {
    if req.version() != Version::HTTP_2 {
        return refused("gRPC needs HTTP/2; this call came over HTTP/1.1");
    }
    let trailers = req
        .headers()
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !trailers {
        return refused("a gRPC call must carry te: trailers");
    }
    let mut status = HeaderMap::new();
    status.insert("grpc-status", HeaderValue::from_static("0"));
    let message = if serving { SERVING } else { NOT_SERVING };
    let frames = VecDeque::from([Frame::data(framed(&message)), Frame::trailers(status)]);
    let mut r = Response::new(Frames(frames));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

fn refused(why: &'static str) -> Response<Frames> {
    let mut r = Response::new(Frames(VecDeque::from([Frame::data(Bytes::from(why))])));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn call(version: Version, te: Option<&'static str>) -> Request<()> {
        let mut b = Request::post(CHECK_PATH).version(version);
        if let Some(te) = te {
            b = b.header(TE, te);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn serving_comes_framed_with_the_status_in_the_trailers() {
        let r = check(&call(Version::HTTP_2, Some("trailers")), true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        let body = r.into_body().collect().await.unwrap();
        assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&body.to_bytes()[..], &[0, 0, 0, 0, 2, 0x08, 0x01]);
        let loading = check(&call(Version::HTTP_2, Some("trailers")), false);
        let body = loading.into_body().collect().await.unwrap();
        assert_eq!(
            &body.to_bytes()[..],
            &[0, 0, 0, 0, 2, 0x08, 0x02],
            "NOT_SERVING"
        );
    }

    #[tokio::test]
    async fn the_probe_reads_serving_and_nothing_else() {
        let r = check(&call(Version::HTTP_2, Some("trailers")), true);
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned();
        let bytes = body.to_bytes();
        assert!(serving(&headers, &bytes, trailers.as_ref()));
        // NOT_SERVING (2), a failed status, no status, a cut message: not ready.
        assert!(!serving(
            &headers,
            &framed(&[0x08, 0x02]),
            trailers.as_ref()
        ));
        let mut failed = HeaderMap::new();
        failed.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(!serving(&headers, &bytes, Some(&failed)));
        assert!(!serving(&headers, &bytes, None));
        assert!(!serving(&headers, &bytes[..5], trailers.as_ref()));
    }

    #[test]
    fn a_call_over_http1_or_without_te_trailers_is_refused() {
        assert_eq!(
            check(&call(Version::HTTP_11, Some("trailers")), true).status(),
            400
        );
        assert_eq!(check(&call(Version::HTTP_2, None), true).status(), 400);
    }
}
