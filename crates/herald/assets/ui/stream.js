// The web app's one event stream (`/api/events`, with presence, through /herald.js): subscribes to the
// events of events.js and hands each to its handler until the stream is closed.

import { connect } from '/herald.js';
import { EVENTS, RESOURCE_EVENTS, WORKSPACE_EVENTS } from './events.js';

/**
 * Opens the stream right after log position `after` (the `Herald-Position` of the data loaded
 * first; null: from now). `handlers`: `onStatus` and `onChange` (herald.js's), then one per
 * kind of event: `connected`, `reset`, `resource`, `workspace`, `memberAdded`,
 * `memberRemoved`, `notification`, `announcement`, `presence`. Returns `{ ready, close }`: `ready`
 * resolves on the first `connected`; after `close()` no handler runs for an event of this
 * stream.
 */
export function openStream(after, handlers) {
  let open = true;
  let resolveReady;
  const ready = new Promise((resolve) => (resolveReady = resolve));
  const stream = connect('/api/events?presence=true', { after, onStatus: handlers.onStatus, onChange: handlers.onChange });
  const on = (type, handler) => stream.on(type, (data) => open && handler(data));

  on(EVENTS.connected, (data) => {
    resolveReady();
    handlers.connected(data);
  });
  on(EVENTS.reset, () => handlers.reset());
  for (const type of RESOURCE_EVENTS) on(type, handlers.resource);
  for (const type of WORKSPACE_EVENTS) on(type, handlers.workspace);
  on(EVENTS.memberAdded, handlers.memberAdded);
  on(EVENTS.memberRemoved, handlers.memberRemoved);
  on(EVENTS.notification, handlers.notification);
  on(EVENTS.announcement, handlers.announcement);
  on(EVENTS.presence, handlers.presence);

  return {
    ready,
    close() {
      open = false;
      stream.close();
    },
  };
}
