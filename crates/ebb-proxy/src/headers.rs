//! What a proxy must not pass on from one connection to the next, and which requests it may
//! send twice.

use hyper::header::{HeaderMap, HeaderName};
use hyper::Method;

/// Headers that belong to one connection, not to the request (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, those the `Connection` header names included.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than nine removals.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// [`strip_hop_by_hop`], but a `TE: trailers` stays: HTTP/2 allows it as the one TE value
/// (RFC 9113 section 8.2.2), and gRPC servers require it to know the client reads trailers.
pub fn strip_hop_by_hop_keeping_trailers(headers: &mut HeaderMap) {
    let trailers = headers
        .get(hyper::header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(
            hyper::header::TE,
            hyper::header::HeaderValue::from_static("trailers"),
        );
    }
}

/// Safe to send twice (RFC 9110 section 9.2.2).
pub fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn hop_by_hop_headers_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-trace"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn te_trailers_alone_may_cross_to_http2() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("connection", HeaderValue::from_static("te"));
        strip_hop_by_hop_keeping_trailers(&mut h);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.len(), 1);
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop_keeping_trailers(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn only_idempotent_methods_are_retried_after_sending() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
    }
}
