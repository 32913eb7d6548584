// The MCP round trip without the relay: the official SDK client calls
// server-everything's `echo` N times, over stdio or (argument `http`) over
// streamable HTTP on 127.0.0.1; prints p50/p99 in ms. The relay's side of
// the comparison is `bench_mcp_round_trip` / `bench_mcp_http_round_trip`
// in tests/tests/mcp.rs (see docs/benchmarks.md).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";

const n = Number(process.argv[2] ?? 100);
const transport = process.argv[3] ?? "stdio";
const here = path.dirname(fileURLToPath(import.meta.url));
const server = path.join(here, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const client = new Client({ name: "bench-direct", version: "1" });
let child;
if (transport === "http") {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  child = spawn("node", ["--import", path.join(here, "loopback.mjs"), server, "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  await new Promise((resolve, reject) => {
    child.stderr.on("data", (d) => d.toString().includes("listening on port") && resolve());
    child.on("exit", () => reject(new Error("the server ended")));
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
} else {
  await client.connect(new StdioClientTransport({ command: "node", args: [server, "stdio"], stderr: "ignore" }));
}
const ms = [];
for (let i = 0; i < n + 10; i++) {
  const t = process.hrtime.bigint();
  const r = await client.callTool({ name: "echo", arguments: { message: "hi" } });
  const dt = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.content[0].text !== "Echo: hi") throw new Error("unexpected result");
  if (i >= 10) ms.push(dt); // the first calls warm the JIT
}
ms.sort((a, b) => a - b);
const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))].toFixed(3);
console.log(`direct echo round trip over ${transport} (n=${n}): p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`);
await client.close();
child?.kill();
