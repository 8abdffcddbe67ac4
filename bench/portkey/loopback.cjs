// Preloaded into Portkey's gateway by the bench (`node --require`): its start-server script
// listens on every interface and has no option to choose one, and the bench serves loopback
// only. A listen() given a port but no host is bound to 127.0.0.1 instead.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] !== 'string')) {
    args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};

// The gateway appends its own headers (x-portkey-*) to the provider's response. On its streaming
// path it hands fetch()'s Response to @hono/node-server's Response, which keeps fetch's Headers
// object, and fetch's headers are immutable: every stream fails with "TypeError: immutable". A
// Response made here, with the same status, headers and body stream, has headers it may change.
const fetchFirst = globalThis.fetch;
const FetchResponse = globalThis.Response;
globalThis.fetch = async function (...args) {
  const res = await fetchFirst.apply(this, args);
  return new FetchResponse(res.body, { status: res.status, statusText: res.statusText, headers: new Headers(res.headers) });
};
