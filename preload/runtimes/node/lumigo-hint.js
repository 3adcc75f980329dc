// lumigo-run's hint for Node.js, preloaded with NODE_OPTIONS=--require.
//
// Node serves many requests on one thread, so the preload library alone
// cannot tell which inbound request an outbound call belongs to. This
// script follows each inbound request with AsyncLocalStorage (the store is
// the fd the request arrived on) and, when an outbound HTTP request is about
// to write its head, tells the library "the head on fd F belongs to the
// request on fd G" by a write of 16 bytes to fd 2147483647: a number that is
// never open, so without the library the write fails with EBADF and the
// script stops trying; with it, the library takes the message without a
// system call. Only the parent is chosen this way: parsing and spans stay
// in the library. Anything that fails here fails silently.
"use strict";
(function lumigoHint() {
  try {
    const HINT_FD = 2147483647;
    const fs = require("fs");
    const dc = require("diagnostics_channel");
    const { AsyncLocalStorage } = require("async_hooks");
    if (typeof AsyncLocalStorage !== "function" || typeof dc.channel !== "function") {
      return;
    }
    const als = new AsyncLocalStorage();
    const msg = Buffer.alloc(16);
    msg.write("\0LUMIGO\x01", 0, "latin1");
    let on = true;
    // Channels are kept referenced: older Node versions drop unreferenced ones.
    const kept = [];
    const subscribe = (name, fn) => {
      const guarded = (message) => {
        try {
          if (on) fn(message);
        } catch (_) {
          // A hint is never worth an exception in the app.
        }
      };
      const ch = dc.channel(name);
      kept.push(ch, guarded);
      ch.subscribe(guarded);
    };
    const fdOf = (socket) => {
      const handle = socket && socket._handle;
      return handle && typeof handle.fd === "number" ? handle.fd : -1;
    };
    const hint = (outFd, inFd) => {
      if (!on || outFd < 0 || inFd < 0) return;
      msg.writeInt32LE(outFd, 8);
      msg.writeInt32LE(inFd, 12);
      try {
        if (fs.writeSync(HINT_FD, msg) !== 16) on = false;
      } catch (_) {
        on = false; // No library here (EBADF): stop.
      }
    };

    subscribe("http.server.request.start", ({ socket }) => {
      const fd = fdOf(socket);
      if (fd >= 0) als.enterWith(fd);
    });

    // http.request / http.get: a socket is handed to the request (its
    // head is written on the next tick, or once a new socket connects).
    // Node 20 publishes no channel before the head is written
    // ('http.client.request.start' comes after), so the one method that
    // hands the socket over is wrapped.
    const ClientRequest = require("http").ClientRequest;
    const onSocket = ClientRequest && ClientRequest.prototype.onSocket;
    if (typeof onSocket === "function") {
      ClientRequest.prototype.onSocket = function lumigoOnSocket(socket, err) {
        try {
          const inFd = on ? als.getStore() : undefined;
          if (inFd !== undefined && socket) {
            const fd = fdOf(socket);
            if (fd >= 0) {
              hint(fd, inFd);
            } else if (typeof socket.once === "function") {
              socket.once("connect", () => {
                try {
                  hint(fdOf(socket), inFd);
                } catch (_) {
                  // Silent, as below.
                }
              });
            }
          }
        } catch (_) {
          // A hint is never worth an exception in the app.
        }
        return onSocket.apply(this, arguments);
      };
    }

    // fetch (undici): the request is made in the caller's context; its head
    // is written right after 'sendHeaders', on the socket that event names.
    const undiciRequests = new WeakMap();
    subscribe("undici:request:create", ({ request }) => {
      const inFd = als.getStore();
      if (inFd !== undefined && request && typeof request === "object") {
        undiciRequests.set(request, inFd);
      }
    });
    subscribe("undici:client:sendHeaders", ({ request, socket }) => {
      const inFd = request && undiciRequests.get(request);
      if (inFd !== undefined) hint(fdOf(socket), inFd);
    });
  } catch (_) {
    // Too old a runtime, or a locked-down one: no hints, nothing else changes.
  }
})();
