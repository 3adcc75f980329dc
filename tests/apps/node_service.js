// A Node.js HTTP service: answers every request with a short body.
// argv: PORT [no-handlers]
// With `no-handlers` it sets no signal handler of its own: Node itself
// puts one-shot (SA_RESETHAND) handlers on SIGINT and SIGTERM that restore
// the terminal and raise the signal again.
const http = require("http");
const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("node ok\n");
    });
  })
  .listen(port, "127.0.0.1");
if (process.argv[3] !== "no-handlers") {
  process.on("SIGTERM", () => process.exit(0));
}
