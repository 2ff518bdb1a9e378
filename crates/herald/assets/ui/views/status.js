// The status pill: whether the stream is live, and how events arrive.

import { byTestId } from '../dom.js';

/** Shows how events arrive (stream or long-poll) and whether this tab runs the shared stream. */
export function renderTransport({ transport, role }) {
  const pill = byTestId('status');
  pill.dataset.transport = transport;
  pill.dataset.role = role;
}

/** Shows the stream's status. */
export function renderStatus(status) {
  const pill = byTestId('status');
  // The pill says one of three words; the first connection attempt counts as "reconnecting".
  const word = status === 'connected' ? 'connected' : status === 'offline' ? 'offline' : 'reconnecting';
  pill.textContent = word;
  pill.dataset.status = status;
  pill.title =
    status === 'connected'
      ? 'Live: changes appear as they happen'
      : status === 'offline'
        ? 'Offline: changes will appear when the connection is back'
        : 'Connecting to live updates…';
}
