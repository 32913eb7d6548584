// @ts-check
// Types only: the shapes of the protocol (docs/protocol.md; the relay's are
// the `proto` crate's) and of the page's own records, as JSDoc for
// `tsc --checkJs` (tests/web/tsconfig.json). Nothing imports this file and
// it runs nothing: it is a plain script, so every typedef here is global to
// the checked modules, which name them as they are (`{Message}`). (A module
// of the page cannot write `import('…')`, even in a comment: the relay's
// bundler refuses it, see relay/src/http/bundle.rs.)

// ------------------------------------------------------------ messages

/**
 * One part of a message's content. Text, thinking, image, a tool call
 * (`toolCall`), a file's text (`text` with `attachment`), or another
 * agent's shape (`tool_use`), drawn as best it can.
 * @typedef {object} ContentPart
 * @property {string} type
 * @property {string} [text]
 * @property {string} [thinking]
 * @property {string} [url]         an image's or file's attachment URL (`attachments/<id>`)
 * @property {string} [mimeType]
 * @property {boolean} [attachment] a file's text given to the model (Decision 82): shown as the file
 * @property {string} [name]        a file's or tool's name
 * @property {number} [size]
 * @property {string} [id]          a tool call's id
 * @property {unknown} [arguments]  a tool call's arguments
 * @property {unknown} [args]
 * @property {unknown} [input]
 * @property {string} [toolName]
 */

/**
 * A reply's generation figures (Decision 81).
 * @typedef {object} MessageStats
 * @property {'server' | 'relay'} [source]
 * @property {number} [output]
 * @property {number} [tokensPerSec]
 * @property {number} [ttftMs]
 * @property {number} [contextTokens]
 * @property {number} [durationMs]
 */

/**
 * A stored message (a transcript entry).
 * @typedef {object} Message
 * @property {string} id
 * @property {string | null} [parentId]
 * @property {'user' | 'assistant' | 'system' | 'toolResult'} role
 * @property {string | ContentPart[]} content
 * @property {string} [timestamp]     RFC 3339
 * @property {string} [stopReason]    `stop`, `toolUse`, `aborted`, `error`, …
 * @property {string} [html]          an assistant reply rendered and sanitized by the relay
 * @property {string} [kind]          `compaction`, `branch_summary`: a marker, not a turn
 * @property {MessageStats} [stats]
 * @property {string} [toolCallId]    a toolResult's call
 * @property {boolean} [isError]
 * @property {string} [clientId]
 */

/**
 * What the page keeps beside a message it shows.
 * @typedef {object} MessageExtra
 * @property {string} [runId]       the run that stored it
 * @property {string} [error]       why its run failed
 * @property {boolean} [synthetic]  a placeholder for a run whose reply did not reach the page
 * @property {string | null} [userText]  what the user said (a placeholder's Retry)
 * @property {() => void} [onRetry]
 * @property {() => void} [onEdit]
 * @property {() => void} [onRegenerate]
 */

// ------------------------------------------------------------ events

/**
 * A session event (`GET /webchat/events`, and a streaming rpc's events).
 * @typedef {(
 *   {type: 'message', seq?: number, message: Message, runId?: string}
 *   | {type: 'run.start', seq?: number, runId: string}
 *   | {type: 'delta' | 'thinking', seq?: number, runId: string, text: string}
 *   | {type: 'run.end', seq?: number, runId: string, state: 'final' | 'aborted' | 'error', error?: string}
 *   | ToolEvent
 * )} SessionEvent
 */

/**
 * The events of a tool call (`tool.*`).
 * @typedef {(
 *   {type: 'tool.args', seq?: number, runId: string, callId: string, name: string, delta: string}
 *   | {type: 'tool.approval', seq?: number, runId: string, callId: string, name: string, args: unknown, expiresAt: string}
 *   | {type: 'tool.approval.resolved', seq?: number, runId: string, callId: string, decision: 'approved' | 'approvedForSession' | 'denied' | 'expired' | 'cancelled'}
 *   | {type: 'tool.start', seq?: number, runId: string, callId: string, name: string, args: unknown}
 *   | {type: 'tool.update', seq?: number, runId: string, callId: string, text: string}
 *   | {type: 'tool.end', seq?: number, runId: string, callId: string, status: 'ok' | 'error' | 'denied' | 'aborted', durationMs: number}
 * )} ToolEvent
 */

/**
 * A change of the session list (Decision 68): live only, `seq` 0.
 * @typedef {object} SessionsEvent
 * @property {'sessions'} type
 * @property {'created' | 'updated' | 'pinned' | 'archived' | 'restored' | 'resync'} change
 * @property {string} [key]
 * @property {SessionSummary} [session]
 */

/**
 * Anything the event stream carries.
 * @typedef {(
 *   SessionEvent
 *   | SessionsEvent
 *   | {type: 'notification', seq?: number, notification: RelayNotification}
 *   | {type: 'reset', seq: number}
 *   | {type: 'ping', seq?: number}
 * )} StreamEvent
 */

/**
 * The event stream's connection, as EventStream reports it.
 * @typedef {object} StreamState
 * @property {boolean} connected
 * @property {boolean} [refused]   the relay refused the token: no retry
 * @property {number} [retryIn]    ms until the next attempt
 * @property {number} [retryAt]    when it is made (ms since the epoch)
 * @property {number} [attempt]
 */

// ------------------------------------------------------------ info, history, tree

/**
 * @typedef {object} AttachmentLimits
 * @property {number} maxBytes
 * @property {number} maxCount
 * @property {string[]} types
 * @property {number} [maxTextChars]
 */

/**
 * A tool call of the active run waiting for the user.
 * @typedef {object} PendingApproval
 * @property {string} runId
 * @property {string} callId
 * @property {string} name
 * @property {unknown} args
 * @property {string} expiresAt
 */

/**
 * `GET /webchat/info`.
 * @typedef {object} Info
 * @property {string} version
 * @property {number} [welcomeVersion]
 * @property {string} sessionKey
 * @property {string | null} sessionId
 * @property {string} thinkingLevel
 * @property {{backend: string | null, model: string | null}} agent
 * @property {Message[]} initialMessages
 * @property {boolean} hasMore
 * @property {number} lastSeq
 * @property {{runId: string, startSeq: number}} [activeRun]
 * @property {PendingApproval[]} [pendingApprovals]
 * @property {string} [model]
 * @property {AttachmentLimits} [attachments]
 */

/**
 * `GET /webchat/history`: a page of the conversation, oldest first.
 * @typedef {object} HistoryPage
 * @property {Message[]} messages
 * @property {boolean} hasMore
 * @property {boolean} [hasNewer]
 */

/**
 * `GET /webchat/tree`: the shape of the session's tree, in file order.
 * @typedef {object} Tree
 * @property {string | null} leafId
 * @property {boolean} complete
 * @property {{id: string, parentId: string | null, role?: string}[]} entries
 */

/**
 * `GET /webchat/models`.
 * @typedef {object} ModelsResponse
 * @property {string[]} models
 * @property {string | null} [default]
 * @property {'server' | 'config' | 'none'} source
 * @property {string} [error]
 */

/**
 * `GET /webchat/status` (the parts the page shows).
 * @typedef {object} StatusResponse
 * @property {number} uptimeSecs
 * @property {{total: number, byKind: {sse: number, websocket: number, shell: number, cli: number}}} connections
 * @property {number} sessions
 * @property {number} runsInFlight
 * @property {{ok: number, failing: number, running: number}} [checks]
 * @property {{bytes: number, entries: number}} journal
 */

// ------------------------------------------------------------ sessions, search, alerts

/**
 * A row of `GET /webchat/sessions`.
 * @typedef {object} SessionSummary
 * @property {string} key
 * @property {string} [sessionId]
 * @property {number | null} updatedAt  ms since the epoch
 * @property {string | null} preview
 * @property {string} [title]
 * @property {string} [cwd]
 * @property {boolean} [pinned]
 * @property {string} [thinkingLevel]
 * @property {boolean} [isNew]  the page's row for a session not stored yet
 */

/**
 * A row of `GET /webchat/archived`.
 * @typedef {object} ArchivedSession
 * @property {string} key
 * @property {string} sessionId
 * @property {number} updatedAt
 * @property {number} archivedAt
 * @property {number} [purgeAt]
 * @property {string} [title]
 */

/**
 * A hit of `GET /webchat/search`.
 * @typedef {object} SearchHit
 * @property {string} session
 * @property {string} [title]
 * @property {string} messageId
 * @property {string} role
 * @property {string} timestamp
 * @property {string} snippet
 * @property {string} snippetHtml  escaped by the relay; <mark> its only markup
 */

/**
 * A notification (docs/notifications.md); a later version has the same id
 * and a higher seq.
 * @typedef {object} RelayNotification
 * @property {number} seq
 * @property {string} [id]
 * @property {string} [title]
 * @property {string} [body]
 * @property {number} [priority]
 * @property {string[]} [tags]
 * @property {string} [timestamp]
 * @property {string} [source]
 * @property {string} [session]
 * @property {string} [click]
 * @property {boolean} [image]
 * @property {boolean} [read]
 * @property {boolean} [dismissed]
 * @property {string} [investigatedIn]
 * @property {{name: string, state: string, exitCode: number | null, durationMs: number, output: string}} [check]
 */

/**
 * A check of `GET /webchat/checks`.
 * @typedef {object} Check
 * @property {string} name
 * @property {string} status
 * @property {string} schedule
 * @property {boolean} running
 * @property {string} [nextRun]
 * @property {{startedAt: string, exitCode: number | null, durationMs: number}} [lastRun]
 */

// ------------------------------------------------------------ sending

/**
 * An uploaded attachment (`POST /webchat/attachments`), as a message names it.
 * @typedef {object} AttachmentRef
 * @property {string} id
 * @property {string} [url]
 * @property {string} [mimeType]
 * @property {string} [name]
 */

/**
 * `POST /webchat/rpc`'s request.
 * @typedef {object} RpcRequest
 * @property {string} text
 * @property {string} [session]
 * @property {string} [id]          the idempotency key
 * @property {string} [thinking]
 * @property {{id: string, name?: string}[]} [attachments]
 * @property {string} [parentId]
 * @property {string} [regenerate]
 * @property {string} [model]
 * @property {boolean} [stream]
 */

/**
 * A streaming rpc's last event: the turn's answer (the non-streaming one).
 * @typedef {object} RpcDone
 * @property {'done'} type
 * @property {boolean} ok
 * @property {string} sessionKey
 * @property {string} sessionId
 * @property {string} runId
 * @property {{text: string, html?: string}[]} payloads
 * @property {Message} message
 */

/**
 * What a streaming rpc carries: its run's events, then `done` or `error`.
 * @typedef {SessionEvent | RpcDone | {type: 'error', ok: false, error: string, code: string}} RpcEvent
 */

/**
 * A message in the outbox (outbox.js), kept in localStorage until the relay
 * has answered for it.
 * @typedef {object} OutboxItem
 * @property {string} id            the client uuid, the rpc's idempotency key
 * @property {string} session
 * @property {string} text
 * @property {string} [thinking]
 * @property {string} [model]
 * @property {AttachmentRef[]} [attachments]  uploaded so far
 * @property {number} [fileCount]   files kept beside it (IndexedDB) to upload
 * @property {string[]} [fileNames]
 * @property {string[]} [imageNames]
 * @property {string[]} [previews]  blob: URLs, this page only
 * @property {string} createdAt
 * @property {string} [parentId]
 * @property {string} [msgId]       the stored user message, once seen
 * @property {'failed'} [state]
 * @property {string} [error]
 */

/** @typedef {'sent' | 'offline' | 'failed'} SendResult */

/**
 * The shown session (state.js).
 * @typedef {object} ShownSession
 * @property {string | null} session  its key
 * @property {Info | null} info       what /info said of it
 * @property {string | null} viewLeaf the branch shown, when not the conversation's
 * @property {Tree | null} tree
 * @property {boolean} connected      its event stream is open
 * @property {boolean} authFailed     the relay refused this page's token
 */

// ------------------------------------------------------------ the window

/**
 * The window with what the page's scripts put on it: boot.js's theme and
 * its early /info request, a token kept in memory where storage is
 * refused, the desktop shell's `ipc` and what the welcome tour offers it.
 * @typedef {Window & typeof globalThis & {
 *   loopchatTheme?: {key: string, chosen: () => string, apply: () => void},
 *   __loopchatBoot?: {key: string, limit: number, response: Promise<Response>} | null,
 *   __loopchatMemoryToken?: string,
 *   ipc?: unknown,
 *   loopchatDesktopStatus?: (status: unknown) => void,
 * }} PageWindow
 */

// ------------------------------------------------------------ the page's classes, by name

/** @typedef {import('./transcript.js').Transcript} Transcript */
/** @typedef {import('./runs.js').Runs} Runs */
/** @typedef {import('./sending.js').Sender} Sender */
/** @typedef {import('./branches.js').Branches} Branches */
/** @typedef {import('./sessions.js').SessionList} SessionList */
/** @typedef {import('./alerts.js').Alerts} Alerts */
/** @typedef {import('./search.js').SearchDialog} SearchDialog */
/** @typedef {import('./composer.js').Composer} Composer */
