// The blog's HTTPS front: terminates TLS on 127.0.0.1 and forwards every request, Host header
// included, to `relais inbox`, as the static host's proxy does in production.
//
// It exists because WebFinger is HTTPS-only: Fedify (like Mastodon) resolves
// `@blog@127.0.0.1:PORT` at `https://127.0.0.1:PORT/.well-known/webfinger`, whatever
// `allowPrivateAddress` says. With a real TLS front the peer runs its ordinary lookup code;
// the certificate is a loopback-only test certificate that the peer trusts through
// NODE_EXTRA_CA_CERTS.

import { request as httpRequest } from "node:http";
import { createServer } from "node:https";

/**
 * Starts the front on an ephemeral loopback port.
 * @param {{ upstreamHost: string, upstreamPort: number, cert: Buffer, key: Buffer }} options
 * @returns {Promise<number>} the port it listens on
 */
export function startTlsFront({ upstreamHost, upstreamPort, cert, key }) {
  const server = createServer({ cert, key }, (req, res) => {
    const upstream = httpRequest(
      {
        host: upstreamHost,
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, "x-forwarded-proto": "https" },
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstream.on("error", (error) => {
      process.stderr.write(`front: ${req.method} ${req.url}: upstream error: ${error}\n`);
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
      }
      res.end(`relais inbox unreachable: ${error.message}`);
    });
    req.pipe(upstream);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}
