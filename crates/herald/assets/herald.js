/**
 * herald.js — the browser client for Herald's event streams (served at `/herald.js`).
 *
 * `connect(url)` reads a Server-Sent Events stream with `fetch()` and adds what an app needs:
 *
 * - listeners get the event's `data` already parsed from JSON (and a `MessageEvent` with
 *   `data`, `lastEventId` and `type`);
 * - a connection status for the UI: `'connecting'`, `'connected'` (the stream delivers, or a
 *   long-poll answered), `'reconnecting'`, `'offline'`;
 * - reconnection that resumes where it left off: the last event id seen goes in the
 *   `lastEventId` query parameter (`lastEventID` under `/.well-known/mercure`), so the server
 *   replays what was missed. After a stream ends cleanly the next one opens after the server's
 *   `retry` (with jitter); after a failure (no answer, a non-200 answer, a stall) after an
 *   exponential backoff with full jitter (500 ms base, 30 s cap), reset once a stream delivers;
 * - an event whose id was already dispatched is not dispatched again (a replay that overlaps
 *   what was seen is harmless);
 * - `reset` (the server no longer knows our last id) is passed to the 'reset' listeners, whose
 *   job is to reload state;
 * - the resume point also moves without events: a stream opened with no id to resume from
 *   starts at its `Last-Event-ID` response header (the log's head when it subscribed), and a
 *   poll answer's `lastEventId` is taken as it is (`null`: the server knows none, the next
 *   request starts from nothing).
 *
 * Load, then subscribe. Every read of the app's REST API answers with a `Herald-Position`
 * header: the position in the event log its data is consistent with. Open the stream with
 * `connect(url, { after: position })` and it starts right after that position: every change
 * the data does not hold arrives, none made before it. A change made between the read and the
 * subscription arrives once; one the read already holds may arrive again (the position is
 * conservative), so apply events idempotently (by id, keeping the newer `updatedAt`). With
 * several reads, pass the smallest position (the first read's). `after` only places the
 * first request: once an event (or the server's cursor) gives an id, reconnections resume
 * from that id, which the server prefers over `after` when a URL carries both. A tab that
 * joins a shared stream already running (see "Many tabs") cannot be replayed what that stream
 * delivered before it joined: it gets a `reset` (data `{"reason":"joined-running-stream"}`),
 * and reloads with the stream already delivering to it. A position the server no longer
 * holds the events after also gives a `reset`.
 *
 * The app's `connected` event (the first of each app stream and poll answer) is the one
 * without an id; a hub update always has an id, so one of type `connected` is an event like
 * any other (no dropping of repeats by data).
 *
 * Stalls. Every byte counts as a sign of life, heartbeat comments (`:`) included; Herald sends
 * `retry:` at once and a heartbeat every 15 s (with `--heartbeat 0` it sends none: set
 * `idleTimeout` to 0). A stream whose response headers came but no byte within
 * `firstByteTimeout` (8 s) after them is held by a proxy that buffers responses until they
 * end: herald.js switches to long-polling. A request with no response headers within twice
 * that is a failure (backoff; a slow connect, a laptop waking up); two in a row also switch to
 * long-polling. An open stream silent for `idleTimeout` (45 s; 0 disables) is aborted and
 * reopened, as a failure; two such stalls in a row, with no byte between the first burst of
 * the reopened stream and its stall, also mean buffering: long-polling.
 *
 * Long-polling. The same URL asked for with `Accept: application/json` waits (`--poll-timeout`,
 * 25 s by default, at most 30 s; herald.js gives a poll 40 s) for events and returns them as
 * JSON (`{ events: [{ type, id?, data }], lastEventId, retry }`). herald.js polls in a loop,
 * dispatches those events exactly like streamed ones, and says `connected` while polls
 * succeed; an answer faster than 1 s with nothing but `connected` and `reset` is followed by a
 * pause of about the server's `retry`, never at once. Every `streamRetryInterval` (60 s) it
 * tries the stream again and goes back to it if it delivers a byte within `firstByteTimeout`.
 * The app's `connected` event (which each poll answer starts with) is dispatched only when the
 * status becomes connected or its data changed. `stream.transport` says which is in use.
 *
 * Many tabs. A browser keeps at most six HTTP/1.1 connections per host, so six tabs each
 * holding a stream would starve everything else. The tabs of one origin that connect to the
 * same absolute URL share one connection (unless `share` is false), in one of two ways:
 *
 * - Where `navigator.locks` and `BroadcastChannel` exist, they elect a leader with the lock
 *   `'herald:' + url`: only the leader runs the stream, and it posts every event and status
 *   change on the BroadcastChannel of the same name, and each move of its resume point that no
 *   event carried (`{ kind: 'cursor' }`). The other tabs dispatch what they receive (with the
 *   same duplicate dropping), show the leader's status and keep its resume point; a new tab
 *   asks the leader for its status and last id. When the leader closes, the next tab takes the
 *   lock and resumes from the last position it was told, so nothing is lost, even before the
 *   first event; what is replayed twice is dropped by id. `stream.role` is `'leader'` or
 *   `'follower'`.
 * - Browsers offer `navigator.locks` to secure contexts only (HTTPS, `localhost`). Elsewhere
 *   (plain HTTP from a LAN address or an intranet name), where `SharedWorker` exists, herald.js
 *   starts itself as a module SharedWorker named `'herald'` (from `import.meta.url`, so it
 *   must be served by the page's origin). The worker runs one connection per URL, with the
 *   same transport code a leader runs, and relays to every tab that uses it; it outlives any
 *   one tab, so closing tabs loses nothing for the others. A tab says `close` to the worker on
 *   `close()` and on `pagehide`; the worker ends a connection no tab uses. `stream.role` is
 *   `'worker'`; listeners, status and duplicate dropping are the same as a follower's.
 *
 * Back/forward cache. A page restored from it (`pageshow` with `persisted`) was frozen and may
 * have missed events. A tab that runs the transport (leader, own) opens a new request from its
 * last id, and the server replays what was missed. A follower cannot get back the leader's
 * broadcasts: it dispatches `reset` (data `{"reason":"resumed-from-cache"}`) so the app
 * reloads its state, asks the leader for its position and continues. A tab of the worker
 * opens a new port from its last id: if the worker's stream has moved past it, the tab
 * dispatches the same `reset` and takes the worker's position.
 *
 * Otherwise (no `SharedWorker` either, as in Chrome for Android over plain HTTP) each tab
 * keeps its own stream and `stream.role` is `'own'`; serve the app over HTTPS there, which
 * brings HTTP/2, where one connection carries every stream.
 *
 * @example
 * import { connect } from '/herald.js';
 *
 * // Load, then subscribe after the position of the load.
 * const res = await fetch(`/api/workspaces/${ws}/todos`);
 * const position = res.headers.get('Herald-Position');
 * const todos = new Map((await res.json()).items.map((todo) => [todo.id, todo]));
 * const stream = connect(`/api/workspaces/${ws}/events`, {
 *   after: position,
 *   onStatus: (status) => { pill.textContent = status; },
 * });
 * const newer = (todo) => !todos.has(todo.id) || todo.updatedAt >= todos.get(todo.id).updatedAt;
 * stream.on('todos:created', (e) => newer(e.data) && todos.set(e.data.id, e.data));
 * stream.on('todos:updated', (e) => newer(e.data) && todos.set(e.data.id, e.data));
 * stream.on('todos:deleted', (e) => todos.delete(e.data.id));
 * stream.on('reset', () => reloadEverything());
 * // later
 * stream.close();
 *
 * @module herald
 */

/** First backoff ceiling after a failure, in ms. */
const BACKOFF_BASE_MS = 500;
/** Largest backoff ceiling, in ms. */
const BACKOFF_CAP_MS = 30_000;
/** After this many failed attempts in a row the status says 'offline' (it keeps trying). */
const OFFLINE_AFTER_ATTEMPTS = 6;
/** How many recent event ids are remembered to drop duplicates. */
const SEEN_IDS = 1024;
/** The reconnection delay until the server sends `retry:`, in ms (the SSE default). */
const DEFAULT_RETRY_MS = 3_000;
/** How long a long-poll may take: the server answers within `--poll-timeout` (25 s by default, at most 30 s). */
const POLL_TIMEOUT_MS = 40_000;
/** A poll answered faster than this with no events is not repeated at once (no busy loop). */
const POLL_MIN_MS = 1_000;
/** Longest line (or event data) the parser buffers, in characters: a bound on memory. */
const MAX_BUFFER_CHARS = 8 * 1024 * 1024;
/** How long a new tab waits for the leader to answer before it stops asking. */
const HELLO_RETRY_MS = 1_000;

/** The data of the `reset` a tab dispatches when it comes back from the back/forward cache. */
const RESUMED_RESET = JSON.stringify({ reason: 'resumed-from-cache' });
/** The data of the `reset` a tab dispatches when it joins, with `after`, a shared stream that was already running. */
const JOINED_RESET = JSON.stringify({ reason: 'joined-running-stream' });

/** A log position (`Herald-Position`): its decimal digits, or null when `value` is none. */
function positionOf(value) {
  const text = typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? String(value) : value;
  return typeof text === 'string' && /^[0-9]{1,20}$/.test(text) ? text : null;
}

/**
 * Whether `msg` is the app's `connected` event, which starts every app stream and poll answer
 * and never has an id. A hub update always has one (the publisher's or a generated one), so a
 * Mercure update of type `connected` is dispatched like any other event. (Telling them apart
 * by id rather than by URL also holds when a proxy serves the hub under another path.)
 */
const isAppConnected = (msg) => msg.type === 'connected' && !msg.id;

const DEFAULTS = {
  firstByteTimeout: 8_000,
  idleTimeout: 45_000,
  streamRetryInterval: 60_000,
};

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/**
 * An incremental `text/event-stream` parser following the WHATWG rules: lines end with
 * `\r\n`, `\r` or `\n` (also across chunks); a leading BOM is skipped; `data` lines are joined
 * with `\n`; `event` sets the type (`'message'` by default); `id` sets the last event id unless
 * it contains NUL; `retry` is taken only when it is all ASCII digits; comments and unknown
 * fields dispatch nothing; an event without data is not dispatched; an unfinished event at the
 * end of the stream is dropped.
 *
 * `feed(text)` takes decoded text (use `TextDecoder` with `stream: true` for bytes).
 * `onEvent({ type, data, id, lastEventId })` gets each event: `id` is the event's own id or
 * `null` when it has no `id:` line; `lastEventId` is the stream's last id so far (sticky, as
 * `EventSource` reports it). `onRetry(ms)` gets each valid `retry`.
 *
 * Throws when a line or an event's data grows past 8 Mi characters.
 */
export class SseParser {
  constructor({ onEvent = () => {}, onRetry = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.lastEventId = '';
    this.buffer = '';
    this.started = false; // past the optional BOM
    this.afterCR = false; // the last chunk ended in '\r': a leading '\n' belongs to it
    this.data = '';
    this.hasData = false;
    this.type = '';
    this.id = null; // this event's own id, if it had an `id:` line
  }

  feed(text) {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.afterCR && text.length > 0) {
      // The '\r' that ended the last chunk ended its line: one '\n' right after it is part of
      // that line end (CRLF split across chunks). An empty chunk leaves the question open.
      if (text.startsWith('\n')) text = text.slice(1);
      this.afterCR = false;
    }
    let buffer = this.buffer + text;
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf('\r', start);
      const lf = buffer.indexOf('\n', start);
      if (cr === -1 && lf === -1) break;
      let end;
      let next;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === buffer.length) {
          this.afterCR = true; // a '\n' may follow in the next chunk
          next = cr + 1;
        } else {
          next = buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(buffer.slice(start, end));
      start = next;
    }
    this.buffer = buffer.slice(start);
    if (this.buffer.length > MAX_BUFFER_CHARS) throw new Error('herald: an SSE line is too long');
  }

  /** @private */
  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // a comment
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this.data = this.hasData ? `${this.data}\n${value}` : value;
        this.hasData = true;
        if (this.data.length > MAX_BUFFER_CHARS) throw new Error('herald: an SSE event is too long');
        break;
      case 'event':
        this.type = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
          this.id = value;
        }
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
        break;
      default:
      // Unknown fields are ignored.
    }
  }

  /** @private */
  dispatch() {
    const { hasData, data, type, id } = this;
    this.data = '';
    this.hasData = false;
    this.type = '';
    this.id = null;
    if (!hasData) return;
    this.onEvent({ type: type || 'message', data, id: id || null, lastEventId: this.lastEventId });
  }
}

// ---------------------------------------------------------------------------------------------
// Transport: one stream (or long-poll loop) with reconnection
// ---------------------------------------------------------------------------------------------

/** Why a stream request ended. */
const ENDED = 'ended'; // the server closed it cleanly
const FAILED = 'failed'; // no answer, a non-200 answer, a broken connection
const BUFFERED = 'buffered'; // headers, then no byte within firstByteTimeout
const NO_ANSWER = 'no-answer'; // no response headers within twice firstByteTimeout
const STALLED = 'stalled'; // silent for idleTimeout

/**
 * Runs the connection to `url` and reports to `sink`: `event(msg)` for each event (`msg` is
 * `{ type, data, id, lastEventId }`), `state({ status, transport })` on each change, and
 * `cursor(id)` when the resume point moves without an event that carries it (a poll answer's
 * `lastEventId`, a stream's `Last-Event-ID` response header; `null`: start from nothing).
 * Starts from `lastEventId` and `status` (a new leader continues where the last one was).
 */
function createTransport(url, options, sink, { lastEventId = null, status = null, after = null } = {}) {
  const { withCredentials, firstByteTimeout, idleTimeout, streamRetryInterval } = options;
  const resumeParam = new URL(url, location.href).pathname.startsWith('/.well-known/mercure')
    ? 'lastEventID'
    : 'lastEventId';

  let transport = 'stream';
  let attempt = 0; // failed attempts since the last success
  let stalls = 0; // idle stalls in a row (see STALLED)
  let noAnswers = 0; // requests in a row that got no response headers (see NO_ANSWER)
  let retryMs = DEFAULT_RETRY_MS;
  let current = null; // the AbortController of the request whose events count
  let live = false; // the current request delivered (a stream byte, a poll answer)
  let timer = null; // waiting to reconnect
  let probeTimer = null; // waiting to try the stream again while polling
  let probe = null; // the AbortController of that try
  let lastConnected = null; // the data of the last `connected` dispatched
  let stopped = false;

  const setState = (next) => {
    if (next.status === status && (next.transport ?? transport) === transport) return;
    status = next.status ?? status;
    transport = next.transport ?? transport;
    sink.state({ status, transport });
  };

  // Where the next request starts: after the last id seen; before any, after the position the
  // app loaded its data at (`after`), which the server replays from like an id.
  const target = () => {
    if (!lastEventId && after === null) return url;
    const u = new URL(url, location.href);
    if (lastEventId) {
      u.searchParams.delete('after');
      u.searchParams.set(resumeParam, lastEventId);
    } else {
      u.searchParams.set('after', after);
    }
    return u.href;
  };

  const request = (accept, signal) =>
    fetch(target(), {
      headers: { Accept: accept },
      credentials: withCredentials ? 'include' : 'same-origin',
      cache: 'no-store',
      signal,
    });

  const emit = (msg) => {
    if (msg.id) lastEventId = msg.id;
    if (isAppConnected(msg)) lastConnected = msg.data;
    sink.event(msg);
  };

  /** The resume point moved without an event: remember it and tell the sink. */
  const setCursor = (id) => {
    if (id === lastEventId) return;
    lastEventId = id;
    sink.cursor?.(id);
  };

  // --- Streaming ---

  /**
   * One stream request. With `asProbe` it runs beside the poll loop and takes over when its
   * first byte arrives; otherwise it is the current request from the start.
   */
  const runStream = async (asProbe) => {
    const ctl = new AbortController();
    if (asProbe) probe = ctl;
    else current = ctl;
    let why = null;
    let gotByte = false;
    let lateByte = false; // a byte after the first burst: the stream is live, not buffered
    let started = Date.now();
    const resumed = lastEventId !== null || after !== null; // the request says where to resume
    const abort = (reason) => {
      why ??= reason;
      ctl.abort();
    };
    // No headers at all is a failure (a slow connect, a laptop waking up); headers and then no
    // byte is a proxy that buffers the body (see runStream's outcomes).
    const connectTimer = firstByteTimeout > 0 ? setTimeout(() => abort(NO_ANSWER), 2 * firstByteTimeout) : null;
    let firstTimer = null;
    let head = null; // the `Last-Event-ID` response header: the log's head at subscribe time
    let idleTimer = null;
    const parser = new SseParser({
      onEvent: (msg) => {
        if (current === ctl) emit(msg);
      },
      onRetry: (ms) => {
        retryMs = ms;
      },
    });
    let outcome;
    try {
      const res = await request('text/event-stream', ctl.signal);
      clearTimeout(connectTimer);
      noAnswers = 0;
      const type = res.headers.get('content-type') ?? '';
      if (!res.ok || !type.startsWith('text/event-stream') || !res.body) {
        res.body?.cancel().catch(() => {});
        throw new Error(`herald: the stream answered ${res.status} ${type}`);
      }
      started = Date.now();
      if (firstByteTimeout > 0) firstTimer = setTimeout(() => abort(BUFFERED), firstByteTimeout);
      if (!resumed) head = res.headers.get('last-event-id') || null;
      if (head !== null && current === ctl && lastEventId === null) setCursor(head);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!gotByte) {
          gotByte = true;
          clearTimeout(firstTimer);
          if (asProbe) {
            if (stopped) return;
            // The stream flows again: it replaces the poll loop.
            probe = null;
            clearTimeout(timer);
            timer = null;
            clearTimeout(probeTimer);
            probeTimer = null;
            current?.abort();
            current = ctl;
            if (head !== null && lastEventId === null) setCursor(head);
          }
          live = true;
          attempt = 0;
          setState({ status: 'connected', transport: 'stream' });
        } else if (!lateByte && Date.now() - started > firstByteTimeout) {
          lateByte = true;
          stalls = 0;
        }
        if (idleTimeout > 0) {
          clearTimeout(idleTimer);
          idleTimer = setTimeout(() => abort(STALLED), idleTimeout);
        }
        parser.feed(decoder.decode(value, { stream: true }));
      }
      outcome = ENDED;
    } catch {
      outcome = why ?? FAILED;
    } finally {
      clearTimeout(connectTimer);
      clearTimeout(firstTimer);
      clearTimeout(idleTimer);
      ctl.abort();
    }
    if (stopped) return;
    if (asProbe && current !== ctl) {
      // The try failed: keep polling, try again later.
      if (probe === ctl) probe = null;
      scheduleProbe();
      return;
    }
    if (current !== ctl) return; // replaced
    current = null;
    live = false;
    if (outcome !== NO_ANSWER) noAnswers = 0;
    if (outcome === ENDED) {
      stalls = 0;
      setState({ status: 'reconnecting' });
      // The server's `retry`, spread over [retry/2, retry) so many clients do not come at once.
      wait(retryMs / 2 + (Math.random() * retryMs) / 2, () => runStream(false));
    } else if (outcome === BUFFERED || (outcome === STALLED && ++stalls >= 2) || (outcome === NO_ANSWER && ++noAnswers >= 2)) {
      stalls = 0;
      noAnswers = 0;
      startPolling();
    } else {
      backoff(() => runStream(false));
    }
  };

  // --- Long-polling ---

  const startPolling = () => {
    setState({ transport: 'poll' });
    scheduleProbe();
    poll();
  };

  const scheduleProbe = () => {
    clearTimeout(probeTimer);
    probeTimer = setTimeout(() => {
      probeTimer = null;
      if (!stopped && transport === 'poll' && !probe) runStream(true);
    }, streamRetryInterval);
  };

  const poll = async () => {
    const ctl = new AbortController();
    current = ctl;
    const started = Date.now();
    const timeout = setTimeout(() => ctl.abort(), POLL_TIMEOUT_MS);
    let answer;
    try {
      const res = await request('application/json', ctl.signal);
      const type = res.headers.get('content-type') ?? '';
      if (!res.ok || !type.startsWith('application/json')) {
        res.body?.cancel().catch(() => {});
        throw new Error(`herald: the poll answered ${res.status} ${type}`);
      }
      answer = await res.json();
      if (!answer || !Array.isArray(answer.events)) throw new Error('herald: not a poll answer');
    } catch {
      answer = null;
    } finally {
      clearTimeout(timeout);
    }
    if (stopped || current !== ctl) return; // closed, or the stream took over
    if (answer === null) {
      live = false;
      backoff(poll);
      return;
    }
    const wasConnected = status === 'connected';
    live = true;
    attempt = 0;
    if (Number.isSafeInteger(answer.retry) && answer.retry >= 0) retryMs = answer.retry;
    setState({ status: 'connected' });
    let quiet = true; // nothing but `connected` and `reset`: no reason to ask again at once
    for (const e of answer.events) {
      if (!e || typeof e.type !== 'string' || typeof e.data !== 'string') continue;
      const id = typeof e.id === 'string' && e.id !== '' ? e.id : null;
      const msg = { type: e.type, data: e.data, id, lastEventId: id ?? lastEventId ?? '' };
      if (!isAppConnected(msg) && msg.type !== 'reset') quiet = false;
      if (isAppConnected(msg) && wasConnected && msg.data === lastConnected) continue;
      emit(msg);
      if (stopped || current !== ctl) return;
    }
    // The server's resume point, which may be past the last event delivered (it skipped what
    // this subscription may not see); `null` when it knows none (a reset without an id).
    if (answer.lastEventId === null) setCursor(null);
    else if (typeof answer.lastEventId === 'string' && answer.lastEventId !== '') setCursor(answer.lastEventId);
    if (quiet && Date.now() - started < POLL_MIN_MS) {
      wait(retryMs / 2 + (Math.random() * retryMs) / 2, poll);
    } else {
      poll();
    }
  };

  // --- Waiting ---

  const wait = (ms, then) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!stopped) then();
    }, ms);
  };

  /** Full jitter: a uniformly random delay in [0, min(cap, base * 2^attempt)). */
  const backoff = (then) => {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt += 1;
    const offline = navigator.onLine === false || attempt > OFFLINE_AFTER_ATTEMPTS;
    setState({ status: offline ? 'offline' : 'reconnecting' });
    wait(Math.random() * ceiling, then);
  };

  // The browser knows when the network is gone; say so at once rather than after timeouts.
  const onOffline = () => setState({ status: 'offline' });
  const onOnline = () => {
    if (timer !== null) {
      // Waiting to reconnect: try now.
      clearTimeout(timer);
      timer = null;
      attempt = 0;
      setState({ status: 'reconnecting' });
      if (transport === 'poll') poll();
      else runStream(false);
    } else {
      setState({ status: live ? 'connected' : 'reconnecting' }); // it may have outlived the blip
    }
  };
  // Back from the back/forward cache: whatever the request was doing while the page was
  // frozen, open a new one from the last id, so the server replays what was missed.
  const onPageShow = (event) => {
    if (!event.persisted || stopped) return;
    clearTimeout(timer);
    timer = null;
    attempt = 0;
    const old = current;
    current = null; // the old request's end is not a failure to react to
    old?.abort();
    live = false;
    setState({ status: 'reconnecting' });
    if (transport === 'poll') poll();
    else runStream(false);
  };
  // `globalThis`: a window, or the SharedWorker that runs the transport for its tabs.
  globalThis.addEventListener('offline', onOffline);
  globalThis.addEventListener('online', onOnline);
  globalThis.addEventListener('pageshow', onPageShow);

  if (status === null) setState({ status: 'connecting' });
  runStream(false);

  return {
    get lastEventId() {
      return lastEventId;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(probeTimer);
      current?.abort();
      probe?.abort();
      globalThis.removeEventListener('offline', onOffline);
      globalThis.removeEventListener('online', onOnline);
      globalThis.removeEventListener('pageshow', onPageShow);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sharing: one transport per browser, its events relayed to every tab
// ---------------------------------------------------------------------------------------------

/**
 * Joins the tabs connected to `key`. Calls `lead()` when this tab holds the lock (it must run
 * the transport) and `follow(message)` for each message of the leader. Returns
 * `{ post(message), ask(), close() }`; `close()` gives up the lock.
 */
function joinTabs(key, { lead, follow, answer }) {
  const channel = new BroadcastChannel(key);
  const quit = new AbortController();
  let release = null;
  let leading = false;
  let answered = false;

  channel.onmessage = ({ data: message }) => {
    if (!message || typeof message !== 'object') return;
    if (message.kind === 'hello') {
      if (leading) channel.postMessage(answer());
    } else if (!leading) {
      if (message.kind === 'state') answered = true;
      follow(message);
    }
  };

  navigator.locks
    .request(key, { signal: quit.signal }, () => {
      if (quit.signal.aborted) return undefined;
      leading = true;
      lead();
      return new Promise((resolve) => (release = resolve));
    })
    .catch(() => {
      // Aborted by close() while waiting for the lock.
    });

  // Ask the leader where things stand; ask again if no leader answered yet.
  const hello = () => {
    if (leading || answered || quit.signal.aborted) return;
    channel.postMessage({ kind: 'hello' });
    setTimeout(hello, HELLO_RETRY_MS);
  };
  hello();

  return {
    post(message) {
      channel.postMessage(message);
    },
    /** Asks the leader again where things stand (after the page was frozen). */
    ask() {
      answered = false;
      hello();
    },
    close() {
      quit.abort();
      release?.();
      channel.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sharing through a SharedWorker (where there is no navigator.locks)
// ---------------------------------------------------------------------------------------------

/** The name of the SharedWorker that runs herald.js for the tabs of an origin. */
const WORKER_NAME = 'herald';

/** Whether this module runs as herald's SharedWorker (see the end of the file). */
const IN_HERALD_WORKER =
  typeof SharedWorkerGlobalScope !== 'undefined' &&
  self instanceof SharedWorkerGlobalScope &&
  self.name === WORKER_NAME;

/**
 * The worker's side: serves the ports of the tabs. A port sends `{ kind: 'open', url,
 * settings, lastEventId }` (one stream per port) and `{ kind: 'close' }`. The worker runs one
 * transport per absolute URL and credentials mode, the same `createTransport` a leader tab
 * runs, with the settings (timeouts) of the port that started it and from that port's last id;
 * it posts each event (`{ kind: 'event', msg }`), status change (`{ kind: 'status', status,
 * transport }`) and cursor move (`{ kind: 'cursor', id }`) to every port of that stream, and
 * the current state (`{ kind: 'state' }`, as a leader answers a new tab, with `behind` when the
 * port came with a last id the stream has moved past) to a port that joins. A transport stops
 * when its last port leaves.
 */
function serveTabs(scope) {
  /** key -> { ports: Set<MessagePort>, engine, status, transport, lastEventId, connected } */
  const streams = new Map();
  /** port -> the key of the stream it joined */
  const joined = new Map();

  const leave = (port) => {
    const key = joined.get(port);
    joined.delete(port);
    const shared = streams.get(key);
    if (!shared) return;
    shared.ports.delete(port);
    if (shared.ports.size === 0) {
      streams.delete(key);
      shared.engine?.stop();
    }
  };

  const join = (port, { url, settings, lastEventId, after }) => {
    leave(port);
    if (typeof url !== 'string' || !settings || typeof settings !== 'object') return;
    let href;
    try {
      href = new URL(url).href;
    } catch {
      return;
    }
    const withCredentials = settings.withCredentials === true;
    const key = `${withCredentials ? 'include' : 'same-origin'} ${href}`;
    joined.set(port, key);
    const running = streams.get(key);
    if (running) {
      running.ports.add(port);
      const { status, transport, connected } = running;
      // A tab back from the back/forward cache comes with the id it had when it was frozen;
      // if the stream moved on since, the tab missed events: it reloads its state (`behind`).
      const behind = typeof lastEventId === 'string' && lastEventId !== '' && lastEventId !== running.lastEventId;
      port.postMessage({ kind: 'state', status, transport, lastEventId: running.lastEventId, connected, behind });
      return;
    }
    const shared = {
      ports: new Set([port]),
      engine: null,
      status: null,
      transport: 'stream',
      lastEventId: null,
      connected: null,
    };
    streams.set(key, shared);
    const fanOut = (message) => {
      for (const p of shared.ports) p.postMessage(message);
    };
    const ms = (value, fallback) => (Number.isFinite(value) && value >= 0 ? value : fallback);
    shared.engine = createTransport(
      href,
      {
        withCredentials,
        firstByteTimeout: ms(settings.firstByteTimeout, DEFAULTS.firstByteTimeout),
        idleTimeout: ms(settings.idleTimeout, DEFAULTS.idleTimeout),
        streamRetryInterval: ms(settings.streamRetryInterval, DEFAULTS.streamRetryInterval),
      },
      {
        event: (msg) => {
          if (msg.id) shared.lastEventId = msg.id;
          if (isAppConnected(msg)) shared.connected = msg.data;
          fanOut({ kind: 'event', msg });
        },
        cursor: (id) => {
          shared.lastEventId = id;
          fanOut({ kind: 'cursor', id });
        },
        state: (next) => {
          shared.status = next.status;
          shared.transport = next.transport;
          fanOut({ kind: 'status', ...next });
        },
      },
      {
        lastEventId: typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : null,
        after: positionOf(after),
      },
    );
  };

  scope.addEventListener('connect', (event) => {
    const port = event.ports[0];
    port.onmessage = ({ data: message }) => {
      if (!message || typeof message !== 'object') return;
      if (message.kind === 'open') {
        join(port, message);
      } else if (message.kind === 'close') {
        leave(port);
        port.close();
      }
    };
  });
}

/**
 * The tab's side: one port to herald's SharedWorker for one stream. `follow(message)` gets
 * what the worker posts; `fail()` is called if the worker cannot run (its script did not
 * load). Throws if the browser refuses the worker (herald.js imported from another origin).
 * The port says `close` on `close()` and when the page is hidden for good or put in the
 * back/forward cache (a MessagePort has no close event the worker could wait for); a page
 * restored from that cache opens a new port, from its own last id (the worker says `behind`
 * if the stream moved on meanwhile).
 */
function joinWorker(url, settings, { follow, fail, lastEventId, after }) {
  let worker = null;
  let port = null;

  const attach = () => {
    worker = new SharedWorker(import.meta.url, { type: 'module', name: WORKER_NAME });
    worker.onerror = () => {
      detach();
      fail();
    };
    port = worker.port;
    port.onmessage = ({ data: message }) => {
      if (message && typeof message === 'object') follow(message);
    };
    port.postMessage({ kind: 'open', url, settings, lastEventId: lastEventId(), after: after() });
  };

  const detach = () => {
    if (!port) return;
    port.postMessage({ kind: 'close' });
    port.close();
    worker.onerror = null;
    port = null;
    worker = null;
  };

  const onPageHide = () => detach();
  const onPageShow = (event) => {
    if (event.persisted && !port) attach();
  };

  attach();
  addEventListener('pagehide', onPageHide);
  addEventListener('pageshow', onPageShow);

  return {
    close() {
      removeEventListener('pagehide', onPageHide);
      removeEventListener('pageshow', onPageShow);
      detach();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {'connecting' | 'connected' | 'reconnecting' | 'offline'} Status
 *
 * @typedef {object} Stream
 * @property {(type: string, fn: (data: any, event: MessageEvent) => void) => Stream} on
 *   Adds a listener for one event type (`'message'` for events without a type).
 * @property {(type: string, fn: Function) => Stream} off  Removes a listener added with `on`.
 * @property {() => void} close  Closes the stream for good (a leader hands over to another tab;
 *   the worker stops a connection no tab uses any more).
 * @property {Status} status  The current status.
 * @property {string | null} lastEventId  Where the stream resumes: the id of the last event
 *   dispatched, or a later position the server (or the leader) reported.
 * @property {'stream' | 'poll'} transport  How events arrive (the leader's or the worker's, in a
 *   shared stream).
 * @property {'leader' | 'follower' | 'worker' | 'own'} role  Whether this tab runs the shared
 *   connection (`'leader'`), mirrors a leader tab (`'follower'`), mirrors herald's SharedWorker
 *   (`'worker'`) or keeps a connection of its own (`'own'`).
 */

/**
 * Opens a stream.
 *
 * @param {string} url  The stream's URL, e.g. `'/api/events'` or `'/api/events?types=todos'`.
 * @param {object} [options]
 * @param {(status: Status) => void} [options.onStatus]  Called whenever the status changes.
 * @param {(stream: Stream) => void} [options.onChange]  Called whenever the status, the
 *   transport or the role changes.
 * @param {boolean} [options.withCredentials]  For cross-origin streams that need cookies.
 * @param {boolean} [options.share]  `false` keeps a stream of this tab's own.
 * @param {number | string} [options.after]  The `Herald-Position` of the data the app loaded:
 *   the stream starts right after it (the `after` query parameter) until an event gives an id
 *   to resume from. A tab that joins a shared stream already running gets a `reset` instead.
 *   Ignored unless a whole number.
 * @param {number} [options.firstByteTimeout]  ms without a byte after the response headers
 *   before switching to long-polling (8000); twice that without headers is a failure.
 * @param {number} [options.idleTimeout]  ms of silence on an open stream before reopening it
 *   (45000; 0 disables; 0 is required with a server run with `--heartbeat 0`).
 * @param {number} [options.streamRetryInterval]  ms between tries of the stream while
 *   long-polling (60000).
 * @returns {Stream}
 */
export function connect(url, options = {}) {
  const { onStatus, onChange, share = true } = options;
  const after = positionOf(options.after);
  const settings = {
    withCredentials: Boolean(options.withCredentials),
    firstByteTimeout: options.firstByteTimeout ?? DEFAULTS.firstByteTimeout,
    idleTimeout: options.idleTimeout ?? DEFAULTS.idleTimeout,
    streamRetryInterval: options.streamRetryInterval ?? DEFAULTS.streamRetryInterval,
  };
  /** type -> Set of listeners */
  const listeners = new Map();
  /** Recently dispatched event ids, oldest first, to drop duplicates. */
  const seen = new Set();

  let status = null;
  let transport = 'stream';
  let role = 'own';
  let lastEventId = null;
  let lastConnected = null; // the data of the last `connected` dispatched here
  let adopt = false; // back from the back/forward cache: take the shared position as ours
  // Loaded at `after`, and not yet known to have the events since (see `follow`'s 'state').
  let loadedAt = after;
  let closed = false;
  let engine = null; // the transport, when this tab runs one
  let tabs = null; // the other tabs, when shared

  const changed = (statusChanged) => {
    if (statusChanged) {
      try {
        onStatus?.(status);
      } catch (err) {
        console.error('herald: onStatus threw', err);
      }
    }
    try {
      onChange?.(stream);
    } catch (err) {
      console.error('herald: onChange threw', err);
    }
  };

  const setState = (next) => {
    const statusChanged = next.status !== undefined && next.status !== status;
    const other = (next.transport !== undefined && next.transport !== transport) || (next.role !== undefined && next.role !== role);
    if (!statusChanged && !other) return;
    status = next.status ?? status;
    transport = next.transport ?? transport;
    role = next.role ?? role;
    changed(statusChanged);
  };

  /** Parses, drops duplicates, fans out. `msg` is `{ type, data, id, lastEventId }`. */
  const deliver = (msg) => {
    if (closed) return;
    if (msg.id) {
      if (seen.has(msg.id) && msg.type !== 'reset') return; // a replayed event we already dispatched
      seen.add(msg.id);
      if (seen.size > SEEN_IDS) seen.delete(seen.values().next().value);
      lastEventId = msg.id;
    }
    if (isAppConnected(msg)) lastConnected = msg.data;
    const event = new MessageEvent(msg.type, { data: msg.data, lastEventId: msg.lastEventId ?? '' });
    let data = msg.data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      // Not JSON: pass the text as it is.
    }
    for (const fn of [...(listeners.get(msg.type) ?? [])]) {
      try {
        fn(data, event);
      } catch (err) {
        console.error(`herald: a '${msg.type}' listener threw`, err);
      }
    }
  };

  /** Runs the transport in this tab; when shared, relays what it reports to the others. */
  const run = () => {
    engine = createTransport(
      url,
      settings,
      {
        event: (msg) => {
          tabs?.post({ kind: 'event', msg });
          deliver(msg);
        },
        state: (next) => {
          tabs?.post({ kind: 'status', ...next });
          setState(next);
        },
        cursor: (id) => {
          tabs?.post({ kind: 'cursor', id });
          lastEventId = id;
        },
      },
      { lastEventId, status, after: lastEventId === null ? loadedAt : null },
    );
    loadedAt = null;
  };

  const stream = {
    on(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
      return stream;
    },
    off(type, fn) {
      listeners.get(type)?.delete(fn);
      return stream;
    },
    close() {
      if (closed) return;
      engine?.stop();
      engine = null;
      tabs?.close();
      tabs = null;
      if (role === 'leader' || role === 'follower') removeEventListener('pageshow', onPageShow);
      setState({ status: 'offline' });
      closed = true;
    },
    get status() {
      return status;
    },
    get lastEventId() {
      return lastEventId;
    },
    get transport() {
      return transport;
    },
    get role() {
      return role;
    },
  };

  /** Tells the listeners to reload: events were published while the page was frozen. */
  const resumedFromCache = () => {
    deliver({ type: 'reset', data: RESUMED_RESET, id: null, lastEventId: lastEventId ?? '' });
  };

  /**
   * A follower back from the back/forward cache missed the leader's broadcasts while it was
   * frozen: it reloads (`reset`), asks the leader where things stand and continues from there.
   * (A leader's or an own transport reconnects from its last id by itself.)
   */
  const onPageShow = (event) => {
    if (!event.persisted || closed || role !== 'follower') return;
    adopt = true;
    resumedFromCache();
    tabs?.ask();
  };

  /** What a leader tab or the worker posts: events, status changes, the state on joining. */
  const follow = (message) => {
    if (closed) return;
    if (message.kind === 'event' && message.msg) {
      deliver(message.msg);
    } else if (message.kind === 'status') {
      setState({ status: message.status, transport: message.transport });
    } else if (message.kind === 'cursor') {
      // The shared position moved without an event: a new leader resumes from here.
      if (message.id === null || (typeof message.id === 'string' && message.id !== '')) lastEventId = message.id;
    } else if (message.kind === 'state') {
      const shared = typeof message.lastEventId === 'string' && message.lastEventId !== '' ? message.lastEventId : null;
      // A new tab continues from the shared position if it has none of its own; a tab back
      // from the back/forward cache takes it too, having reloaded its state.
      if (adopt || message.behind === true) lastEventId = shared;
      else lastEventId ??= shared;
      adopt = false;
      // The shared stream was running before this tab joined: it cannot replay to this tab
      // what it delivered after `after` and before now. The app reloads (a `reset`), with
      // this stream already delivering to it.
      const joinedLate = loadedAt !== null;
      loadedAt = null;
      setState({ status: message.status, transport: message.transport });
      if (message.status === 'connected' && lastConnected === null && typeof message.connected === 'string') {
        deliver({ type: 'connected', data: message.connected, id: null, lastEventId: lastEventId ?? '' });
      }
      if (message.behind === true) resumedFromCache();
      else if (joinedLate) deliver({ type: 'reset', data: JOINED_RESET, id: null, lastEventId: lastEventId ?? '' });
    }
  };

  const sharing = share !== false && typeof navigator !== 'undefined' && !IN_HERALD_WORKER;
  if (sharing && typeof BroadcastChannel === 'function' && navigator.locks?.request) {
    role = 'follower';
    setState({ status: 'connecting' });
    tabs = joinTabs(`herald:${new URL(url, location.href).href}`, {
      lead: () => {
        if (closed) return;
        setState({ role: 'leader', transport: 'stream' });
        tabs?.post({ kind: 'status', status, transport });
        run();
      },
      follow,
      answer: () => ({ kind: 'state', status, transport, lastEventId, connected: lastConnected }),
    });
    addEventListener('pageshow', onPageShow);
  } else if (sharing && typeof SharedWorker === 'function' && startWorker()) {
    // Shared through the worker (see joinWorker).
  } else {
    run();
  }

  /** Joins herald's SharedWorker; false if the browser refuses it. */
  function startWorker() {
    role = 'worker';
    setState({ status: 'connecting' });
    const own = () => {
      tabs = null;
      if (closed) return;
      setState({ role: 'own' });
      run();
    };
    try {
      tabs = joinWorker(new URL(url, location.href).href, settings, {
        follow,
        fail: own,
        lastEventId: () => lastEventId,
        after: () => loadedAt,
      });
      return true;
    } catch {
      setState({ role: 'own' });
      return false;
    }
  }

  return stream;
}

// Loaded as herald's SharedWorker (by joinWorker): serve the tabs.
if (IN_HERALD_WORKER) serveTabs(self);
