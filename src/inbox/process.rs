//! What a verified activity does to the store. Nothing here touches the network: the caller
//! has verified the signature, cached the sender and fetched a `Move` target before.

use std::path::PathBuf;

use chrono::Utc;
use serde_json::Value;

use crate::config::{QuotePolicy, SiteConfig};
use crate::content::escape_html;
use crate::federation::activities::{
    Answer, AnswerType, Follow, FollowType, QuoteAuthorization as Stamp, QuoteAuthorizationType,
    QuoteRequest, QuoteRequestType, WithContext,
};
use crate::federation::documents::{actors, read_quote_policy};
use crate::federation::urls::Urls;
use crate::inbox::activity::{Activity, Kind, Note, Undone, Updated};
use crate::inbox::remote::actor_from_document;
use crate::inbox::sanitize::sanitize_html;
use crate::interactions::Reply;
use crate::store::{
    host_of, FollowState, Follower, MoveDirection, NewFlag, NewFollower, NewReply,
    QuoteAuthorization, ReactionKind, RemoteActor, ReplyState, Store, StoreError,
};

/// What the inbox knows of our own site.
#[derive(Debug, Clone)]
pub struct OurSite {
    pub urls: Urls,
    /// Usernames of our actors.
    pub actor_names: Vec<String>,
    pub manually_approves_followers: bool,
    pub approve_replies: bool,
    /// `fediverse.quotes`: the policy of posts whose document is not at hand.
    pub quotes: QuotePolicy,
    /// Each actor's `alsoKnownAs`: the accounts whose move here brings followers.
    pub aliases: Vec<(String, Vec<String>)>,
    /// The built output folder, when this machine has it: a post must then have its object
    /// document there. Without it any object id of the post URL shape is taken for a post.
    pub public_dir: Option<PathBuf>,
}

impl OurSite {
    pub fn new(config: &SiteConfig, public_dir: Option<PathBuf>) -> OurSite {
        OurSite {
            urls: Urls::new(config),
            actor_names: actors(config).into_iter().map(|a| a.name).collect(),
            aliases: actors(config)
                .into_iter()
                .map(|a| (a.name, a.also_known_as))
                .collect(),
            manually_approves_followers: config.fediverse.manually_approves_followers,
            approve_replies: config.inbox.approve_replies,
            quotes: config.fediverse.quotes,
            public_dir,
        }
    }

    /// The username of our actor with this id.
    pub fn actor_name(&self, id: &str) -> Option<&str> {
        self.actor_names
            .iter()
            .find(|name| self.urls.actor(name) == id)
            .map(String::as_str)
    }

    /// The `alsoKnownAs` accounts of our actor `name`.
    pub fn aliases_of(&self, name: &str) -> &[String] {
        self.aliases
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[], |(_, aliases)| aliases.as_slice())
    }

    /// The actor and quote policy of our post `id`, read from its built document when this
    /// machine has the output folder (a post's own `quotes` is only there), else the site's
    /// policy for the site actor.
    pub fn post_quote_policy(&self, id: &str) -> Option<(String, QuotePolicy)> {
        if !self.is_our_post(id) {
            return None;
        }
        let site_actor = self.actor_names.first().cloned().unwrap_or_default();
        let document = self.public_dir.as_ref().filter(|d| d.is_dir()).map(|dir| {
            let path = id.strip_prefix(self.urls.base()).unwrap_or_default();
            std::fs::read(dir.join(path.trim_start_matches('/')))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        });
        match document {
            None => Some((site_actor, self.quotes)),
            // Unreadable: refuse rather than guess.
            Some(None) => Some((site_actor, QuotePolicy::Nobody)),
            Some(Some(doc)) => {
                let name = doc["attributedTo"]
                    .as_str()
                    .and_then(|a| self.actor_name(a))
                    .map(str::to_string)
                    .unwrap_or(site_actor);
                let policy = read_quote_policy(&self.urls, &name, &doc);
                Some((name, policy))
            }
        }
    }

    /// Whether `id` is the object id of one of our posts.
    pub fn is_our_post(&self, id: &str) -> bool {
        let Some(rest) = id.strip_prefix(self.urls.base()) else {
            return false;
        };
        let Ok(url) = url::Url::parse(id) else {
            return false;
        };
        let path = url.path();
        let shaped = rest == path
            && path.starts_with("/ap/")
            && path.ends_with(".json")
            && !path.starts_with("/ap/users/")
            && !path.split('/').any(|segment| segment == "..");
        match (&self.public_dir, shaped) {
            (Some(dir), true) if dir.is_dir() => dir.join(path.trim_start_matches('/')).is_file(),
            (_, shaped) => shaped,
        }
    }
}

/// What came of an activity.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The store changed.
    Done(&'static str),
    /// Nothing to do; the reason goes to the log.
    Ignored(String),
    /// A follow was accepted and our `Accept` queued for the delivery worker.
    Accept(Follower),
    /// An answer (`Accept` or `Reject` of a quote request) was queued for the worker.
    Answered(&'static str),
}

fn ignored(reason: impl Into<String>) -> Result<Outcome, StoreError> {
    Ok(Outcome::Ignored(reason.into()))
}

/// Applies `activity`, sent by `sender` (whose key signed it), in one store transaction:
/// the seen mark of its id, its effect and any answer it needs queued (the `Accept` of a
/// follow) commit together or not at all. A repeated activity id is applied once; a failed
/// one is not marked seen, so the sender's retry is applied. `move_target` is the fetched
/// `target` of a `Move`. `refreshed` are actors fetched for this request whose copy differs
/// from the cached one: they are cached whether or not the activity is new.
///
/// On PostgreSQL, replicas may apply the same activity at once, so every unit takes its row
/// locks in one order: the activity's id, then actors, then the sender's host. Two units
/// that cached the sender before marking the id deadlocked on each other.
pub fn apply(
    site: &OurSite,
    store: &Store,
    activity: &Activity,
    sender: &RemoteActor,
    move_target: Option<&RemoteActor>,
    refreshed: &[&RemoteActor],
) -> Result<Outcome, StoreError> {
    store.atomically(|store| {
        // Only an id on the sender's own server is remembered: otherwise one actor could use
        // up another's (predictable) Delete or Undo id and have the real one ignored.
        let own_id = activity
            .id
            .as_ref()
            .filter(|id| host_of(id).is_some() && host_of(id) == host_of(&activity.actor));
        let fresh = match own_id {
            Some(id) => store.mark_seen(id)?,
            None => true,
        };
        for actor in refreshed {
            store.cache_actor(actor)?;
        }
        match own_id {
            Some(id) if !fresh => ignored(format!("{id} was already processed")),
            _ => apply_once(site, store, activity, sender, move_target),
        }
    })
}

fn apply_once(
    site: &OurSite,
    store: &Store,
    activity: &Activity,
    sender: &RemoteActor,
    move_target: Option<&RemoteActor>,
) -> Result<Outcome, StoreError> {
    let actor = activity.actor.as_str();
    match &activity.kind {
        Kind::Follow { object } => follow(site, store, activity, sender, object),
        Kind::Undo(undone) => undo(site, store, actor, undone),
        Kind::Create(note) => create(site, store, sender, note),
        Kind::Update(Updated::Note(note)) => {
            if !authored_by(note, actor) {
                return ignored(format!("{actor} may not update {}", note.id));
            }
            let updated = note.updated.unwrap_or_else(Utc::now);
            if store.update_reply(&note.id, actor, &reply_html(note), updated)? {
                Ok(Outcome::Done("reply updated"))
            } else {
                ignored(format!("{} is no reply we store", note.id))
            }
        }
        Kind::Update(Updated::Actor(doc)) => match actor_from_document(doc) {
            // A key id on another server would let this actor's row answer for that key.
            Ok(profile) if profile.id == actor && host_of(&profile.key_id) == host_of(actor) => {
                store.cache_actor(&profile)?;
                Ok(Outcome::Done("actor profile refreshed"))
            }
            Ok(profile) if profile.id == actor => ignored(format!(
                "{actor} names a key on another server: {}",
                profile.key_id
            )),
            Ok(profile) => ignored(format!("{actor} may not update {}", profile.id)),
            Err(e) => ignored(format!("unreadable actor update: {e}")),
        },
        Kind::Update(Updated::Other) => ignored("Update of an object we do not keep"),
        Kind::Delete { object } if object == actor => {
            store.delete_actor_data(actor)?;
            Ok(Outcome::Done(
                "actor deleted with its follows, replies and reactions",
            ))
        }
        Kind::Delete { object } => {
            if store.delete_reply(object, actor)? {
                Ok(Outcome::Done("reply deleted"))
            } else if store.remove_received_quote(object, actor)? {
                Ok(Outcome::Done("quote deleted"))
            } else {
                ignored(format!("{object} is no reply of {actor}"))
            }
        }
        Kind::Like { object } => react(site, store, activity, object, ReactionKind::Like),
        Kind::Announce { object } => react(site, store, activity, object, ReactionKind::Announce),
        Kind::Move { object, target } if site.actor_name(target).is_some() => {
            let name = site.actor_name(target).unwrap_or_default();
            if object != actor || !site.aliases_of(name).iter().any(|a| a == actor) {
                return ignored(format!("{actor} is no alias of {target}"));
            }
            store.record_move(name, MoveDirection::In, actor, target)?;
            Ok(Outcome::Done("move of our alias to us recorded"))
        }
        Kind::Move { object, target } => {
            let Some(new) = move_target.filter(|t| &t.id == target) else {
                return ignored(format!("the target {target} of the move was not fetched"));
            };
            if object != actor {
                return ignored(format!("{actor} may not move {object}"));
            }
            if !new.also_known_as.iter().any(|aka| aka == actor) {
                return ignored(format!("{target} does not list {actor} in alsoKnownAs"));
            }
            store.cache_actor(new)?;
            store.move_follower(actor, new)?;
            Ok(Outcome::Done("follows moved to the new account"))
        }
        Kind::Block { object } => match site.actor_name(object) {
            Some(name) => {
                store.record_remote_block(actor, name, activity.id.as_deref())?;
                store.remove_follower(name, actor)?;
                Ok(Outcome::Done("block recorded"))
            }
            None => ignored(format!("{object} is none of our actors")),
        },
        Kind::QuoteRequest { object, instrument } => {
            quote_request(site, store, activity, sender, object, instrument.as_deref())
        }
        Kind::Flag { objects, content } => {
            store.add_flag(&NewFlag {
                activity_id: activity.id.as_deref(),
                actor_id: actor,
                objects,
                content,
            })?;
            Ok(Outcome::Done("report recorded"))
        }
        Kind::Other(kind) => ignored(format!("{kind} activities are not handled")),
    }
}

fn follow(
    site: &OurSite,
    store: &Store,
    activity: &Activity,
    sender: &RemoteActor,
    object: &str,
) -> Result<Outcome, StoreError> {
    let Some(name) = site.actor_name(object) else {
        return ignored(format!("{object} is none of our actors"));
    };
    // Our Accept must name the Follow it answers.
    let Some(follow_id) = &activity.id else {
        return ignored("a Follow without id cannot be accepted");
    };
    let was_following = store.follower(name, &sender.id)?.is_some();
    let follower = store.upsert_follower(&NewFollower {
        actor_name: name,
        follower: sender,
        follow_activity_id: follow_id,
        state: if site.manually_approves_followers {
            FollowState::Pending
        } else {
            FollowState::Accepted
        },
    })?;
    store.cache_actor(sender)?;
    if !was_following {
        arrived_through_move(site, store, name, &follower.follower_id)?;
    }
    match follower.state {
        FollowState::Accepted => {
            let answer = follow_answer(&site.urls, &follower, FollowAnswer::Accept);
            store.enqueue_delivery(&follower.inbox, &answer.to_string(), name)?;
            Ok(Outcome::Accept(follower))
        }
        FollowState::Pending => Ok(Outcome::Done("follow request waits for approval")),
    }
}

/// How long after we learn of a move here its follows are counted as arriving through it.
/// Followers' servers re-follow as soon as they process the `Move` (Mastodon's
/// `MoveWorker`, which also refuses a second move of the account for 7 days).
pub const MOVE_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// Marks `follower` as arrived through a move when one of our actor's `alsoKnownAs`
/// accounts moved here (a `Move` received from it, or its cached document's `movedTo`
/// naming our actor, first seen at most [`MOVE_WINDOW`] ago). The caller passes only new
/// followers. Mastodon's re-follow is a plain `Follow`, so this is the rule: a new
/// follower during the week after the move is counted as brought by it.
fn arrived_through_move(
    site: &OurSite,
    store: &Store,
    name: &str,
    follower_id: &str,
) -> Result<(), StoreError> {
    let ours = site.urls.actor(name);
    for origin in site.aliases_of(name) {
        if origin == follower_id {
            continue;
        }
        let known = match store.account_move(name, MoveDirection::In, origin)? {
            Some(m) => Some(m),
            None => match store.cached_actor(origin)? {
                Some(a) if a.moved_to.as_deref() == Some(ours.as_str()) => {
                    Some(store.record_move(name, MoveDirection::In, origin, &ours)?)
                }
                _ => None,
            },
        };
        let Some(moved) = known else { continue };
        let recent = Utc::now() - moved.moved_at <= MOVE_WINDOW;
        if recent {
            store.record_moved_follower(name, follower_id, origin)?;
            return Ok(());
        }
    }
    Ok(())
}

/// FEP-044f as Mastodon 4.5 answers it (`ActivityPub::Activity::QuoteRequest`): an `Accept`
/// whose `result` is a `QuoteAuthorization` we serve, or a `Reject` when the post is not
/// ours to share (missing) or its policy does not admit the requester. Like a follow's
/// Accept, the answer is queued in the transaction that marks the request seen.
fn quote_request(
    site: &OurSite,
    store: &Store,
    activity: &Activity,
    sender: &RemoteActor,
    object: &str,
    instrument: Option<&str>,
) -> Result<Outcome, StoreError> {
    // Addressed to another server: not ours to answer.
    if !object.starts_with(site.urls.base()) {
        return ignored(format!("{object} is not on this site"));
    }
    let Some(request_id) = activity.id.as_deref() else {
        return ignored("a QuoteRequest without id cannot be answered");
    };
    let Some(quote_id) = instrument else {
        return ignored("a QuoteRequest without instrument names no quoting post");
    };
    // Mastodon's sanity checks: the request and the quoting post are the requester's own.
    if host_of(request_id) != host_of(&sender.id) || host_of(quote_id) != host_of(&sender.id) {
        return ignored(format!(
            "QuoteRequest {request_id:?} or its post {quote_id:?} is not on {}'s server",
            sender.id
        ));
    }
    let request = QuoteRequest {
        id: request_id.to_string(),
        kind: QuoteRequestType::QuoteRequest,
        actor: sender.id.clone(),
        instrument: quote_id.to_string(),
        object: object.to_string(),
    };
    let token = random_token();
    let allowed = site
        .post_quote_policy(object)
        .map(|(name, policy)| {
            let admitted = match policy {
                QuotePolicy::Public => Ok(true),
                QuotePolicy::Followers => store
                    .follower(&name, &sender.id)
                    .map(|f| f.is_some_and(|f| f.state == FollowState::Accepted)),
                QuotePolicy::Nobody => Ok(false),
            };
            admitted.map(|ok| (name, ok))
        })
        .transpose()?;
    let outcome = match allowed {
        Some((name, true)) => {
            let granted = store.authorize_quote(&QuoteAuthorization {
                token,
                request_id: request_id.to_string(),
                actor_id: sender.id.clone(),
                quote_id: quote_id.to_string(),
                post_id: object.to_string(),
                actor_name: name.clone(),
            })?;
            // Per request: the queue takes an activity id once, and a repeated request
            // deserves its own answer (with the same authorization).
            let accept = quote_answer(
                &site.urls,
                &name,
                request,
                &random_token(),
                Some(&granted.token),
            );
            store.enqueue_delivery(&sender.inbox, &accept.to_string(), &name)?;
            "quote request accepted"
        }
        other => {
            let name = other
                .map(|(name, _)| name)
                .or_else(|| site.actor_names.first().cloned())
                .unwrap_or_default();
            let reject = quote_answer(&site.urls, &name, request, &token, None);
            store.enqueue_delivery(&sender.inbox, &reject.to_string(), &name)?;
            "quote request rejected"
        }
    };
    store.cache_actor(sender)?;
    Ok(Outcome::Answered(outcome))
}

/// Our `Accept` of a quote request, with the authorization granted (by its token) as
/// `result`, or our `Reject` of it; `id_token` makes the answer's id.
pub(crate) fn quote_answer(
    urls: &Urls,
    actor_name: &str,
    request: QuoteRequest,
    id_token: &str,
    granted: Option<&str>,
) -> Value {
    let actor = urls.actor(actor_name);
    let (kind, path) = match granted {
        Some(_) => (AnswerType::Accept, "accepts"),
        None => (AnswerType::Reject, "rejects"),
    };
    WithContext::full(Answer {
        id: format!("{actor}#{path}/quote_requests/{id_token}"),
        kind,
        actor,
        to: Some(vec![request.actor.clone()]),
        object: request,
        result: granted.map(|token| urls.quote_authorization(token)),
    })
    .to_value()
}

/// The last segment of an authorization's URL: unguessable, so that the list of quotes
/// cannot be walked.
fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `QuoteAuthorization` document of a granted quote (Mastodon's
/// `QuoteAuthorizationSerializer`).
pub fn quote_authorization_document(site: &OurSite, auth: &QuoteAuthorization) -> Value {
    WithContext::full(Stamp {
        id: site.urls.quote_authorization(&auth.token),
        kind: QuoteAuthorizationType::QuoteAuthorization,
        attributed_to: site.urls.actor(&auth.actor_name),
        interacting_object: auth.quote_id.clone(),
        interaction_target: auth.post_id.clone(),
    })
    .to_value()
}

fn undo(
    site: &OurSite,
    store: &Store,
    actor: &str,
    undone: &Undone,
) -> Result<Outcome, StoreError> {
    let removed = match undone {
        Undone::Follow { actor: Some(a), .. } if a != actor => {
            return ignored(format!("{actor} may not undo a follow by {a}"));
        }
        Undone::Follow { id, object, .. } => {
            match (object.as_deref().map(|o| site.actor_name(o)), id) {
                (Some(Some(name)), _) => store.remove_follower(name, actor)?,
                (_, Some(id)) => store.remove_follow_activity(actor, id)?,
                _ => false,
            }
        }
        Undone::Like { id, object } => unreact(store, actor, id, object, ReactionKind::Like)?,
        Undone::Announce { id, object } => {
            unreact(store, actor, id, object, ReactionKind::Announce)?
        }
        Undone::Block { object } => match object.as_deref().and_then(|o| site.actor_name(o)) {
            Some(name) => store.remove_remote_block(actor, name)?,
            None => false,
        },
        Undone::Reference(id) => {
            store.remove_follow_activity(actor, id)? || store.remove_reaction(id, actor)?
        }
        Undone::Other => return ignored("Undo of an activity we do not keep"),
    };
    if removed {
        Ok(Outcome::Done("undone"))
    } else {
        ignored("Undo of nothing we have")
    }
}

fn unreact(
    store: &Store,
    actor: &str,
    id: &Option<String>,
    object: &Option<String>,
    kind: ReactionKind,
) -> Result<bool, StoreError> {
    if let Some(id) = id {
        if store.remove_reaction(id, actor)? {
            return Ok(true);
        }
    }
    match object {
        Some(object) => store.remove_reaction_of(actor, object, kind),
        None => Ok(false),
    }
}

fn react(
    site: &OurSite,
    store: &Store,
    activity: &Activity,
    object: &str,
    kind: ReactionKind,
) -> Result<Outcome, StoreError> {
    if !site.is_our_post(object) {
        return ignored(format!("{object} is none of our posts"));
    }
    let Some(id) = &activity.id else {
        return ignored(format!("a {} without id cannot be undone", kind.as_str()));
    };
    // The id is the reaction's key: one on another server could be taken first by someone
    // else and have the real reaction dropped as a duplicate.
    if host_of(id).is_none() || host_of(id) != host_of(&activity.actor) {
        return ignored(format!(
            "{} id {id:?} is not on {}'s server",
            kind.as_str(),
            activity.actor
        ));
    }
    store.add_reaction(id, &activity.actor, object, kind)?;
    Ok(Outcome::Done(match kind {
        ReactionKind::Like => "like recorded",
        ReactionKind::Announce => "boost recorded",
    }))
}

/// The object is the actor's own and lives on the actor's server (Mastodon's origin check).
fn authored_by(note: &Note, actor: &str) -> bool {
    // The id becomes a link on the page when the note has no `url`: only http(s).
    let web_id = note.id.starts_with("https://") || note.id.starts_with("http://");
    web_id && note.attributed_to.as_deref() == Some(actor) && host_of(&note.id) == host_of(actor)
}

/// Sanitized HTML of a reply; a content warning goes first, in bold.
fn reply_html(note: &Note) -> String {
    let warning = note
        .summary
        .as_deref()
        .map(|s| format!("<p><strong>{}</strong></p>", escape_html(s)))
        .unwrap_or_default();
    sanitize_html(&format!("{warning}{}", note.content))
}

fn create(
    site: &OurSite,
    store: &Store,
    sender: &RemoteActor,
    note: &Note,
) -> Result<Outcome, StoreError> {
    if !authored_by(note, &sender.id) {
        return ignored(format!("{} is not {}'s own object", note.id, sender.id));
    }
    if !note.public {
        return ignored(format!("{} is not public", note.id));
    }
    let quoted = match note.quote.as_deref() {
        Some(post) if site.is_our_post(post) => Some(quote(site, store, sender, note, post)?),
        _ => None,
    };
    let Some(parent) = note.in_reply_to.as_deref() else {
        if let Some(outcome) = quoted {
            return Ok(outcome);
        }
        return ignored(format!("{} answers nothing", note.id));
    };
    let root = if site.is_our_post(parent) {
        parent.to_string()
    } else {
        match store.reply_root(parent)? {
            Some(root) => root,
            None => return ignored(format!("{parent} is none of our posts or their replies")),
        }
    };
    let reply = Reply {
        id: note.id.clone(),
        url: note
            .url
            .clone()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .unwrap_or_else(|| note.id.clone()),
        in_reply_to: parent.to_string(),
        author_id: sender.id.clone(),
        author_name: sender.name.clone(),
        author_handle: sender.handle.clone(),
        author_url: sender.url.clone(),
        author_avatar: sender.avatar.clone(),
        content: reply_html(note),
        published: note.published.unwrap_or_else(Utc::now),
        depth: 0,
    };
    let state = if site.approve_replies {
        ReplyState::Pending
    } else {
        ReplyState::Visible
    };
    if store.insert_reply(&NewReply {
        reply: &reply,
        root_id: &root,
        state,
    })? {
        Ok(Outcome::Done(match state {
            ReplyState::Pending => "reply stored, waiting for approval",
            _ => "reply stored",
        }))
    } else {
        ignored(format!("{} is already stored", note.id))
    }
}

/// A quote of our post `post`: kept (shown as "quoted by") when we authorized exactly this
/// post of this actor to quote it, and the stamp it shows, if any, is ours for it.
fn quote(
    site: &OurSite,
    store: &Store,
    sender: &RemoteActor,
    note: &Note,
    post: &str,
) -> Result<Outcome, StoreError> {
    let Some(auth) = store.quote_authorization_for(&note.id, post, &sender.id)? else {
        return ignored(format!(
            "{} quotes {post} without our authorization",
            note.id
        ));
    };
    let stamp = site.urls.quote_authorization(&auth.token);
    if note
        .quote_authorization
        .as_deref()
        .is_some_and(|shown| shown != stamp)
    {
        return ignored(format!("{} shows another stamp than {stamp}", note.id));
    }
    let url = note
        .url
        .clone()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .unwrap_or_else(|| note.id.clone());
    if store.add_received_quote(&auth, &url)? {
        Ok(Outcome::Done("quote recorded"))
    } else {
        ignored(format!("{} is already recorded", note.id))
    }
}

/// How we answer a follow request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowAnswer {
    Accept,
    Reject,
}

/// The `Accept` or `Reject` of a follower's `Follow`, from the followed actor. Its id is
/// derived from the Follow's, so answering the same Follow twice sends the same activity.
pub fn follow_answer(urls: &Urls, follower: &Follower, answer: FollowAnswer) -> Value {
    use sha2::Digest;
    let our_actor = urls.actor(&follower.actor_name);
    let (kind, path) = match answer {
        FollowAnswer::Accept => (AnswerType::Accept, "accepts"),
        FollowAnswer::Reject => (AnswerType::Reject, "rejects"),
    };
    let digest = sha2::Sha256::digest(follower.follow_activity_id.as_bytes());
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    WithContext::activitystreams(Answer {
        id: format!("{our_actor}#{path}/follows/{tag}"),
        kind,
        actor: our_actor.clone(),
        to: None,
        object: Follow {
            id: follower.follow_activity_id.clone(),
            kind: FollowType::Follow,
            actor: follower.follower_id.clone(),
            object: our_actor,
        },
        result: None,
    })
    .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReplyState;
    use serde_json::json;
    use std::path::Path;

    const ALICE: &str = "https://m.example/users/alice";
    const BLOG: &str = "https://blog.example/ap/users/blog.json";
    const POST: &str = "https://blog.example/ap/posts/a.json";

    fn site(extra: &str) -> OurSite {
        let config = SiteConfig::parse(
            &format!(
                "title = \"T\"\nbase_url = \"https://blog.example\"\n\
                 [[authors]]\nid = \"ann\"\nname = \"Ann\"\n{extra}"
            ),
            Path::new("config.toml"),
        )
        .unwrap();
        OurSite::new(&config, None)
    }

    fn alice() -> RemoteActor {
        crate::store::test_actor(ALICE)
    }

    fn run(site: &OurSite, store: &Store, json: Value) -> Outcome {
        run_as(site, store, json, ALICE)
    }

    /// Applies `json` as sent by `who`, whose key signed it.
    fn run_as(site: &OurSite, store: &Store, json: Value, who: &str) -> Outcome {
        let activity = Activity::parse(&json).unwrap();
        let sender = crate::store::test_actor(who);
        apply(site, store, &activity, &sender, None, &[]).unwrap()
    }

    fn note(id: &str, parent: &str) -> Value {
        json!({
            "id": id, "type": "Note", "attributedTo": ALICE, "inReplyTo": parent,
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
            "content": "<p>Hello <script>x</script><b>there</b></p>",
            "published": "2026-02-01T10:00:00Z", "url": format!("{id}/html"),
        })
    }

    fn create(id: &str, object: Value) -> Value {
        json!({ "id": id, "type": "Create", "actor": ALICE, "object": object })
    }

    #[test]
    fn knows_our_actors_and_posts() {
        let s = site("");
        assert_eq!(s.actor_name(BLOG), Some("blog"));
        assert_eq!(
            s.actor_name("https://blog.example/ap/users/ann.json"),
            Some("ann")
        );
        assert_eq!(s.actor_name("https://blog.example/ap/users/zed.json"), None);
        assert!(s.is_our_post(POST));
        assert!(s.is_our_post("https://blog.example/ap/2026/01/a.json"));
        assert!(!s.is_our_post(BLOG));
        assert!(!s.is_our_post("https://blog.example.evil/ap/posts/a.json"));
        assert!(!s.is_our_post("https://blog.example/ap/posts/a.json?x=1"));
        assert!(!s.is_our_post("https://blog.example/posts/a/"));
    }

    #[test]
    fn with_the_built_site_a_post_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ap/posts")).unwrap();
        std::fs::write(dir.path().join("ap/posts/a.json"), "{}").unwrap();
        let s = OurSite {
            public_dir: Some(dir.path().to_path_buf()),
            ..site("")
        };
        assert!(s.is_our_post(POST));
        assert!(!s.is_our_post("https://blog.example/ap/posts/b.json"));
    }

    #[test]
    fn follow_is_accepted_or_waits_for_approval() {
        let store = Store::open_in_memory().unwrap();
        let follow = json!({ "id": "https://m.example/f/1", "type": "Follow", "actor": ALICE, "object": BLOG });
        let Outcome::Accept(f) = run(&site(""), &store, follow.clone()) else {
            panic!("not accepted")
        };
        assert_eq!(f.actor_name, "blog");
        assert_eq!(f.inbox, alice().inbox);
        assert_eq!(store.cached_actor(ALICE).unwrap(), Some(alice()));

        let store = Store::open_in_memory().unwrap();
        let manual = site("[fediverse]\nmanually_approves_followers = true\n");
        assert_eq!(
            run(&manual, &store, follow),
            Outcome::Done("follow request waits for approval")
        );
        assert_eq!(
            store.followers(Some(FollowState::Pending)).unwrap().len(),
            1
        );
        assert!(matches!(
            run(
                &manual,
                &store,
                json!({ "id": "f2", "type": "Follow", "actor": ALICE, "object": "https://blog.example/ap/users/nobody.json" })
            ),
            Outcome::Ignored(_)
        ));
    }

    #[test]
    fn a_follow_commits_with_its_accept_or_not_at_all() {
        let store = Store::open_in_memory().unwrap();
        let follow = json!({ "id": "https://m.example/f/1", "type": "Follow", "actor": ALICE, "object": BLOG });
        let activity = Activity::parse(&follow).unwrap();
        store
            .with_conn(|c| {
                c.execute_batch(
                    "CREATE TRIGGER fault BEFORE INSERT ON deliveries \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END;",
                )
            })
            .unwrap();
        assert!(apply(&site(""), &store, &activity, &alice(), None, &[]).is_err());
        // Neither the follower nor the seen mark survived the failed Accept.
        assert!(store.followers(None).unwrap().is_empty());
        store
            .with_conn(|c| c.execute_batch("DROP TRIGGER fault"))
            .unwrap();
        let retried = apply(&site(""), &store, &activity, &alice(), None, &[]).unwrap();
        assert!(matches!(retried, Outcome::Accept(_)), "{retried:?}");
        assert_eq!(store.followers(None).unwrap().len(), 1);
        assert_eq!(store.queue_counts(i64::MAX).unwrap().pending(), 1);
        assert!(matches!(
            apply(&site(""), &store, &activity, &alice(), None, &[]).unwrap(),
            Outcome::Ignored(_)
        ));
    }

    #[test]
    fn a_refreshed_actor_is_cached_even_when_the_activity_was_seen() {
        let store = Store::open_in_memory().unwrap();
        let like = json!({ "id": "https://m.example/l/1", "type": "Like", "actor": ALICE, "object": POST });
        let activity = Activity::parse(&like).unwrap();
        assert!(matches!(
            apply(&site(""), &store, &activity, &alice(), None, &[]).unwrap(),
            Outcome::Done(_)
        ));
        // The same Like again (another replica's copy), after the sender rotated its key.
        let mut rotated = alice();
        rotated.public_key_pem = "-----BEGIN PUBLIC KEY-----\nrotated\n".into();
        let again = apply(&site(""), &store, &activity, &rotated, None, &[&rotated]).unwrap();
        assert!(matches!(again, Outcome::Ignored(_)), "{again:?}");
        let cached = store.cached_actor(ALICE).unwrap().unwrap();
        assert_eq!(cached.public_key_pem, rotated.public_key_pem);
        assert_eq!(store.post_interactions(POST).unwrap().likes.len(), 1);
    }

    #[test]
    fn undo_follow_by_embedded_object_or_id() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        let follow = json!({ "id": "https://m.example/f/1", "type": "Follow", "actor": ALICE, "object": BLOG });
        run(&s, &store, follow.clone());
        run(
            &s,
            &store,
            json!({ "id": "u1", "type": "Undo", "actor": ALICE, "object": follow }),
        );
        assert!(store.followers(None).unwrap().is_empty());
        run(
            &s,
            &store,
            json!({ "id": "https://m.example/f/2", "type": "Follow", "actor": ALICE, "object": BLOG }),
        );
        run(
            &s,
            &store,
            json!({ "id": "u2", "type": "Undo", "actor": ALICE, "object": "https://m.example/f/2" }),
        );
        assert!(store.followers(None).unwrap().is_empty());
    }

    #[test]
    fn replies_are_sanitized_threaded_and_only_public() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        assert_eq!(
            run(
                &s,
                &store,
                create("c1", note("https://m.example/n/1", POST))
            ),
            Outcome::Done("reply stored")
        );
        run(
            &s,
            &store,
            create("c2", note("https://m.example/n/2", "https://m.example/n/1")),
        );
        let mut private = note("https://m.example/n/3", POST);
        private["to"] = json!([BLOG]);
        assert!(matches!(
            run(&s, &store, create("c3", private)),
            Outcome::Ignored(_)
        ));
        assert!(matches!(
            run(
                &s,
                &store,
                create(
                    "c4",
                    note("https://m.example/n/4", "https://else.example/x")
                )
            ),
            Outcome::Ignored(_)
        ));
        let mut forged = note("https://other.example/n/5", POST);
        forged["attributedTo"] = json!(ALICE);
        assert!(matches!(
            run(&s, &store, create("c5", forged)),
            Outcome::Ignored(_)
        ));

        let found = store.post_interactions(POST).unwrap();
        let ids: Vec<(&str, usize)> = found
            .replies
            .iter()
            .map(|r| (r.id.as_str(), r.depth))
            .collect();
        assert_eq!(
            ids,
            vec![("https://m.example/n/1", 0), ("https://m.example/n/2", 1)]
        );
        let first = &found.replies[0];
        assert_eq!(first.content, "<p>Hello <b>there</b></p>");
        assert_eq!(first.url, "https://m.example/n/1/html");
        assert_eq!(first.author_handle, alice().handle);
        assert_eq!(
            store
                .reply_root("https://m.example/n/2")
                .unwrap()
                .as_deref(),
            Some(POST)
        );
    }

    #[test]
    fn approval_mode_keeps_replies_pending() {
        let store = Store::open_in_memory().unwrap();
        let s = site("[inbox]\napprove_replies = true\n");
        run(
            &s,
            &store,
            create("c1", note("https://m.example/n/1", POST)),
        );
        assert!(store.post_interactions(POST).unwrap().replies.is_empty());
        assert_eq!(store.replies(Some(ReplyState::Pending)).unwrap().len(), 1);
    }

    #[test]
    fn update_and_delete_only_by_the_author() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        run(
            &s,
            &store,
            create("c1", note("https://m.example/n/1", POST)),
        );
        let mut edited = note("https://m.example/n/1", POST);
        edited["content"] = json!("<p>Edited</p>");
        edited["updated"] = json!("2026-02-01T11:00:00Z");
        let update = json!({ "id": "up1", "type": "Update", "actor": ALICE, "object": edited });
        assert_eq!(run(&s, &store, update), Outcome::Done("reply updated"));
        assert_eq!(
            store.post_interactions(POST).unwrap().replies[0].content,
            "<p>Edited</p>"
        );
        let mallory = Activity::parse(&json!({
            "id": "d0", "type": "Delete", "actor": "https://m.example/users/mallory",
            "object": { "id": "https://m.example/n/1", "type": "Tombstone" }
        }))
        .unwrap();
        let outcome = apply(
            &s,
            &store,
            &mallory,
            &crate::store::test_actor("https://m.example/users/mallory"),
            None,
            &[],
        )
        .unwrap();
        assert!(matches!(outcome, Outcome::Ignored(_)));
        run(
            &s,
            &store,
            json!({ "id": "d1", "type": "Delete", "actor": ALICE, "object": { "id": "https://m.example/n/1", "type": "Tombstone" } }),
        );
        assert!(store.post_interactions(POST).unwrap().replies.is_empty());
    }

    #[test]
    fn likes_boosts_and_their_undo() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        let like = json!({ "id": "https://m.example/l/1", "type": "Like", "actor": ALICE, "object": POST });
        run(&s, &store, like.clone());
        run(
            &s,
            &store,
            json!({ "id": "https://m.example/b/1", "type": "Announce", "actor": ALICE, "object": POST }),
        );
        assert!(matches!(
            run(
                &s,
                &store,
                json!({ "id": "https://m.example/l/2", "type": "Like", "actor": ALICE, "object": "https://else.example/p" })
            ),
            Outcome::Ignored(_)
        ));
        let found = store.post_interactions(POST).unwrap();
        assert_eq!((found.likes.len(), found.boosts.len()), (1, 1));
        run(
            &s,
            &store,
            json!({ "id": "u1", "type": "Undo", "actor": ALICE, "object": like }),
        );
        run(
            &s,
            &store,
            json!({ "id": "u2", "type": "Undo", "actor": ALICE, "object": { "type": "Announce", "object": POST } }),
        );
        assert_eq!(store.post_interactions(POST).unwrap(), Default::default());
    }

    #[test]
    fn a_reaction_id_on_another_server_is_not_taken() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        // Mallory's server names its Like with an id of Alice's server first...
        let squat = json!({ "id": "https://m.example/l/9", "type": "Like",
            "actor": "https://evil.example/users/mallory", "object": POST });
        let activity = Activity::parse(&squat).unwrap();
        let mallory = crate::store::test_actor("https://evil.example/users/mallory");
        let outcome = apply(&s, &store, &activity, &mallory, None, &[]).unwrap();
        assert!(matches!(outcome, Outcome::Ignored(_)), "{outcome:?}");
        // ...and Alice's real Like with that id still counts.
        let like = json!({ "id": "https://m.example/l/9", "type": "Like", "actor": ALICE, "object": POST });
        assert_eq!(run(&s, &store, like), Outcome::Done("like recorded"));
        assert_eq!(store.post_interactions(POST).unwrap().likes.len(), 1);
    }

    #[test]
    fn a_repeated_activity_is_applied_once() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        let like = json!({ "id": "https://m.example/l/1", "type": "Like", "actor": ALICE, "object": POST });
        run(&s, &store, like.clone());
        run(
            &s,
            &store,
            json!({ "id": "u1", "type": "Undo", "actor": ALICE, "object": like.clone() }),
        );
        assert!(matches!(run(&s, &store, like), Outcome::Ignored(_)));
        assert!(store.post_interactions(POST).unwrap().likes.is_empty());
    }

    #[test]
    fn a_reply_whose_id_is_no_web_address_is_not_stored() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        let mut object = note("javascript://m.example/%0Aalert(1)", POST);
        object.as_object_mut().unwrap().remove("url");
        let outcome = run(&s, &store, create("https://m.example/c/js", object));
        assert!(matches!(outcome, Outcome::Ignored(_)));
        assert!(store.post_interactions(POST).unwrap().replies.is_empty());
    }

    #[test]
    fn an_activity_id_on_another_server_cannot_shadow_the_real_one() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        run(
            &s,
            &store,
            create("https://m.example/c/1", note("https://m.example/n/1", POST)),
        );
        // Someone else's server sends an activity carrying Alice's future Delete id.
        let evil = "https://evil.example/users/x";
        let forged: Value = json!({
            "id": "https://m.example/n/1#delete", "type": "Foo", "actor": evil,
        });
        let activity = Activity::parse(&forged).unwrap();
        let mut sender = alice();
        sender.id = evil.into();
        apply(&s, &store, &activity, &sender, None, &[]).unwrap();
        let delete = json!({
            "id": "https://m.example/n/1#delete", "type": "Delete", "actor": ALICE,
            "object": { "id": "https://m.example/n/1", "type": "Tombstone" },
        });
        assert!(matches!(run(&s, &store, delete), Outcome::Done(_)));
        assert!(store.post_interactions(POST).unwrap().replies.is_empty());
    }

    #[test]
    fn an_actor_update_may_not_claim_a_key_on_another_server() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        let fixture = include_str!("../../tests/fixtures/mastodon_actor.json")
            .replace("{{BASE}}", "https://m.example")
            .replace("{{USER}}", "alice");
        let mut doc = serde_json::from_str::<Value>(&fixture).unwrap();
        doc["id"] = json!(ALICE);
        doc["publicKey"]["owner"] = json!(ALICE);
        doc["publicKey"]["id"] = json!("https://victim.example/users/bob#main-key");
        let update = json!({ "id": "https://m.example/u/1", "type": "Update", "actor": ALICE, "object": doc });
        assert!(matches!(
            run(&s, &store, update.clone()),
            Outcome::Ignored(_)
        ));
        assert!(store
            .cached_actor_by_key("https://victim.example/users/bob#main-key")
            .unwrap()
            .is_none());
        // The same document with its own key is taken.
        let mut own = update.clone();
        own["id"] = json!("https://m.example/u/2");
        own["object"]["publicKey"]["id"] = json!(format!("{ALICE}#main-key"));
        let outcome = run(&s, &store, own);
        assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    }

    #[test]
    fn deleting_an_actor_removes_its_traces() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        run(
            &s,
            &store,
            json!({ "id": "f1", "type": "Follow", "actor": ALICE, "object": BLOG }),
        );
        run(
            &s,
            &store,
            create("c1", note("https://m.example/n/1", POST)),
        );
        run(
            &s,
            &store,
            json!({ "id": "https://m.example/l1", "type": "Like", "actor": ALICE, "object": POST }),
        );
        run(
            &s,
            &store,
            json!({ "id": "d1", "type": "Delete", "actor": ALICE, "object": ALICE }),
        );
        assert!(store.followers(None).unwrap().is_empty());
        assert_eq!(store.post_interactions(POST).unwrap(), Default::default());
        assert_eq!(store.cached_actor(ALICE).unwrap(), None);
    }

    #[test]
    fn move_needs_the_new_account_to_claim_the_old() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        run(
            &s,
            &store,
            json!({ "id": "f1", "type": "Follow", "actor": ALICE, "object": BLOG }),
        );
        let new_id = "https://new.example/users/alice";
        let mv = Activity::parse(&json!({ "id": "mv1", "type": "Move", "actor": ALICE, "object": ALICE, "target": new_id })).unwrap();
        let mut stranger = crate::store::test_actor(new_id);
        stranger.also_known_as = vec![];
        assert!(matches!(
            apply(&s, &store, &mv, &alice(), Some(&stranger), &[]).unwrap(),
            Outcome::Ignored(_)
        ));
        let mut new = stranger.clone();
        new.also_known_as = vec![ALICE.into()];
        let mv = Activity {
            id: Some("mv2".into()),
            ..mv
        };
        assert_eq!(
            apply(&s, &store, &mv, &alice(), Some(&new), &[]).unwrap(),
            Outcome::Done("follows moved to the new account")
        );
        let follower = store.follower("blog", new_id).unwrap().unwrap();
        assert_eq!(follower.inbox, new.inbox);
        assert_eq!(store.follower("blog", ALICE).unwrap(), None);
    }

    #[test]
    fn follows_after_our_alias_moved_here_are_counted() {
        const OLD: &str = "https://old.example/users/me";
        let store = Store::open_in_memory().unwrap();
        let s = site(&format!("[fediverse]\nalso_known_as = [\"{OLD}\"]\n"));
        let mut old = crate::store::test_actor(OLD);
        store.cache_actor(&old).unwrap();
        let follow = |n: u32, who: &str| {
            let follow = json!({
                "id": format!("{who}#follows/{n}"), "type": "Follow", "actor": who, "object": BLOG
            });
            run_as(&s, &store, follow, who)
        };
        // Before the move: an ordinary follower.
        follow(1, "https://m.example/users/early");
        assert_eq!(store.moved_follower_counts().unwrap(), vec![]);
        old.moved_to = Some(BLOG.into());
        store.cache_actor(&old).unwrap();
        follow(2, "https://m.example/users/a");
        follow(3, "https://n.example/users/b");
        // The early follower's server sends its Follow again: it was here before.
        follow(4, "https://m.example/users/early");
        let counts = store.moved_follower_counts().unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].origin.as_str(), counts[0].followers), (OLD, 2));
    }

    #[test]
    fn a_move_to_us_counts_only_from_an_alias() {
        const OLD: &str = "https://old.example/users/me";
        let store = Store::open_in_memory().unwrap();
        let s = site(&format!("[fediverse]\nalso_known_as = [\"{OLD}\"]\n"));
        let mv = |who: &str| {
            let activity = json!({
                "id": format!("{who}#moves/1"), "type": "Move", "actor": who, "object": who, "target": BLOG
            });
            run_as(&s, &store, activity, who)
        };
        assert!(matches!(
            mv("https://evil.example/users/x"),
            Outcome::Ignored(_)
        ));
        assert_eq!(mv(OLD), Outcome::Done("move of our alias to us recorded"));
        assert!(store
            .account_move("blog", MoveDirection::In, OLD)
            .unwrap()
            .is_some());
    }

    #[test]
    fn block_and_flag_are_recorded() {
        let store = Store::open_in_memory().unwrap();
        let s = site("");
        run(
            &s,
            &store,
            json!({ "id": "f1", "type": "Follow", "actor": ALICE, "object": BLOG }),
        );
        run(
            &s,
            &store,
            json!({ "id": "b1", "type": "Block", "actor": ALICE, "object": BLOG }),
        );
        assert!(store.followers(None).unwrap().is_empty());
        assert_eq!(
            store.remote_blocks().unwrap(),
            vec![(ALICE.to_string(), "blog".to_string())]
        );
        run(
            &s,
            &store,
            json!({ "id": "fl1", "type": "Flag", "actor": ALICE, "object": [BLOG, POST], "content": "spam" }),
        );
        let flags = store.flags().unwrap();
        assert_eq!(flags[0].objects, vec![BLOG.to_string(), POST.to_string()]);
    }

    #[test]
    fn accept_names_the_follow_it_answers() {
        let s = site("");
        let follower = Follower {
            id: 1,
            actor_name: "ann".into(),
            follower_id: ALICE.into(),
            inbox: "i".into(),
            shared_inbox: None,
            follow_activity_id: "https://m.example/f/1".into(),
            state: FollowState::Accepted,
            followed_at: chrono::DateTime::default(),
        };
        let accept = follow_answer(&s.urls, &follower, FollowAnswer::Accept);
        assert_eq!(accept["type"], "Accept");
        assert_eq!(accept["actor"], "https://blog.example/ap/users/ann.json");
        assert_eq!(accept["object"]["id"], "https://m.example/f/1");
        assert_eq!(accept["object"]["actor"], ALICE);
        assert!(accept["id"]
            .as_str()
            .unwrap()
            .starts_with("https://blog.example/ap/users/ann.json#accepts/follows/"));
        let reject = follow_answer(&s.urls, &follower, FollowAnswer::Reject);
        assert_eq!(reject["type"], "Reject");
        assert_ne!(reject["id"], accept["id"]);
    }
}
