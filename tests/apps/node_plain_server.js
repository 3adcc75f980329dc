// A Node.js HTTP server with no signal handlers of its own: Node itself
// puts one-shot (SA_RESETHAND) handlers on SIGINT and SIGTERM that restore
// the terminal and raise the signal again. Answers GET /r?n=I.
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
  .listen(port, "127.0.0.1", () => console.log("listening"));
