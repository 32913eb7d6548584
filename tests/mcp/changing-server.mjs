// A real MCP server (the official SDK over stdio) whose tool list changes:
// calling `add-tool` registers the tool `added`, and the SDK then sends
// `notifications/tools/list_changed`. The relay's MCP suite uses it to check
// that the notification is honoured (tests/tests/mcp.rs).
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const server = new McpServer(
  { name: "changing", version: "1.0.0" },
  { capabilities: { tools: { listChanged: true } } },
);
server.registerTool("add-tool", { description: "Adds the tool `added`." }, async () => {
  server.registerTool("added", { description: "A tool that was added later." }, async () => ({
    content: [{ type: "text", text: "the added tool ran" }],
  }));
  return { content: [{ type: "text", text: "added" }] };
});
await server.connect(new StdioServerTransport());
