// A Node.js HTTP service: answers every request with a short body.
// argv: PORT
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
process.on("SIGTERM", () => process.exit(0));
