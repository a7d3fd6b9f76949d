//! HTTP signatures over real HTTP: a small axum inbox on 127.0.0.1 verifies requests with
//! relais's verifier, fed a signature made by OpenSSL (what Mastodon signs with) in
//! Mastodon's exact format, and requests signed by relais's own signer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use relais::federation::keys::{parse_public_key_pem, PrivateKey, PublicKey};
use relais::federation::signature::{
    sign_request, verify_request, IncomingRequest, SignatureParams, SigningKey,
};

const ALICE_KEY_ID: &str = "https://mastodon.example/users/alice#main-key";

/// A throwaway test key made with `openssl genpkey -algorithm RSA`.
const ALICE_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQD1SeKjztCouHSZ
7Wx3vBi8W6pfxjuhYFZ/fZQ1NtH+mn4Ta4sVarQT7MqveXBLGMBnJB0t8K2fIjuh
iwF3+mEeRb4KhLbdpFJThzMO9CvbGoSlMOONA/3lUTVFxOOeK2TAehLzeaUrTdPG
S3oaRLrUeliaptc6x/yXdpW9HnMkfciK6HkltPUkjPCCQo2f7AOEirHMczzZWEda
Yu7SRkdX1nPX3KSXslmDHXths9IHAQjboZaRmIwpepjR3x0W3Dv+JJp90BdHtRzs
AZ6JQS9Gcouitqh1+cU6hrx0dqSO/dNYVzAyGqOWWIDCAkfgbutqnKSBdSSKbup8
c3zIQuNpAgMBAAECggEAMrME32reAiGuKCrE4rLEQhqISqeEp8Rr3IouWhlsqj1w
lb8CznhxpDSraD2nkj4ZdrgmN9qpaF0BClDbCtt7u3Aa6b2otoNCaPVm/k5FylHe
3O4P+pO6pO12H2ekzIqXlpkk1aJtG1hIz5HGOSu/mi93pO+bSRERCpV+OcrTbdUS
SHVZ5uWUcHk8oo6Vu1qtGm7Qsn5eMRECfdXBSO9Ut0js0gSbd/+FVH5GIe7HtfMl
xDpRODyud8WGmX2KIjZuIg0r20rctOTbvyL0kKKV+cK4f6+iMPC9ah4EkL7MBVe+
qNfLjMVzF2AH8vUHqIQeZadz9Sd1lxV/YhlC9RY9IQKBgQD8lOUntjnE3efQK/JN
4jqayLpJhq0on/dorZP5Gy7JMnRzfD51DmU/7uAcG1yTgvESowe9SI00iNk0FJ78
YEeiWlrEVPyA+9GZnqWcSwBRkVKSTMLXcVXhY1CSEG+06KP4hsU1/Tzlz/8ro24v
weIzxsgmrpzB0NvQP/JfQbkBJQKBgQD4m7j23mzznEyo+krM/XL1qIBU5Uuac9Pu
wrniul5UyMlf5CboWlajMrsJK0LD0AS0IC60TytX2H6mo2UGX4+RDP2yKvelRMqE
UqNDErB4LYiNweYF2QE0VRY2z8LPq7j9d64XTLKBBOt4ECjGydm7C8Zmh3N0BpWp
8t0EnFMv9QKBgE9lmpceIBCzVKBKgDNdTuDDAlQEgsAHcOU10xL2KYHTW2nF/3ga
W1d6hnYvX6169r7OAqvMd56w+d32MXfR6BKv5mJa+Liu79cjWJnFtcbuMI+Ok5zX
opBkALq5cfPjQU/pRWrQPOlctbCJAiT/BFUUQmxubRY7yi0vPMgWx8oFAoGBAOas
TuY5Iay0ZOkRPCCSNn27+D9NdmX8fTP32FSIiohuuXLRFkzXrbXFl4f9bPiVZhfg
GJXTM6tRxMpHp7BPML3s6OTNO3VMrAA1USkmCTmpPiASPqVEYfq1zGPVSLQ6aO4+
gvk5gBN4hiekDsHMfsswNMnjenu4tFu5bdweVI2VAoGBAK1+OkIOPL4zcVXgHPpi
GKDSsEs0MHR2LhK+QzXxDS04Gz0fKpnvIfjqawutYNzYVXLbGdFspxcrelg4jY98
qebaKV1HlooqhMCnGxnOn5n1wzOvlhNOY0Ig0QZydiDGLL5/7PKCB9AJwBmN3Ucm
uLgotcEIF1jz84GGiHyZHv1u
-----END PRIVATE KEY-----
";

/// Its `publicKeyPem`, as Mastodon serves it in the actor document.
const ALICE_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA9Unio87QqLh0me1sd7wY
vFuqX8Y7oWBWf32UNTbR/pp+E2uLFWq0E+zKr3lwSxjAZyQdLfCtnyI7oYsBd/ph
HkW+CoS23aRSU4czDvQr2xqEpTDjjQP95VE1RcTjnitkwHoS83mlK03Txkt6GkS6
1HpYmqbXOsf8l3aVvR5zJH3Iiuh5JbT1JIzwgkKNn+wDhIqxzHM82VhHWmLu0kZH
V9Zz19ykl7JZgx17YbPSBwEI26GWkZiMKXqY0d8dFtw7/iSafdAXR7Uc7AGeiUEv
RnKLoraodfnFOoa8dHakjv3TWFcwMhqjlliAwgJH4G7rapykgXUkim7qfHN8yELj
aQIDAQAB
-----END PUBLIC KEY-----
";

/// A Follow as Mastodon delivers it to `https://blog.example/ap/users/blog/inbox`.
const FOLLOW: &str = r#"{"@context":"https://www.w3.org/ns/activitystreams","id":"https://mastodon.example/4b1f0c3e-8f0e-4d5e-9a3b-2f6c1d7e8a90","type":"Follow","actor":"https://mastodon.example/users/alice","object":"https://blog.example/ap/users/blog.json"}"#;
const FOLLOW_DATE: &str = "Tue, 03 Jun 2025 10:15:00 GMT";
const FOLLOW_DIGEST: &str = "SHA-256=QEDH2qGpOfxtaHo2tuIeAwXzq3wb2wWY291adssC97o=";
/// Made with `openssl dgst -sha256 -sign` over the signing string, in the header format of
/// Mastodon's `HttpSignatureDraft#sign`.
const FOLLOW_SIGNATURE: &str = "keyId=\"https://mastodon.example/users/alice#main-key\",algorithm=\"rsa-sha256\",headers=\"(request-target) host date digest content-type\",signature=\"tYvf/zo2CaMQiJuLh658p1Cgufcf0GiVDdOgcBJjSA8LEyJOlSNqv2zfcz+ohRnzx7NhRkbn2M7t0IjgynwJVOVScwni0EBmpn1zN+dcB0x0pDyCcfrGVWguMCJ5kQ8mOMomdRNRL/Dtc10DnKVrSrLcGeOA3qBMTRt8ldaqR8ohD2cVQUykQ/p8wQslsfmL15nfRxELJ2YV6EbcD7ywEitORk4LJWczbgF9cmubcL+THg9XyGZsayPloBIoCLtbNbAanInKzK1T64DdivYh+RQLxlbo6IYehQNytCBqBa9HwIaVM2vd5UI9DEpoZQ7pqEYQ1HmYUCnke/gLgg4gdQ==\"";

struct Inbox {
    public_host: String,
    now: SystemTime,
    keys: HashMap<String, PublicKey>,
}

/// What an inbox does with a request: parse, verify, answer 202 or the error's status
/// with its reason.
async fn receive(
    State(inbox): State<Arc<Inbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let params = match SignatureParams::from_headers(&headers) {
        Ok(params) => params,
        Err(e) => return (e.status(), e.to_string()),
    };
    let Some(key) = inbox.keys.get(&params.key_id) else {
        return (
            StatusCode::UNAUTHORIZED,
            format!("unknown key {}", params.key_id),
        );
    };
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = IncomingRequest {
        method: &method,
        path_and_query,
        headers: &headers,
        public_host: &inbox.public_host,
        body: Some(&body),
    };
    match verify_request(&params, &request, key, inbox.now) {
        Ok(()) => (StatusCode::ACCEPTED, params.key_id),
        Err(e) => (e.status(), e.to_string()),
    }
}

fn follow_date() -> SystemTime {
    httpdate::parse_http_date(FOLLOW_DATE).unwrap()
}

/// Starts an inbox whose clock reads `now`, for `public_host` or, without one, for the
/// address it listens on; returns its base URL.
async fn start_inbox(public_host: Option<&str>, now: SystemTime) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let keys = HashMap::from([(
        ALICE_KEY_ID.to_string(),
        parse_public_key_pem(ALICE_PUBLIC_PEM).unwrap(),
    )]);
    let inbox = Arc::new(Inbox {
        public_host: public_host.unwrap_or(&address).to_string(),
        now,
        keys,
    });
    let app = axum::Router::new()
        .route("/ap/users/blog/inbox", axum::routing::post(receive))
        .with_state(inbox);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Posts the OpenSSL-signed Follow, with `body` and `date` possibly swapped.
async fn post_follow(base: &str, body: &str, date: &str) -> (StatusCode, String) {
    let response = client()
        .post(format!("{base}/ap/users/blog/inbox"))
        .header("date", date)
        .header("digest", FOLLOW_DIGEST)
        .header("content-type", "application/activity+json")
        .header("signature", FOLLOW_SIGNATURE)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn mastodon_signed_follow_is_accepted_behind_the_proxy() {
    // The request reaches the inbox service as 127.0.0.1:port; it was signed for blog.example.
    let base = start_inbox(Some("blog.example"), follow_date()).await;
    let (status, text) = post_follow(&base, FOLLOW, FOLLOW_DATE).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(text, ALICE_KEY_ID);
}

#[tokio::test]
async fn mastodon_signed_follow_is_refused_when_anything_changed() {
    let base = start_inbox(Some("blog.example"), follow_date()).await;
    let forged = FOLLOW.replace("Follow", "Block");
    let (status, text) = post_follow(&base, &forged, FOLLOW_DATE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("Digest does not match"), "{text}");

    let (status, text) = post_follow(&base, FOLLOW, "Tue, 03 Jun 2025 10:15:01 GMT").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("does not match the request"), "{text}");

    let elsewhere = start_inbox(Some("other.example"), follow_date()).await;
    let (status, text) = post_follow(&elsewhere, FOLLOW, FOLLOW_DATE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
}

#[tokio::test]
async fn mastodon_signed_follow_is_refused_once_stale() {
    let late = follow_date() + Duration::from_secs(2 * 60 * 60);
    let base = start_inbox(Some("blog.example"), late).await;
    let (status, text) = post_follow(&base, FOLLOW, FOLLOW_DATE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("time window"), "{text}");
}

#[tokio::test]
async fn requests_signed_by_relais_verify_on_the_other_side() {
    let base = start_inbox(None, follow_date()).await;
    let url = url::Url::parse(&format!("{base}/ap/users/blog/inbox?from=test")).unwrap();
    let key = SigningKey::new(
        ALICE_KEY_ID,
        Arc::new(PrivateKey::from_pem(ALICE_PRIVATE_PEM).unwrap()),
    );
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/activity+json".parse().unwrap());
    sign_request(
        &key,
        &Method::POST,
        &url,
        &mut headers,
        Some(FOLLOW.as_bytes()),
        follow_date(),
    )
    .unwrap();
    let response = client()
        .post(url.as_str())
        .headers(headers)
        .body(FOLLOW)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
}

#[tokio::test]
async fn unsigned_and_garbled_requests_get_401_and_400() {
    let base = start_inbox(Some("blog.example"), follow_date()).await;
    let inbox = format!("{base}/ap/users/blog/inbox");
    let response = client().post(&inbox).body(FOLLOW).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client()
        .post(&inbox)
        .header(
            "signature",
            "keyId=\"https://mastodon.example/users/alice#main-key\",signature",
        )
        .body(FOLLOW)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("malformed"));
}
