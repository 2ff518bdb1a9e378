/**
 * herald.js — the browser client for Herald's event streams (served at `/herald.js`).
 *
 * A thin layer over the browser's own `EventSource` that adds what an app needs:
 *
 * - listeners get the event's `data` already parsed from JSON (and the raw `MessageEvent`);
 * - a connection status for the UI: `'connecting'`, `'connected'` (once the server's
 *   `connected` event arrived), `'reconnecting'`, `'offline'`;
 * - recovery when the `EventSource` gives up. The browser reconnects by itself after a dropped
 *   connection (sending `Last-Event-ID`), but stops for good after a non-200 answer (a proxy's
 *   502 during a restart, say). Then a new one is opened after an exponential backoff with full
 *   jitter (500 ms base, 30 s cap), with the last event id seen passed as the `lastEventId`
 *   query parameter, so the server replays what was missed. The backoff resets once a
 *   `connected` event arrives;
 * - an event whose id was already dispatched is not dispatched again (a replay that overlaps
 *   what was seen is harmless);
 * - `reset` (the server no longer knows our last id) is passed to the 'reset' listeners, whose
 *   job is to reload state.
 *
 * @example
 * import { connect } from '/herald.js';
 *
 * const stream = connect('/api/events', {
 *   onStatus: (status) => { pill.textContent = status; },
 * });
 * stream.on('todos:created', (event) => todos.set(event.data.id, event.data));
 * stream.on('todos:deleted', (event) => todos.delete(event.data.id));
 * stream.on('reset', () => reloadEverything());
 * // later
 * stream.close();
 *
 * @module herald
 */

/** First backoff ceiling after the EventSource gave up, in ms. */
const BACKOFF_BASE_MS = 500;
/** Largest backoff ceiling, in ms. */
const BACKOFF_CAP_MS = 30_000;
/** After this many failed attempts in a row the status says 'offline' (it keeps trying). */
const OFFLINE_AFTER_ATTEMPTS = 6;
/** How many recent event ids are remembered to drop duplicates. */
const SEEN_IDS = 1024;

/**
 * @typedef {'connecting' | 'connected' | 'reconnecting' | 'offline'} Status
 *
 * @typedef {object} Stream
 * @property {(type: string, fn: (data: any, event: MessageEvent) => void) => Stream} on
 *   Adds a listener for one event type (`'message'` for events without a type).
 * @property {(type: string, fn: Function) => Stream} off  Removes a listener added with `on`.
 * @property {() => void} close  Closes the stream for good.
 * @property {Status} status  The current status.
 * @property {string | null} lastEventId  The id of the last event seen.
 */

/**
 * Opens a stream.
 *
 * @param {string} url  The stream's URL, e.g. `'/api/events'` or `'/api/events?types=todos'`.
 * @param {object} [options]
 * @param {(status: Status) => void} [options.onStatus]  Called whenever the status changes.
 * @param {boolean} [options.withCredentials]  For cross-origin streams that need cookies.
 * @returns {Stream}
 */
export function connect(url, { onStatus, withCredentials = false } = {}) {
  /** type -> Set of listeners */
  const listeners = new Map();
  /** Recently dispatched event ids, oldest first, to drop duplicates. */
  const seen = new Set();

  let source = null;
  let sourceLastId = ''; // the last `lastEventId` reported by the current EventSource
  let status = null;
  let lastEventId = null;
  let attempt = 0; // failed attempts since the last `connected`
  let timer = null;
  let closed = false;

  const setStatus = (next) => {
    if (next === status) return;
    status = next;
    try {
      onStatus?.(next);
    } catch (err) {
      console.error('herald: onStatus threw', err);
    }
  };

  /** One handler for every event type: parse, drop duplicates, fan out. */
  const dispatch = (event) => {
    if (closed || event.target !== source) return;
    // EventSource's `lastEventId` is sticky: an event without an `id:` line (like `connected`)
    // reports the previous event's id. So an event has an id of its own only when it differs
    // from the previous one seen on this EventSource.
    const id = event.lastEventId;
    const ownId = id !== '' && id !== sourceLastId;
    sourceLastId = id;
    if (ownId) {
      const control = event.type === 'connected' || event.type === 'reset';
      if (seen.has(id) && !control) return; // a replayed event we already dispatched
      seen.add(id);
      if (seen.size > SEEN_IDS) seen.delete(seen.values().next().value);
      lastEventId = id;
    }
    if (event.type === 'connected') {
      attempt = 0;
      setStatus('connected');
    }
    let data = event.data;
    try {
      data = JSON.parse(event.data);
    } catch {
      // Not JSON: pass the text as it is.
    }
    for (const fn of [...(listeners.get(event.type) ?? [])]) {
      try {
        fn(data, event);
      } catch (err) {
        console.error(`herald: a '${event.type}' listener threw`, err);
      }
    }
  };

  const listen = (type) => source?.addEventListener(type, dispatch);

  const open = () => {
    timer = null;
    if (closed) return;
    let target = url;
    if (lastEventId) {
      const u = new URL(url, location.href);
      u.searchParams.set('lastEventId', lastEventId);
      target = u.href;
    }
    if (status === null) setStatus('connecting');
    const es = new EventSource(target, { withCredentials });
    source = es;
    sourceLastId = '';
    for (const type of new Set(['connected', 'reset', ...listeners.keys()])) listen(type);
    es.onerror = () => {
      if (closed || es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (non-200 answer, wrong content type): retry ourselves.
        es.close();
        source = null;
        schedule();
      } else {
        // The browser is reconnecting by itself (it sends Last-Event-ID).
        setStatus(navigator.onLine === false ? 'offline' : 'reconnecting');
      }
    };
  };

  /** Full jitter: a uniformly random delay in [0, min(cap, base * 2^attempt)). */
  const schedule = () => {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt += 1;
    const offline = navigator.onLine === false || attempt > OFFLINE_AFTER_ATTEMPTS;
    setStatus(offline ? 'offline' : 'reconnecting');
    clearTimeout(timer);
    timer = setTimeout(open, Math.random() * ceiling);
  };

  // The browser knows when the network is gone; say so at once rather than after timeouts.
  const onOffline = () => {
    if (!closed) setStatus('offline');
  };
  const onOnline = () => {
    if (closed) return;
    if (source === null) {
      // Waiting on a backoff timer: try now.
      clearTimeout(timer);
      attempt = 0;
      setStatus('reconnecting');
      open();
    } else if (source.readyState === EventSource.OPEN) {
      setStatus('connected'); // the connection outlived the blip
    } else {
      setStatus('reconnecting');
    }
  };
  window.addEventListener('offline', onOffline);
  window.addEventListener('online', onOnline);

  const stream = {
    on(type, fn) {
      if (!listeners.has(type)) {
        listeners.set(type, new Set());
        if (type !== 'connected' && type !== 'reset') listen(type);
      }
      listeners.get(type).add(fn);
      return stream;
    },
    off(type, fn) {
      listeners.get(type)?.delete(fn);
      return stream;
    },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      source?.close();
      source = null;
      window.removeEventListener('offline', onOffline);
      window.removeEventListener('online', onOnline);
      setStatus('offline');
    },
    get status() {
      return status;
    },
    get lastEventId() {
      return lastEventId;
    },
  };

  open();
  return stream;
}
