// A scripted HTTP server on loopback: each request is recorded, then answered as the test's
// handler says, including the failures a real node can show (a connection dropped after the
// request was read, no answer at all, a stream that breaks).

import http from "node:http";
import net from "node:net";

/**
 * `handler(request, res, n)` is called with the recorded request (method, path, query, headers,
 * body) once its body was read, `n` counting from 1. It returns one of:
 * - `{status, body?, headers?}`: answered as JSON (`body` an object, or a string sent as is);
 * - `"drop"`: the connection is destroyed without an answer;
 * - `"hang"`: no answer ever (until the server closes);
 * - `undefined`: the handler answered on `res` itself (a stream).
 */
export async function fakeServer(handler) {
  const requests = [];
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const url = new URL(req.url, "http://fake");
    const request = {
      method: req.method,
      path: url.pathname,
      rawPath: req.url.split("?")[0],
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body: Buffer.concat(chunks).toString("utf8"),
    };
    requests.push(request);
    const action = await handler(request, res, requests.length);
    if (action === "drop") {
      req.socket.destroy();
    } else if (action === "hang" || action === undefined) {
      // left open on purpose
    } else {
      const body = action.body === undefined ? "" : typeof action.body === "string" ? action.body : JSON.stringify(action.body);
      res.writeHead(action.status, { "content-type": "application/json", ...action.headers });
      res.end(body);
    }
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Requests whose path is `path`. */
    count(path) {
      return requests.filter((r) => path === undefined || r.path === path).length;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A loopback address where nothing listens: a port the kernel handed out, then closed. */
export async function deadEndpoint() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** The native envelopes. */
export const ok = (data, headers = {}) => ({ status: 200, body: { data }, headers });
export const fail = (status, code, extra = {}, headers = {}) => ({
  status,
  body: { error: { code, message: `${code} (fake)`, ...extra } },
  headers: { "x-request-id": "fake-req-1", ...headers },
});
export const item = (key, value, version) => ({ key, value, version, expiresAt: null });
