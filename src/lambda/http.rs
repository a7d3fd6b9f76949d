//! Function URL and API Gateway events as HTTP requests for the inbox's router, and the
//! router's answers as the JSON those services expect back.
//!
//! The event shapes are parsed by `lambda_http` (the maintained mapping of API Gateway v1
//! and v2 payloads, the Function URL's being v2); the answer is written here because its
//! shape depends on where the event came from and `lambda_http` keeps that private.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response};
use base64::Engine;
use bytes::Bytes;
use lambda_http::request::RequestContext;
use serde_json::{json, Map, Value};

/// The largest answer a Function URL or API Gateway passes on (a synchronous invocation's
/// response payload, 6 MB, holds the base64 text).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 / 4 * 3 - 4096;

/// Which service sent the event, which decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Function URL or an API Gateway HTTP API (payload format 2.0).
    HttpApi,
    /// An API Gateway REST API (payload format 1.0).
    RestApi,
}

/// An HTTP event that cannot be read as a request.
#[derive(Debug, thiserror::Error)]
#[error("not a Function URL or API Gateway event: {0}")]
pub struct NotHttp(String);

/// The request an HTTP event carries, with the caller's address (the event's
/// `requestContext` source IP) as the peer the rate limits count.
pub fn request_of(event: &str) -> Result<(Origin, Request<Body>), NotHttp> {
    // `lambda_http` unwraps its parse of the request's URL (host header and path): an event
    // it cannot make a URL of is refused here rather than unwinding through the runtime.
    let parsed = std::panic::catch_unwind(|| lambda_http::request::from_str(event))
        .map_err(|_| NotHttp("its host and path make no URL".into()))?;
    let request = parsed.map_err(|e| NotHttp(e.to_string()))?;
    let (origin, source_ip) = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            (Origin::HttpApi, context.http.source_ip.clone())
        }
        Some(RequestContext::ApiGatewayV1(context)) => {
            (Origin::RestApi, context.identity.source_ip.clone())
        }
        _ => return Err(NotHttp("no API Gateway request context".into())),
    };
    let (parts, body) = request.into_parts();
    let mut request = Request::from_parts(parts, Body::from(body.to_vec()));
    if let Some(ip) = source_ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    Ok((origin, request))
}

/// The router's answer as the event's service expects it, its body read whole (at most
/// [`MAX_RESPONSE_BYTES`], else a 502 saying so).
pub async fn answer_of(origin: Origin, response: Response<Body>) -> Value {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
        Ok(bytes) => encode(origin, parts.status.as_u16(), &parts.headers, &bytes),
        Err(e) => {
            tracing::error!("lambda: the answer could not be read: {e}");
            let text = Bytes::from_static(b"the answer is too large for a function");
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            encode(origin, 502, &headers, &text)
        }
    }
}

/// A Function URL decodes a base64 body back to the exact bytes, so every body goes out in
/// base64. A REST API decodes base64 only for its configured binary media types: text goes
/// out as text there, and only what is not UTF-8 in base64.
fn encode(origin: Origin, status: u16, headers: &HeaderMap, body: &[u8]) -> Value {
    let (body, base64) = match (origin, std::str::from_utf8(body)) {
        (_, _) if body.is_empty() => (String::new(), false),
        (Origin::RestApi, Ok(text)) => (text.to_string(), false),
        _ => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut single = Map::new();
    let mut multi = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if origin == Origin::HttpApi && name == axum::http::header::SET_COOKIE {
            cookies.extend(values);
            continue;
        }
        single.insert(name.to_string(), Value::String(values.join(", ")));
        multi.insert(name.to_string(), json!(values));
    }
    match origin {
        Origin::HttpApi => json!({
            "statusCode": status,
            "headers": single,
            "cookies": cookies,
            "body": body,
            "isBase64Encoded": base64,
        }),
        Origin::RestApi => json!({
            "statusCode": status,
            "multiValueHeaders": multi,
            "body": body,
            "isBase64Encoded": base64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_api_answers_carry_base64_bodies_and_joined_headers() {
        let mut headers = HeaderMap::new();
        headers.append("vary", "accept".parse().unwrap());
        headers.append("vary", "origin".parse().unwrap());
        headers.append("set-cookie", "a=1".parse().unwrap());
        let answer = encode(Origin::HttpApi, 200, &headers, b"{}");
        assert_eq!(answer["statusCode"], 200);
        assert_eq!(answer["headers"]["vary"], "accept, origin");
        assert_eq!(answer["cookies"], json!(["a=1"]));
        assert_eq!(answer["body"], "e30=");
        assert_eq!(answer["isBase64Encoded"], true);
    }

    #[test]
    fn rest_api_answers_keep_text_as_text_and_every_header_value() {
        let mut headers = HeaderMap::new();
        headers.append("vary", "accept".parse().unwrap());
        headers.append("vary", "origin".parse().unwrap());
        let answer = encode(Origin::RestApi, 404, &headers, b"no");
        assert_eq!(
            answer["multiValueHeaders"]["vary"],
            json!(["accept", "origin"])
        );
        assert_eq!(answer["body"], "no");
        assert_eq!(answer["isBase64Encoded"], false);
        let binary = encode(Origin::RestApi, 200, &headers, &[0xff, 0x00]);
        assert_eq!(binary["isBase64Encoded"], true);
    }

    #[test]
    fn an_event_of_no_http_service_is_refused() {
        assert!(request_of(r#"{"source":"aws.events"}"#).is_err());
        assert!(request_of("[]").is_err());
    }

    #[test]
    fn a_function_url_event_with_no_usable_host_is_refused_not_a_panic() {
        let mut event: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/lambda/function-url-request.json"
        ))
        .unwrap();
        let (origin, request) = request_of(&event.to_string()).unwrap();
        assert_eq!(origin, Origin::HttpApi);
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .unwrap();
        assert_eq!(peer.0.ip().to_string(), "123.123.123.123");
        event["headers"]["host"] = json!("bad host[");
        assert!(request_of(&event.to_string()).is_err());
    }
}
