//! One test per rule Mastodon enforces (GoToSocial where it is stricter), each checked
//! against what relais produces, each naming the Mastodon file and method that enforces it.
//!
//! Inbound delivery rules are checked on the `Create` of every post of `example-site/`, read
//! from the built outbox by `relais::delivery::load`, planned by `relais::delivery::plan` and
//! signed with `relais::federation::signature::sign_request` and the site key, as delivery does. The
//! Mastodon side (signature parsing, signed string, RSA verification) is written here from
//! Mastodon's source, not borrowed from relais.
//!
//! Fetch rules are checked on the built output, served as a static host serves it (with
//! `_headers` and `_redirects`), starting from Mastodon's own WebFinger request.

use crate::common;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use base64::Engine as _;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method};
use relais::config::SiteConfig;
use relais::delivery::load::load_published_posts;
use relais::delivery::plan::{plan, ActivityKind, PlanContext};
use relais::federation::keys::PrivateKey;
use relais::federation::signature::{sign_request, SigningKey};
use relais::federation::urls::Urls;
use relais::federation::vocab::ACTIVITY_JSON;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

static SITE: OnceLock<Built> = OnceLock::new();

/// Posts pinned in the rules build: a Note by one author and an Article by the other, so the
/// featured collections are not empty.
const PINNED: [&str; 2] = ["harbour-at-dawn", "fediverse-reading-list"];

fn site() -> &'static Built {
    build_once(&SITE, "mastodon-rules-example", |site| {
        let config = fs::read_to_string(site.join("config.toml")).unwrap();
        let pinned = format!("[fediverse]\npinned = {PINNED:?}\n");
        let config = config.replacen("[fediverse]\n", &pinned, 1);
        assert!(config.contains("pinned = "));
        fs::write(site.join("config.toml"), config).unwrap();
    })
}

/// When the test deliveries are signed: 2026-01-01T00:00:00Z.
fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

const REMOTE_INBOX: &str = "https://mastodon.example/inbox";

/// The delivery of one post's `Create` to a Mastodon inbox.
struct Delivery {
    slug: String,
    activity: Value,
    body: Vec<u8>,
    headers: HeaderMap,
}

static DELIVERIES: OnceLock<Vec<Delivery>> = OnceLock::new();

fn deliveries() -> &'static [Delivery] {
    DELIVERIES.get_or_init(|| {
        let built = site();
        let config = SiteConfig::load(&built.site).unwrap();
        let urls = Urls::new(&config);
        let posts = load_published_posts(&config, &built.public).unwrap();
        let ctx = PlanContext {
            urls: &urls,
            site_actor: &config.fediverse.username,
            now: chrono::DateTime::<chrono::Utc>::from(signed_at()),
            // Every post of the example, however old: this is not about the first publish.
            first_publish_max_age: chrono::Duration::days(365 * 100),
        };
        let key = Arc::new(PrivateKey::load(&built.site.join(&config.fediverse.key_path)).unwrap());
        let inbox = Url::parse(REMOTE_INBOX).unwrap();
        let found: Vec<Delivery> = plan(&posts, &[], &ctx)
            .activities
            .into_iter()
            .filter(|planned| planned.kind == ActivityKind::Create)
            .map(|planned| {
                let body = serde_json::to_vec(&planned.json).unwrap();
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(ACTIVITY_JSON));
                let signer = SigningKey::new(urls.key_id(&planned.actor_name), key.clone());
                sign_request(
                    &signer,
                    &Method::POST,
                    &inbox,
                    &mut headers,
                    Some(&body),
                    signed_at(),
                )
                .unwrap();
                let slug = planned
                    .object_id
                    .rsplit('/')
                    .next()
                    .and_then(|file| file.strip_suffix(".json"))
                    .unwrap()
                    .to_string();
                Delivery {
                    slug,
                    activity: planned.json,
                    body,
                    headers,
                }
            })
            .collect();
        assert_eq!(found.len(), 7, "one delivery per published post");
        found
    })
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The parameters of a `Signature` header as `SignatureParser.parse`
/// (`app/lib/signature_parser.rb`) reads them: `name="value"` (or a bare token) pairs
/// separated by commas, `\` escaping inside quotes.
fn signature_params(headers: &HeaderMap) -> HashMap<String, String> {
    let text = header(headers, "signature");
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('='), "parameter {name} has no value");
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next().expect("unterminated quoted value") {
                    '\\' => value.push(chars.next().expect("escape at the end")),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        params.insert(name.trim().to_string(), value);
    }
    params
}

/// `signed_headers` of `SignedRequest::HttpSignature`: lowercased, space-separated, and
/// `date` when absent for `rsa-sha256`.
fn covered(params: &HashMap<String, String>) -> Vec<String> {
    params
        .get("headers")
        .map(String::as_str)
        .unwrap_or("date")
        .to_ascii_lowercase()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `SignedRequest::HttpSignature#build_signed_string` for a request Mastodon received.
fn mastodon_signed_string(
    params: &HashMap<String, String>,
    method: &str,
    fullpath: &str,
    headers: &HeaderMap,
) -> String {
    covered(params)
        .iter()
        .map(|name| match name.as_str() {
            "(request-target)" => format!("(request-target): {} {fullpath}", method.to_lowercase()),
            other => format!("{other}: {}", header(headers, other)),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `keypair.public_key.verify(OpenSSL::Digest.new('SHA256'), signature, signed_string)`:
/// RSASSA-PKCS1-v1_5 with SHA-256.
fn rsa_sha256_verifies(public_key_pem: &str, signed_string: &str, signature: &[u8]) -> bool {
    let (key, _bits) = common::rsa_spki_pem(public_key_pem).unwrap();
    common::ring_rsa_sha256_verifies(&key, signed_string.as_bytes(), signature)
}

/// `SignedRequest#matches_time_window?` for a signature with no `created`/`expires`: the
/// `Date` is when it was made, it expires 5 minutes later, with an hour of clock skew allowed
/// either way.
fn in_mastodons_time_window(date: SystemTime, now: SystemTime) -> bool {
    const EXPIRES_AFTER: Duration = Duration::from_secs(5 * 60);
    const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60 * 60);
    let created_in_future = date > now + CLOCK_SKEW_MARGIN;
    let expired = now > date + EXPIRES_AFTER + CLOCK_SKEW_MARGIN;
    !created_in_future && !expired
}

/// The key ids' actors, fetched from the built output as Mastodon fetches them.
fn key_owner(host: &StaticHost, key_id: &str) -> Value {
    match host.get(key_id) {
        answer @ Answer::File { .. } => answer.json(),
        other => panic!("{key_id} does not resolve: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Inbound delivery: what Mastodon's inbox checks on a POST from us.
// ---------------------------------------------------------------------------------------

/// `SignedRequest::HttpSignature::REQUIRED_PARAMETERS` (`keyId`, `signature`) and
/// `#algorithm_supported?` (`rsa-sha256` or `hs2019`) in `app/lib/signed_request.rb`;
/// `signature` is read with `Base64.decode64`.
#[test]
fn delivery_signature_has_the_parameters_mastodon_requires() {
    for delivery in deliveries() {
        let params = signature_params(&delivery.headers);
        assert!(!params["keyId"].is_empty(), "{}", delivery.slug);
        let algorithm = params
            .get("algorithm")
            .map(String::as_str)
            .unwrap_or("hs2019");
        assert!(["rsa-sha256", "hs2019"].contains(&algorithm), "{algorithm}");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&params["signature"])
            .unwrap();
        assert_eq!(signature.len(), 256, "an RSA-2048 signature");
    }
}

/// `SignedRequest::HttpSignature#verify_signature_strength!` in `app/lib/signed_request.rb`:
/// `date` or `(created)` signed, `(request-target)` or `digest` signed, and `digest` signed on
/// a POST. Mastodon itself signs `(request-target) host date digest content-type` on delivery
/// (`app/lib/request.rb#signed_headers`), and GoToSocial checks `host` too.
#[test]
fn delivery_signature_covers_what_mastodon_requires_of_a_post() {
    for delivery in deliveries() {
        let covered = covered(&signature_params(&delivery.headers));
        for needed in ["(request-target)", "host", "date", "digest", "content-type"] {
            assert!(
                covered.iter().any(|c| c == needed),
                "{needed} in {covered:?}"
            );
        }
        assert_eq!(header(&delivery.headers, "host"), "mastodon.example");
    }
}

/// `SignedRequest::HttpSignature#verify_body_digest!` in `app/lib/signed_request.rb`: the
/// `Digest` header has a `SHA-256` entry equal to the base64 SHA-256 of the body.
#[test]
fn delivery_digest_is_the_sha256_of_the_body() {
    for delivery in deliveries() {
        let digest = header(&delivery.headers, "digest");
        let sha256 = digest
            .split(',')
            .filter_map(|d| d.split_once('='))
            .find(|(algorithm, _)| algorithm.trim().eq_ignore_ascii_case("sha-256"))
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no SHA-256 in {digest}"));
        let expected =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&delivery.body));
        assert_eq!(sha256, expected, "{}", delivery.slug);
    }
}

/// `SignedRequest#matches_time_window?` and `HttpSignature#created_time`
/// (`Time.httpdate(Date)`) in `app/lib/signed_request.rb`: the `Date` is an HTTP date, the
/// signing time, so the request is accepted when it arrives and stale a day later.
#[test]
fn delivery_date_falls_in_mastodons_time_window() {
    for delivery in deliveries() {
        let date = httpdate::parse_http_date(header(&delivery.headers, "date")).unwrap();
        assert_eq!(date, signed_at());
        assert!(in_mastodons_time_window(date, signed_at()));
        assert!(in_mastodons_time_window(
            date,
            signed_at() + Duration::from_secs(60)
        ));
        assert!(!in_mastodons_time_window(
            date,
            signed_at() + Duration::from_secs(24 * 60 * 60)
        ));
    }
}

/// `SignedRequest::HttpSignature#verified?` in `app/lib/signed_request.rb`: the signed string
/// rebuilt from the received request verifies with the `publicKeyPem` of the actor the key id
/// names (`app/controllers/concerns/signature_verification.rb#signed_request_actor`).
#[test]
fn delivery_signature_verifies_with_the_published_key() {
    let host = StaticHost::new(&site().public);
    for delivery in deliveries() {
        let params = signature_params(&delivery.headers);
        let actor = key_owner(&host, &params["keyId"]);
        let pem = text(&actor["publicKey"], "publicKeyPem");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&params["signature"])
            .unwrap();
        let path = Url::parse(REMOTE_INBOX).unwrap().path().to_string();
        let signed = mastodon_signed_string(&params, "POST", &path, &delivery.headers);
        assert!(
            rsa_sha256_verifies(pem, &signed, &signature),
            "{}: {signed}",
            delivery.slug
        );
        // And it is the request that is signed: another body's digest breaks it.
        let mut tampered = delivery.headers.clone();
        tampered.insert(
            "digest",
            HeaderValue::from_static("SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        );
        let signed = mastodon_signed_string(&params, "POST", &path, &tampered);
        assert!(!rsa_sha256_verifies(pem, &signed, &signature));
    }
}

/// `ActivityPub::FetchRemoteKeyService#call` (`app/services/activitypub/fetch_remote_key_service.rb`):
/// the key id, fetched (without its fragment), is an actor of a supported type whose `id` is
/// what was fetched; its `publicKey` has that key id (GoToSocial's `getPublicKeyFromResponse`
/// in `internal/federation/authenticate.go` requires the exact id) and is owned by it.
#[test]
fn delivery_key_id_resolves_to_an_actor_whose_key_it_names() {
    let host = StaticHost::new(&site().public);
    for delivery in deliveries() {
        let key_id = signature_params(&delivery.headers)["keyId"].clone();
        let actor = key_owner(&host, &key_id);
        let (fetched, _fragment) = key_id.split_once('#').unwrap_or((&key_id, ""));
        assert_eq!(actor["id"], fetched);
        assert!(MASTODON_ACTOR_TYPES.contains(&text(&actor, "type")));
        assert_eq!(actor["publicKey"]["id"], key_id.as_str());
        assert_eq!(actor["publicKey"]["owner"], actor["id"]);
    }
}

/// `ActivityPub::DeliveryWorker::HEADERS` (`app/workers/activitypub/delivery_worker.rb`)
/// sends `application/activity+json`; GoToSocial answers 406 to any Content-Type but
/// `application/activity+json` (optionally `; charset=utf-8`) or `application/ld+json` with
/// the ActivityStreams profile (`docs/federation/actors.md`, Inbox).
#[test]
fn delivery_content_type_is_activity_json() {
    let accepted = [
        "application/activity+json",
        "application/activity+json; charset=utf-8",
        "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"",
    ];
    for delivery in deliveries() {
        let content_type = header(&delivery.headers, "content-type");
        assert!(accepted.contains(&content_type), "{content_type}");
    }
}

/// `ActivityPub::ProcessCollectionService#call` (`supported_context?`, from
/// `app/helpers/jsonld_helper.rb`): a body whose `@context` lacks ActivityStreams is dropped.
#[test]
fn delivered_activity_has_the_activitystreams_context() {
    for delivery in deliveries() {
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body, delivery.activity);
        assert!(has_as_context(&body), "{}", delivery.slug);
    }
}

fn has_as_context(doc: &Value) -> bool {
    match &doc["@context"] {
        Value::String(one) => one == AS_CONTEXT,
        Value::Array(many) => many.iter().any(|c| c == AS_CONTEXT),
        _ => false,
    }
}

/// `ActivityPub::ProcessCollectionService#different_actor?`
/// (`app/services/activitypub/process_collection_service.rb`): an activity whose `actor` is
/// not the signer needs a Linked Data signature, which relais does not make, so it would be
/// dropped.
#[test]
fn delivered_activity_actor_is_the_key_owner() {
    let host = StaticHost::new(&site().public);
    for delivery in deliveries() {
        let key_id = &signature_params(&delivery.headers)["keyId"];
        let owner = key_owner(&host, key_id);
        assert_eq!(delivery.activity["actor"], owner["id"], "{}", delivery.slug);
    }
}

/// `ActivityPub::Activity::Create#create_status` (`non_matching_uri_hosts?(@account.uri,
/// object_uri)`, `app/lib/activitypub/activity/create.rb`) and
/// `ActivityPub::FetchRemoteStatusService#trustworthy_attribution?`: the object lives on the
/// actor's host and is attributed to the actor that creates it.
#[test]
fn delivered_object_is_attributed_to_the_actor_on_its_host() {
    for delivery in deliveries() {
        let activity = &delivery.activity;
        let object = &activity["object"];
        assert_eq!(
            object["attributedTo"], activity["actor"],
            "{}",
            delivery.slug
        );
        assert_eq!(
            host_of(text(object, "id")),
            host_of(text(activity, "actor"))
        );
    }
}

/// `ActivityPub::Activity::SUPPORTED_TYPES` (`Note Question`) and `CONVERTED_TYPES`
/// (`Image Audio Video Article Page Event`) in `app/lib/activitypub/activity.rb`: any other
/// object type is not turned into a status (`Create#unsupported_object_type?`). GoToSocial's
/// `ap.IsStatusable` (`internal/ap/interfaces.go`) accepts Note and Article too.
#[test]
fn delivered_object_type_is_one_mastodon_turns_into_a_status() {
    let mastodon = [
        "Note", "Question", "Image", "Audio", "Video", "Article", "Page", "Event",
    ];
    let mut seen = BTreeSet::new();
    for delivery in deliveries() {
        let kind = text(&delivery.activity["object"], "type");
        assert!(mastodon.contains(&kind), "{}: {kind}", delivery.slug);
        assert!(["Note", "Article"].contains(&kind), "GoToSocial: {kind}");
        seen.insert(kind);
    }
    assert_eq!(seen, BTreeSet::from(["Article", "Note"]));
}

/// `ActivityPub::Parser::StatusParser#visibility` with `ActivityPub::TagManager#public_collection?`
/// (`app/lib/activitypub/tag_manager.rb`): the public collection in `to` makes a public
/// status; in `cc` only an unlisted one; neither, a direct message.
#[test]
fn delivered_posts_are_public() {
    let public_forms = [AS_PUBLIC, "as:Public", "Public"];
    for delivery in deliveries() {
        let object = &delivery.activity["object"];
        let to = object["to"].as_array().unwrap();
        assert!(
            to.iter()
                .any(|t| public_forms.contains(&t.as_str().unwrap())),
            "{}: to {to:?}",
            delivery.slug
        );
        assert_eq!(delivery.activity["to"], object["to"]);
        assert_eq!(delivery.activity["cc"], object["cc"]);
    }
}

// ---------------------------------------------------------------------------------------
// Fetching: what Mastodon checks on actors and objects it fetches from the site.
// ---------------------------------------------------------------------------------------

/// `Webfinger#standard_url` (`app/lib/webfinger.rb`): Mastodon puts the resource in the query
/// as is, without percent-encoding.
fn mastodon_webfinger_url(username: &str, domain: &str) -> String {
    format!("https://{domain}/.well-known/webfinger?resource=acct:{username}@{domain}")
}

/// The actor names of the example site.
const ACTORS: [&str; 3] = ["notes", "maren", "theo"];

/// Every ActivityStreams document Mastodon can reach from the actors' WebFinger answers by
/// following what it reads: actor collections, outbox pages, featured and outbox items and
/// their authors. Dynamic endpoints (served by the inbox service) are left out.
fn fetched_documents(host: &StaticHost) -> Vec<(String, Answer)> {
    let mut queue: VecDeque<String> = ACTORS
        .iter()
        .map(|name| {
            let jrd = host.get(&mastodon_webfinger_url(name, HOST)).json();
            let link = jrd["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["rel"] == "self")
                .unwrap();
            text(link, "href").to_string()
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut fetched = Vec::new();
    while let Some(url) = queue.pop_front() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let answer = host.get(&url);
        let Answer::File { .. } = answer else {
            continue;
        };
        let doc = answer.json();
        for key in [
            "outbox",
            "following",
            "featured",
            "first",
            "next",
            "attributedTo",
        ] {
            if let Some(next) = doc.get(key).and_then(Value::as_str) {
                queue.push_back(next.to_string());
            }
        }
        for item in doc["orderedItems"].as_array().into_iter().flatten() {
            let id = match item {
                Value::String(id) => Some(id.as_str()),
                _ => item["object"]["id"].as_str().or(item["id"].as_str()),
            };
            queue.extend(id.map(String::from));
        }
        fetched.push((url, answer));
    }
    fetched
}

fn fetched_of_type<'f>(fetched: &'f [(String, Answer)], types: &[&str]) -> Vec<(&'f str, Value)> {
    fetched
        .iter()
        .map(|(url, answer)| (url.as_str(), answer.json()))
        .filter(|(_, doc)| types.contains(&doc["type"].as_str().unwrap_or("")))
        .collect()
}

/// `JsonLdHelper#valid_activitypub_content_type?` (`app/helpers/jsonld_helper.rb`): a
/// fetched document is ignored unless served as `application/activity+json` (or
/// `application/ld+json` with the ActivityStreams profile).
#[test]
fn fetched_documents_are_served_as_activity_json() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    assert!(fetched.len() > 20, "{} documents", fetched.len());
    for (url, answer) in &fetched {
        assert_eq!(
            answer.mime_type().as_deref(),
            Some("application/activity+json"),
            "{url}"
        );
    }
}

/// `JsonLdHelper#fetch_resource` (`json['id'] == uri`, `app/helpers/jsonld_helper.rb`):
/// a document whose `id` is not the URL it was fetched from is thrown away.
#[test]
fn fetched_documents_have_the_id_they_were_fetched_by() {
    let host = StaticHost::new(&site().public);
    for (url, answer) in fetched_documents(&host) {
        assert_eq!(answer.json()["id"], url.as_str());
    }
}

/// `Request::ClientLimit#body_with_limit` (`app/lib/request.rb`): responses over 1 MB are
/// refused.
#[test]
fn fetched_documents_fit_mastodons_size_limit() {
    let host = StaticHost::new(&site().public);
    for (url, answer) in fetched_documents(&host) {
        let Answer::File { body, .. } = answer else {
            unreachable!()
        };
        assert!(body.len() < 1024 * 1024, "{url}: {} bytes", body.len());
    }
}

/// `JsonLdHelper#supported_context?`, required by `FetchRemoteActorService`,
/// `FetchRemoteKeyService`, `FetchRemoteStatusService` and `FetchFeaturedCollectionService`.
#[test]
fn fetched_documents_have_the_activitystreams_context() {
    let host = StaticHost::new(&site().public);
    for (url, answer) in fetched_documents(&host) {
        assert!(has_as_context(&answer.json()), "{url}");
    }
}

/// `ActivityPub::FetchRemoteActorService::SUPPORTED_TYPES`
/// (`app/services/activitypub/fetch_remote_actor_service.rb#expected_type?`); GoToSocial's
/// `ap.IsAccountable` has the same five.
#[test]
fn actors_are_of_a_supported_type() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let actors = fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES);
    assert_eq!(actors.len(), ACTORS.len());
    let all_typed: Vec<_> = fetched_of_type(
        &fetched,
        &[
            "OrderedCollection",
            "OrderedCollectionPage",
            "Note",
            "Article",
        ],
    );
    assert_eq!(
        actors.len() + all_typed.len(),
        fetched.len(),
        "no unknown types"
    );
}

/// `ActivityPub::FetchRemoteActorService#call` (no `preferredUsername` nor `webfinger`: an
/// error) and the username format Mastodon validates for remote accounts
/// (`Account::USERNAME_RE`, `[a-z0-9_]+([.-]+[a-z0-9_]+)*`, in `app/models/account.rb`).
#[test]
fn actors_have_a_username_mastodon_accepts() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        let username = text(&actor, "preferredUsername");
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let valid = username.starts_with(word)
            && username.ends_with(word)
            && username.chars().all(|c| word(c) || c == '.' || c == '-');
        assert!(valid, "{url}: {username:?}");
        assert!(ACTORS.contains(&username));
    }
}

/// `ActivityPub::ProcessAccountService#call`: no account is made for an actor without an
/// `inbox` or with a non-http(s) `id` (`unsupported_uri_scheme?`). Mastodon then POSTs to the
/// inbox (or `endpoints.sharedInbox`), which the host rules hand to the inbox service.
#[test]
fn actors_have_an_inbox_that_reaches_the_inbox_service() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        assert!(url.starts_with("https://"));
        for inbox in [
            text(&actor, "inbox"),
            text(&actor["endpoints"], "sharedInbox"),
        ] {
            assert!(
                matches!(host.get(inbox), Answer::Proxied(ref to) if to.starts_with(INBOX_SERVICE)),
                "{url}: {inbox}"
            );
        }
    }
}

/// `ActivityPub::FetchRemoteActorService#check_webfinger!`: Mastodon asks the actor's host
/// for `acct:<preferredUsername>@<host>` (`Webfinger#standard_url`, with
/// `Accept: application/jrd+json, application/json`); the answer must have a `subject`
/// (`Webfinger::Response#validate_response!`) naming the same account and a `self` link whose
/// `href` is the actor id, or the actor is refused ("does not loop back").
#[test]
fn webfinger_loops_back_to_the_actor() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        let username = text(&actor, "preferredUsername");
        let domain = host_of(text(&actor, "id"));
        let answer = host.get(&mastodon_webfinger_url(username, &domain));
        let mime = answer.mime_type();
        assert!(
            matches!(
                mime.as_deref(),
                Some("application/jrd+json" | "application/json")
            ),
            "{url}: {mime:?}"
        );
        let jrd = answer.json();
        let (user, at) = text(&jrd, "subject")
            .strip_prefix("acct:")
            .unwrap()
            .split_once('@')
            .unwrap();
        assert!(user.eq_ignore_ascii_case(username) && at.eq_ignore_ascii_case(&domain));
        let self_link = jrd["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "self" && l["type"] == "application/activity+json")
            .unwrap_or_else(|| panic!("{url}: no ActivityPub self link"));
        assert_eq!(self_link["href"], url);
    }
}

/// `ActivityPub::ProcessAccountService#url` (`mismatching_origin?`): a profile `url` on
/// another host than the actor id is dropped for the id.
#[test]
fn actor_profile_url_is_on_the_actor_host() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        assert!(host_of(text(&actor, "url")).eq_ignore_ascii_case(&host_of(url)));
    }
}

/// `ActivityPub::ProcessAccountService#public_key` reads `publicKey.publicKeyPem`; GoToSocial
/// (`internal/federation/authenticate.go`) decodes it as a `PUBLIC KEY` PEM block and parses
/// it with `x509.ParsePKIXPublicKey`, so it must be an RSA key in SPKI form.
#[test]
fn actor_public_key_is_an_rsa_spki_pem() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        let pem = text(&actor["publicKey"], "publicKeyPem");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{url}");
        let (_key, bits) = common::rsa_spki_pem(pem).unwrap();
        assert_eq!(bits, 2048, "{url}");
    }
}

/// `ActivityPub::FetchRemoteStatusService` (`trustworthy_attribution?`: the object's host is
/// its `attributedTo`'s host) and `expected_type?`; the author must be an actor Mastodon can
/// fetch.
#[test]
fn fetched_posts_are_attributed_on_their_own_host() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let posts = fetched_of_type(&fetched, &["Note", "Article"]);
    assert_eq!(posts.len(), 7);
    for (url, post) in posts {
        let author = text(&post, "attributedTo");
        assert!(host_of(url).eq_ignore_ascii_case(&host_of(author)), "{url}");
        let actor = host.get(author).json();
        assert!(MASTODON_ACTOR_TYPES.contains(&text(&actor, "type")));
    }
}

/// `ActivityPub::Parser::StatusParser#url` and the origin check of the status `url`
/// (`Create#object_url`, `invalid_origin?`): a permalink on another host than the actor is
/// not linked.
#[test]
fn post_urls_are_on_the_actor_host() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, post) in fetched_of_type(&fetched, &["Note", "Article"]) {
        let permalink = text(&post, "url");
        assert!(permalink.starts_with("https://"), "{url}");
        assert_eq!(host_of(permalink), host_of(text(&post, "attributedTo")));
    }
}

/// `ActivityPub::Parser::StatusParser#created_at` (`published.to_datetime`, year in
/// 0..=9999) and `#edited_at` (`updated`); `ProcessAccountService` sets the account's
/// `created_at` from the actor's `published`. An unreadable date is dropped.
#[test]
fn dates_parse_as_mastodon_reads_them() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let mut edited = 0;
    let types = [&["Note", "Article"][..], &MASTODON_ACTOR_TYPES[..]].concat();
    for (url, doc) in fetched_of_type(&fetched, &types) {
        let published = chrono::DateTime::parse_from_rfc3339(text(&doc, "published"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!((0..=9999).contains(&chrono::Datelike::year(&published)));
        if let Some(updated) = doc.get("updated") {
            let updated = chrono::DateTime::parse_from_rfc3339(updated.as_str().unwrap()).unwrap();
            assert!(updated > published, "{url}");
            edited += 1;
        }
    }
    assert_eq!(edited, 1, "the example has one edited post");
}

/// `ActivityPub::Activity::Create#process_attachments`: attachments past
/// `Status::MEDIA_ATTACHMENTS_LIMIT` (4) are dropped; `MediaAttachmentParser#description`
/// takes `summary` or `name`; `#file_content_type` takes `mediaType`, and a type outside
/// `MediaAttachment::IMAGE_MIME_TYPES` / `VIDEO_MIME_TYPES` is not downloaded
/// (`unsupported_media_type?`); `#remote_url` must be http(s).
#[test]
fn attachments_fit_mastodons_media_rules() {
    let images = [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/heic",
        "image/heif",
        "image/webp",
        "image/avif",
    ];
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let mut attachments = 0;
    for (url, post) in fetched_of_type(&fetched, &["Note", "Article"]) {
        let list = post["attachment"].as_array().unwrap();
        assert!(list.len() <= 4, "{url}");
        for attachment in list {
            assert!(!text(attachment, "name").trim().is_empty(), "{url}");
            assert!(images.contains(&text(attachment, "mediaType")), "{url}");
            assert!(text(attachment, "url").starts_with("https://"));
            attachments += 1;
        }
    }
    assert!(attachments > 0, "the example has an image");
}

/// `ActivityPub::Activity::Create#process_tags` (`Hashtag` with a `name`, `#` stripped) and
/// the name format of `Tag` (`HASHTAG_NAME_RE`, `app/models/tag.rb`): word characters with at
/// least one letter. A name that does not match is not a tag.
#[test]
fn hashtags_are_valid_mastodon_tag_names() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let mut tags = 0;
    for (url, post) in fetched_of_type(&fetched, &["Note", "Article"]) {
        for tag in post["tag"].as_array().unwrap() {
            assert_eq!(tag["type"], "Hashtag");
            let name = text(tag, "name").strip_prefix('#').unwrap();
            assert!(
                name.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && name.chars().any(char::is_alphabetic),
                "{url}: {name:?}"
            );
            tags += 1;
        }
    }
    assert!(tags > 0);
}

/// `ActivityPub::Parser::StatusParser#spoiler_text` (`summary`) and `#sensitive`: on a Note
/// the summary is the content warning; on a converted type (`processed_spoiler_text` returns
/// `''` for `CONVERTED_TYPES`) it would be shown as text, so a warned post must be a Note.
#[test]
fn content_warnings_reach_mastodon_as_spoiler_text() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let mut warned = 0;
    for (url, post) in fetched_of_type(&fetched, &["Note", "Article"]) {
        if post["sensitive"] == true {
            assert_eq!(post["type"], "Note", "{url}");
            assert!(!text(&post, "summary").is_empty(), "{url}");
            warned += 1;
        } else {
            assert_eq!(post["sensitive"], false, "{url}");
            if post["type"] == "Note" {
                assert!(
                    post.get("summary").is_none(),
                    "{url}: a Note summary is a warning"
                );
            }
        }
    }
    assert_eq!(warned, 1, "the example has one post with a content warning");
}

/// `ActivityPub::Parser::StatusParser#language`: the first key of a non-empty `contentMap`
/// (`content_language_map?`), else Mastodon guesses.
#[test]
fn language_comes_from_the_content_map() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, post) in fetched_of_type(&fetched, &["Note", "Article"]) {
        let map = post["contentMap"].as_object().unwrap();
        assert_eq!(map.keys().next().map(String::as_str), Some("en"), "{url}");
        assert_eq!(map["en"], post["content"]);
    }
}

/// `ActivityPub::ProcessAccountService#collection_info`: `totalItems` (a number) becomes the
/// post and following counts, and a collection without `first` is taken as hidden
/// (`hide_collections`).
#[test]
fn actor_collections_expose_counts_and_pages() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        for key in ["outbox", "following"] {
            let collection = host.get(text(&actor, key)).json();
            assert!(collection["totalItems"].is_u64(), "{url} {key}");
            assert!(
                collection.get("first").is_some_and(|f| !f.is_null()),
                "{url} {key}: no first page"
            );
        }
    }
}

/// `ActivityPub::FetchFeaturedCollectionService#process_note_items`: a pinned item counts only
/// if it is an id or an embedded `Note`, and only if it is a status of the collection's owner.
#[test]
fn featured_posts_are_the_owners_own() {
    let host = StaticHost::new(&site().public);
    let fetched = fetched_documents(&host);
    let mut pinned = BTreeSet::new();
    for (url, actor) in fetched_of_type(&fetched, &MASTODON_ACTOR_TYPES) {
        let featured = host.get(text(&actor, "featured")).json();
        for item in featured["orderedItems"].as_array().unwrap() {
            let id = match item {
                Value::String(id) => id.clone(),
                object => {
                    assert_eq!(object["type"], "Note", "{url}");
                    text(object, "id").to_string()
                }
            };
            let post = host.get(&id).json();
            assert_eq!(post["attributedTo"], url, "{id} pinned by {url}");
            pinned.insert(id);
        }
    }
    let expected: BTreeSet<String> = PINNED
        .iter()
        .map(|slug| format!("{BASE_URL}/ap/posts/{slug}.json"))
        .collect();
    assert_eq!(pinned, expected);
}
