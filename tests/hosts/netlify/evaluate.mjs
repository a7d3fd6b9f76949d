// Evaluates requests against a built site's `_redirects` and `_headers` with Netlify's own
// engines: @netlify/redirect-parser and @netlify/headers-parser parse the files as a deploy
// does, netlify-redirector (Netlify's redirect engine in WebAssembly) picks the rule.
//
// Usage: node evaluate.mjs PUBLIC_DIR URL... ; prints one JSON object:
// { redirectErrors, headerErrors, results: [{ url, file, rule, status, to, headers }] }
// `file` is the site path served from PUBLIC_DIR (after a 200 rewrite), `to` a proxy target.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { parseAllRedirects } from '@netlify/redirect-parser';
import { parseAllHeaders } from '@netlify/headers-parser';

const require = createRequire(import.meta.url);
const redirector = require('netlify-redirector');

const [publicDir, ...urls] = process.argv.slice(2);

const parsedRedirects = await parseAllRedirects({
  redirectsFiles: [join(publicDir, '_redirects')],
  configRedirects: [],
  minimal: false,
});
const parsedHeaders = await parseAllHeaders({
  headersFiles: [join(publicDir, '_headers')],
  configHeaders: [],
  minimal: false,
});

// netlify-cli's shape for the engine: `from` is `origin`, `query` is `params`.
const rules = parsedRedirects.redirects.map(({ from, query, ...rule }) => ({
  ...rule,
  origin: from,
  params: query,
}));
const matcher = await redirector.parseJSON(JSON.stringify(rules), {});

// A file Netlify would serve for this path, as its static server finds it.
const fileFor = (path) => {
  const candidates = path.endsWith('/') ? [path + 'index.html'] : [path, path + '/index.html'];
  return candidates.find((p) => {
    const full = join(publicDir, decodeURIComponent(p));
    return existsSync(full) && statSync(full).isFile();
  });
};

const headersFor = (path) => {
  const out = {};
  for (const rule of parsedHeaders.headers) {
    if (rule.forRegExp.test(path)) Object.assign(out, rule.values);
  }
  return out;
};

const results = urls.map((raw) => {
  const url = new URL(raw);
  const path = decodeURIComponent(url.pathname);
  const shadowing = fileFor(path);
  const match = matcher.match({
    scheme: url.protocol.slice(0, -1),
    host: url.hostname,
    path,
    query: url.search.slice(1),
    getHeader: () => '',
    getCookie: () => '',
  });
  // An existing file wins over a rule that is not forced.
  if (shadowing && !(match && match.force)) {
    return { url: raw, file: shadowing, rule: null, status: 200, to: null, headers: headersFor(path) };
  }
  if (!match || match.force404) {
    return { url: raw, file: null, rule: null, status: 404, to: null, headers: {} };
  }
  const rule = `${match.from} -> ${match.to} ${match.status}`;
  if (/^https?:\/\//.test(match.to)) {
    return { url: raw, file: null, rule, status: match.status, to: match.to, headers: {} };
  }
  const target = new URL(match.to, url);
  const file = match.status === 200 ? fileFor(decodeURIComponent(target.pathname)) : null;
  return {
    url: raw,
    file: file ?? null,
    rule,
    status: file || match.status !== 200 ? match.status : 404,
    to: match.to,
    // Which path's header rules Netlify applies to a rewrite is not shown by these engines:
    // report both, the test requires the content type from each.
    headers: headersFor(path),
    targetHeaders: file ? headersFor(file) : {},
  };
});

console.log(JSON.stringify({
  redirectErrors: parsedRedirects.errors.map((e) => e.message),
  headerErrors: parsedHeaders.errors.map((e) => e.message),
  rules: rules.length,
  results,
}, null, 1));
