// An event-loop HTTP server in Node.js: for GET /req/N it waits a few
// milliseconds, calls the downstream service at /down/N, waits again and
// answers. Many requests are in flight on its one thread at a time.
// argv: PORT DOWNSTREAM_PORT MODE (agent: a keep-alive http.Agent;
// plain: http.get with the default agent; fetch: the global fetch;
// express: an Express app, from tests/fixtures/node-eventloop, calling
// through the keep-alive agent)
const http = require("http");
const path = require("path");
const [port, downPort, mode] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function down(n) {
  const url = `http://127.0.0.1:${downPort}/down/${n}`;
  if (mode === "fetch") {
    return fetch(url).then((r) => r.text());
  }
  return new Promise((resolve, reject) => {
    const opts = mode === "agent" || mode === "express" ? { agent } : {};
    http
      .get(url, opts, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

// The request N's answer, after the waits and the downstream call.
async function serve(n) {
  await sleep(1 + (Number(n) % 5));
  const body = await down(n);
  await sleep(1 + (Number(n) % 3));
  return `req ${n}: ${body}`;
}

if (mode === "express") {
  const fixture = path.join(__dirname, "..", "fixtures", "node-eventloop");
  const express = require(require.resolve("express", { paths: [fixture] }));
  const app = express();
  app.get("/req/:n(\\d+)", (req, res) => {
    serve(req.params.n).then(
      (text) => res.type("text/plain").send(text),
      (e) => res.status(502).send(String(e))
    );
  });
  app.listen(port, "127.0.0.1");
} else {
  http
    .createServer(async (req, res) => {
      const n = (req.url.match(/^\/req\/(\d+)$/) || [])[1];
      if (n === undefined) {
        res.writeHead(404).end();
        return;
      }
      try {
        const text = await serve(n);
        res.writeHead(200, { "Content-Type": "text/plain" }).end(text);
      } catch (e) {
        res.writeHead(502).end(String(e));
      }
    })
    .listen(port, "127.0.0.1");
}
process.on("SIGTERM", () => process.exit(0));
