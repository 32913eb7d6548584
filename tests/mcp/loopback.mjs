// Preloaded (`node --import ./loopback.mjs …`) by the MCP suite: server-everything's
// streamable HTTP transport calls `app.listen(PORT)`, which binds every interface;
// the tests bind it to 127.0.0.1 only.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === "number" || (typeof port === "string" && /^\d+$/.test(port))) {
    const callback = rest.find((a) => typeof a === "function");
    return listen.call(this, Number(port), "127.0.0.1", callback);
  }
  return listen.call(this, port, ...rest);
};
