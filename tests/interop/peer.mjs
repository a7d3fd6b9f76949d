// A Fedify server with one account, `alice`, used by tests/interop_fedify.rs to check that a
// relais blog interoperates with an ActivityPub implementation that relais did not write.
//
// Fedify runs with its defaults: HTTP signatures of incoming activities are verified, with
// their Digest and Date checks. Only `allowPrivateAddress` is turned on, because every
// server in the test lives on 127.0.0.1.
//
// Usage: node peer.mjs --upstream 127.0.0.1:PORT
//   PORT is where `relais inbox` listens; the peer puts its HTTPS front before it (front.mjs).
// On start the peer prints one JSON line on stdout:
//   {"ready":true,"peer":"http://127.0.0.1:P","blog_origin":"https://127.0.0.1:Q"}
// then waits for commands on its control API (all JSON, under /control/):
//   POST /control/follow   {"handle":"@blog@127.0.0.1:Q"}        WebFinger, fetch actor, Follow
//   POST /control/reply    {"inReplyTo":URL,"content":HTML}      Create(Note) to the post's author
//   POST /control/alias    {"alias":URL}                         the account `home` lists URL in
//                                                                 alsoKnownAs (a move's target)
//   POST /control/replay   {"seq":N,"tamper":BOOL}               inbox request N again, as is
//                                                                 or with its body altered
//   GET  /control/wait?type=T[&object=URL][&contains=TEXT][&after=SEQ]
//                                                                 first matching inbox event
//   GET  /control/log                                             every event and inbox request

import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import {
  Accept,
  Create,
  createFederation,
  Delete,
  Endpoints,
  Follow,
  generateCryptoKeyPair,
  isActor,
  lookupWebFinger,
  MemoryKvStore,
  Mention,
  Move,
  Note,
  Person,
  PUBLIC_COLLECTION,
  Update,
} from "@fedify/fedify";
import { Temporal } from "@js-temporal/polyfill";
import { configure, defaultTextFormatter } from "@logtape/logtape";

import { startTlsFront } from "./front.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const ALICE = "alice";
/** A second account, the target of the blog's move: its `alsoKnownAs` is set by the test. */
const HOME = "home";
const homeAliases = [];
const WAIT_LIMIT_MS = 60_000;

const { values: args } = parseArgs({ options: { upstream: { type: "string" } } });
if (args.upstream == null || !/^127\.0\.0\.1:\d+$/.test(args.upstream)) {
  process.stderr.write("usage: node peer.mjs --upstream 127.0.0.1:PORT\n");
  process.exit(2);
}
const [upstreamHost, upstreamPort] = args.upstream.split(":");

// Fedify explains its rejections (bad signature, unknown key...) in its log; stdout is the
// control channel, so the log goes to stderr.
await configure({
  sinks: { stderr: (record) => process.stderr.write(`peer: ${defaultTextFormatter(record)}`) },
  loggers: [
    { category: "fedify", sinks: ["stderr"], lowestLevel: process.env.PEER_LOG_LEVEL ?? "warning" },
    { category: ["logtape", "meta"], sinks: ["stderr"], lowestLevel: "warning" },
  ],
  contextLocalStorage: new AsyncLocalStorage(),
});

/** Inbox deliveries as they arrived: what the test inspects when an event is missing. */
const inboxLog = [];
/** Activities Fedify verified and handed to an inbox listener. */
const events = [];
const waiters = new Set();
/** The inbox request being handled, so a listener can record which key signed it. */
const currentDelivery = new AsyncLocalStorage();
const notes = new Map();

const httpServer = createServer();
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${httpServer.address().port}`;

const keyPairs = [await generateCryptoKeyPair("RSASSA-PKCS1-v1_5"), await generateCryptoKeyPair("Ed25519")];

const federation = createFederation({
  kv: new MemoryKvStore(),
  origin,
  allowPrivateAddress: true,
});

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== ALICE && identifier !== HOME) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: identifier === ALICE ? "Alice (Fedify)" : "The blog's new home (Fedify)",
      aliases: identifier === HOME ? homeAliases : [],
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      url: ctx.getActorUri(identifier),
      publicKey: keys[0].cryptographicKey,
      assertionMethods: keys.map((k) => k.multikey),
    });
  })
  .mapHandle((_ctx, username) => (username === ALICE || username === HOME ? username : null))
  .setKeyPairsDispatcher((_ctx, identifier) => (identifier === ALICE || identifier === HOME ? keyPairs : []));

federation.setObjectDispatcher(Note, "/notes/{id}", (_ctx, { id }) => notes.get(id) ?? null);

function record(type, activity, object, mentions = []) {
  const event = {
    seq: events.length,
    type,
    id: activity.id?.href ?? null,
    actor: activity.actorId?.href ?? null,
    objectId: activity.objectId?.href ?? object?.id?.href ?? null,
    target: activity.targetId?.href ?? null,
    mentions,
    signedBy: currentDelivery.getStore()?.keyId ?? null,
    deliverySeq: currentDelivery.getStore()?.seq ?? null,
    object: object == null ? null : describeObject(object),
  };
  events.push(event);
  for (const waiter of waiters) waiter();
}

function describeObject(object) {
  return {
    id: object.id?.href ?? null,
    type: object.constructor.name,
    attributedTo: object.attributionId?.href ?? null,
    content: object.content?.toString() ?? null,
    url: object.url?.href ?? null,
    inReplyTo: object.replyTargetId?.href ?? null,
    to: object.toIds.map((u) => u.href),
    cc: object.ccIds.map((u) => u.href),
    published: object.published?.toString() ?? null,
    updated: object.updated?.toString() ?? null,
  };
}

/** The `Mention` tags of an object, as Fedify reads them. */
async function mentionsOf(object) {
  const mentions = [];
  for await (const tag of object.getTags()) {
    if (tag instanceof Mention) mentions.push({ href: tag.href?.href ?? null, name: tag.name?.toString() ?? null });
  }
  return mentions;
}

async function embeddedObject(activity) {
  // Only a full object is worth describing; a bare id is recorded as objectId.
  const object = await activity.getObject();
  return object != null && object.id != null && object.constructor.name !== "Object" ? object : null;
}

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Accept, async (_ctx, accept) => record("Accept", accept, null))
  .on(Create, async (_ctx, create) => {
    const object = await embeddedObject(create);
    record("Create", create, object, object == null ? [] : await mentionsOf(object));
  })
  .on(Move, async (_ctx, move) => record("Move", move, null))
  .on(Update, async (_ctx, update) => record("Update", update, await embeddedObject(update)))
  .on(Delete, async (_ctx, del) => record("Delete", del, null))
  .onError((_ctx, error) => {
    process.stderr.write(`peer: inbox listener error: ${error?.stack ?? error}\n`);
  });

function aliceContext() {
  return federation.createContext(new URL(origin), undefined);
}

async function follow({ handle }) {
  const ctx = aliceContext();
  const acct = `acct:${String(handle).replace(/^@/, "")}`;
  const webfinger = await lookupWebFinger(acct, { allowPrivateAddress: true });
  if (webfinger == null) return [502, { error: `WebFinger lookup of ${acct} failed` }];
  const blog = await ctx.lookupObject(handle);
  if (!isActor(blog)) return [502, { error: `${handle} did not resolve to an actor`, got: blog?.constructor.name ?? null }];
  const key = await blog.getPublicKey();
  const activity = new Follow({
    id: new URL(`${origin}/follows/${randomUUID()}`),
    actor: ctx.getActorUri(ALICE),
    object: blog.id,
  });
  await ctx.sendActivity({ identifier: ALICE }, blog, activity);
  return [
    200,
    {
      webfinger,
      actor: {
        id: blog.id?.href ?? null,
        type: blog.constructor.name,
        preferredUsername: blog.preferredUsername?.toString() ?? null,
        inbox: blog.inboxId?.href ?? null,
        sharedInbox: blog.endpoints?.sharedInbox?.href ?? null,
        publicKeyId: key?.id?.href ?? null,
        publicKeyOwner: key?.ownerId?.href ?? null,
      },
      follow: activity.id.href,
      alice: ctx.getActorUri(ALICE).href,
    },
  ];
}

async function reply({ inReplyTo, content }) {
  const ctx = aliceContext();
  const post = await ctx.lookupObject(inReplyTo);
  if (post == null || post.id == null) return [502, { error: `could not fetch ${inReplyTo}` }];
  const author = await post.getAttribution();
  if (!isActor(author)) return [502, { error: `${inReplyTo} has no actor in attributedTo` }];
  const id = randomUUID();
  const noteId = new URL(`${origin}/notes/${id}`);
  const published = Temporal.Now.instant();
  const note = new Note({
    id: noteId,
    attribution: ctx.getActorUri(ALICE),
    to: PUBLIC_COLLECTION,
    cc: author.id,
    replyTarget: post.id,
    content,
    published,
    url: noteId,
    tags: [new Mention({ href: author.id, name: `@${author.preferredUsername}@${author.id.host}` })],
  });
  notes.set(id, note);
  const create = new Create({
    id: new URL(`${noteId.href}#create`),
    actor: ctx.getActorUri(ALICE),
    to: PUBLIC_COLLECTION,
    cc: author.id,
    object: note,
    published,
  });
  await ctx.sendActivity({ identifier: ALICE }, author, create);
  return [200, { note: noteId.href, create: create.id.href, inReplyTo: post.id.href }];
}

/**
 * Sends a recorded inbox request again, headers and signature unchanged; with `tamper`, one
 * word of its body altered. Untouched, Fedify knows the activity (202); altered, the Digest
 * no longer matches (401).
 */
async function replay({ seq, tamper }) {
  const original = inboxLog[seq];
  if (original == null) return [404, { error: `no inbox request #${seq}` }];
  const body = tamper ? original.body.replace(/"content"\s*:\s*"/, '"content":"tampered ') : original.body;
  if (tamper && body === original.body) return [400, { error: `inbox request #${seq} has no content to alter` }];
  const headers = new Headers(original.headers);
  headers.delete("content-length");
  const response = await federation.fetch(
    new Request(original.url, { method: "POST", headers, body }),
    { contextData: undefined },
  );
  return [200, { status: response.status, body: await response.text() }];
}

function matches(event, query) {
  return (
    event.seq >= Number(query.get("after") ?? 0) &&
    event.type === query.get("type") &&
    (!query.has("object") || event.objectId === query.get("object")) &&
    (!query.has("contains") || (event.object?.content ?? "").includes(query.get("contains")))
  );
}

function wait(query) {
  return new Promise((resolve) => {
    const check = () => {
      const event = events.find((e) => matches(e, query));
      if (event == null) return false;
      finish([200, event]);
      return true;
    };
    const timer = setTimeout(() => finish([504, { error: "no matching event", query: Object.fromEntries(query), ...log() }]), WAIT_LIMIT_MS);
    const finish = (answer) => {
      clearTimeout(timer);
      waiters.delete(check);
      resolve(answer);
    };
    if (!check()) waiters.add(check);
  });
}

function log() {
  return {
    events,
    inbox: inboxLog.map(({ seq, url, status, keyId, activityType, activityId }) => ({ seq, url, status, keyId, activityType, activityId })),
  };
}

async function control(req, url, body) {
  const input = body.length > 0 ? JSON.parse(body) : {};
  switch (`${req.method} ${url.pathname}`) {
    case "POST /control/follow":
      return follow(input);
    case "POST /control/reply":
      return reply(input);
    case "POST /control/alias":
      homeAliases.push(new URL(input.alias));
      return [200, { home: aliceContext().getActorUri(HOME).href, aliases: homeAliases.map((u) => u.href) }];
    case "POST /control/replay":
      return replay(input);
    case "GET /control/wait":
      return wait(url.searchParams);
    case "GET /control/log":
      return [200, log()];
    default:
      return [404, { error: `no control route ${req.method} ${url.pathname}` }];
  }
}

function keyIdOf(signature) {
  return /keyId="([^"]*)"/.exec(signature ?? "")?.[1] ?? null;
}

function summary(body) {
  try {
    const json = JSON.parse(body);
    return { activityType: json.type ?? null, activityId: json.id ?? null };
  } catch {
    return { activityType: null, activityId: null };
  }
}

httpServer.on("request", async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString("utf8");
  const url = new URL(req.url, origin);
  try {
    if (url.pathname.startsWith("/control/")) {
      const [status, answer] = await control(req, url, body);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer));
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    const request = new Request(url, {
      method: req.method,
      headers,
      body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
    });
    let response;
    if (req.method === "POST") {
      const delivery = {
        seq: inboxLog.length,
        url: url.href,
        headers: Object.fromEntries(headers),
        body,
        keyId: keyIdOf(headers.get("signature")),
        status: null,
        ...summary(body),
      };
      inboxLog.push(delivery);
      response = await currentDelivery.run(delivery, () => federation.fetch(request, { contextData: undefined }));
      delivery.status = response.status;
    } else {
      response = await federation.fetch(request, { contextData: undefined });
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (error) {
    process.stderr.write(`peer: ${req.method} ${req.url}: ${error?.stack ?? error}\n`);
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(error?.message ?? error) }));
  }
});

const frontPort = await startTlsFront({
  upstreamHost,
  upstreamPort: Number(upstreamPort),
  cert: readFileSync(join(here, "tls", "cert.pem")),
  key: readFileSync(join(here, "tls", "key.pem")),
});

// The test holds our stdin open; when it goes away, so do we.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ ready: true, peer: origin, blog_origin: `https://127.0.0.1:${frontPort}` })}\n`);
