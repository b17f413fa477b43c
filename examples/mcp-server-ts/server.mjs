#!/usr/bin/env node
// An MCP server over Streamable HTTP (the official TypeScript SDK) whose tools are per-user notes,
// protected by Consentry access tokens through consentry/server — the JavaScript twin of
// examples/mcp-server (Rust, rmcp + consentry-resource), with the same tools, scopes and options.
//
//   consentry dev                 # issuer on http://127.0.0.1:8787
//   node server.mjs               # MCP endpoint http://127.0.0.1:8788/mcp
//
// Options (flags or environment): --listen / MCP_LISTEN (127.0.0.1:8788), --issuer /
// CONSENTRY_ISSUER (http://127.0.0.1:8787), --resource / MCP_RESOURCE (the MCP endpoint's URL,
// exactly as in Consentry's [[resources]] uri), --introspection-secret /
// CONSENTRY_INTROSPECTION_SECRET (check every token for revocation), --allowed-hosts /
// MCP_ALLOWED_HOSTS (DNS-rebinding protection; default the resource's host and loopback names).
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { createResourceVerifier, expressAuth } from 'consentry/server';
import { z } from 'zod';

const READ = 'notes:read';
const WRITE = 'notes:write';
/** Limits that keep one user from filling the server's memory (as the Rust example). */
const MAX_NOTE_CHARS = 10_000;
const MAX_NOTES_PER_USER = 1_000;
const MAX_SESSIONS = 10_000;

function options() {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: process.env.MCP_LISTEN ?? '127.0.0.1:8788' },
      issuer: { type: 'string', default: process.env.CONSENTRY_ISSUER ?? 'http://127.0.0.1:8787' },
      resource: { type: 'string', default: process.env.MCP_RESOURCE ?? 'http://127.0.0.1:8788/mcp' },
      'introspection-secret': { type: 'string', default: process.env.CONSENTRY_INTROSPECTION_SECRET },
      'allowed-hosts': { type: 'string', default: process.env.MCP_ALLOWED_HOSTS },
    },
  });
  const colon = values.listen.lastIndexOf(':');
  const host = values.listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(values.listen.slice(colon + 1));
  if (colon < 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--listen: '${values.listen}' is not host:port`);
  }
  const resource = new URL(values.resource);
  const allowedHosts = values['allowed-hosts']
    ? values['allowed-hosts'].split(',').map((h) => h.trim()).filter(Boolean)
    : [resource.hostname, 'localhost', '127.0.0.1', '[::1]'];
  return { host, port, issuer: values.issuer, resource: values.resource, path: resource.pathname || '/', introspectionSecret: values['introspection-secret'], allowedHosts };
}

/** Every user's notes, in memory. The user is the verified token's `sub`, per request. */
const notes = new Map();

/** The verified caller of this tool call, or a tool error. The HTTP layer already refused callers
 * without the scope (403, so that clients step up): the same rule again, where data is touched. */
function callerOf(extra, scope) {
  const user = extra.authInfo?.extra?.userId;
  if (!user) return { error: 'this MCP server is misconfigured: the tool call carries no verified caller' };
  if (!extra.authInfo.scopes.includes(scope)) return { error: `this tool needs scope '${scope}'; authorize again with it` };
  return { user };
}

const toolError = (text) => ({ content: [{ type: 'text', text }], isError: true });

function notesServer() {
  const server = new McpServer({ name: 'consentry-example-notes-ts', version: '0.1.0' });
  server.registerTool('list_notes', { description: 'List your notes (needs scope notes:read).' }, async (extra) => {
    const c = callerOf(extra, READ);
    if (c.error) return toolError(c.error);
    const list = notes.get(c.user) ?? [];
    const result = { user: c.user, notes: list };
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
  });
  server.registerTool(
    'add_note',
    { description: 'Add a note (needs scope notes:write).', inputSchema: { text: z.string().describe("The note's text.") } },
    async ({ text }, extra) => {
      const c = callerOf(extra, WRITE);
      if (c.error) return toolError(c.error);
      if (!text.trim()) return toolError('text must not be empty');
      if ([...text].length > MAX_NOTE_CHARS) return toolError(`text is longer than ${MAX_NOTE_CHARS} characters`);
      const list = notes.get(c.user) ?? [];
      if (list.length >= MAX_NOTES_PER_USER) return toolError(`you already have ${MAX_NOTES_PER_USER} notes`);
      const note = { id: list.length ? list[list.length - 1].id + 1 : 1, text };
      notes.set(c.user, [...list, note]);
      const result = { user: c.user, note };
      return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
    },
  );
  return server;
}

export function createApp(o) {
  const verifier = createResourceVerifier({
    issuer: o.issuer,
    resource: o.resource,
    resourceName: 'Consentry example notes',
    scopesSupported: [READ, WRITE],
    // Every MCP request (initialize, tools/list…) needs at least read access; the 401 challenge
    // names it, so clients ask for it up front.
    requiredScopes: [READ],
    ...(o.introspectionSecret ? { introspection: { secret: o.introspectionSecret } } : {}),
  });
  const app = express();
  app.disable('x-powered-by');
  // Browser-based MCP clients (e.g. MCP Inspector) need to read the challenge and session id.
  app.use((req, res, next) => {
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-expose-headers', 'www-authenticate, mcp-session-id');
    if (req.method === 'OPTIONS') {
      res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
      res.setHeader('access-control-allow-headers', 'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id');
      res.setHeader('access-control-max-age', '600');
      res.status(204).end();
      return;
    }
    next();
  });
  const metadata = verifier.metadataHandler();
  const serveMetadata = async (req, res) => {
    const r = metadata(new Request(`http://localhost${req.url}`));
    res.status(r.status);
    r.headers.forEach((v, k) => res.setHeader(k, v));
    res.send(await r.text());
  };
  app.get(verifier.metadataPath, serveMetadata);
  if (verifier.metadataPath !== '/.well-known/oauth-protected-resource') app.get('/.well-known/oauth-protected-resource', serveMetadata);

  /** session id → transport. A session is not an authentication: every request carries a token. */
  const sessions = new Map();
  const auth = expressAuth(verifier, { tools: { list_notes: [READ], add_note: [WRITE] } });
  app.all(o.path, express.json({ limit: '4mb' }), auth, async (req, res) => {
    const id = req.headers['mcp-session-id'];
    let transport = typeof id === 'string' ? sessions.get(id) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || id !== undefined || !isInitializeRequest(req.body)) {
        res.status(id === undefined ? 400 : 404).json({ jsonrpc: '2.0', error: { code: -32000, message: id === undefined ? 'no mcp-session-id: initialize first' : 'unknown mcp-session-id' }, id: null });
        return;
      }
      if (sessions.size >= MAX_SESSIONS) {
        res.status(503).json({ jsonrpc: '2.0', error: { code: -32000, message: 'too many sessions' }, id: null });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableDnsRebindingProtection: true,
        allowedHosts: o.allowedHosts.flatMap((h) => [h, `${h}:${o.port}`]),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await notesServer().connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  });
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let o;
  try {
    o = options();
  } catch (e) {
    console.error(`consentry-example-mcp-server-ts: ${e.message}`);
    process.exit(2);
  }
  const server = createApp(o).listen(o.port, o.host, () => {
    console.error(`MCP endpoint ${o.resource} (listening on ${o.host}:${server.address().port}), tokens from ${o.issuer}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
