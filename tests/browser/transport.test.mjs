// The transport of /herald.js without a browser, against a scripted `fetch`: answers the real
// server gives only in rare moments (no response headers at all, a poll answer whose
// `lastEventId` moved without events or is `null`, a Mercure update typed `connected`) are
// played here on demand. What a browser and the real server do together is in tabs.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

// The few browser globals herald.js uses outside a page.
const events = new EventTarget();
globalThis.addEventListener = events.addEventListener.bind(events);
globalThis.removeEventListener = events.removeEventListener.bind(events);
globalThis.location = new URL('http://herald.test/');
Object.defineProperty(globalThis, 'navigator', { value: { onLine: true }, configurable: true });

const { connect } = await import('../../crates/herald/assets/herald.js');

const encoder = new TextEncoder();
const aborted = () => new DOMException('aborted', 'AbortError');

/**
 * Installs a `fetch` that records each request (`{ url, accept, signal }`) and answers with
 * `answer(request, index)`. Returns the list of requests.
 */
function script(answer) {
  const requests = [];
  globalThis.fetch = async (url, init) => {
    const request = { url: new URL(url, location.href), accept: init.headers.Accept, signal: init.signal, at: Date.now() };
    requests.push(request);
    return answer(request, requests.length - 1);
  };
  return requests;
}

/** No response headers, ever (until aborted). */
const noAnswer = (request) =>
  new Promise((_, reject) => request.signal.addEventListener('abort', () => reject(aborted())));

/** A stream response: `chunks` at once, then open until aborted (or closed if `end`). */
function sse(request, { chunks = [], headers = {}, end = false } = {}) {
  const body = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      if (end) controller.close();
      request.signal.addEventListener('abort', () => {
        try {
          controller.error(aborted());
        } catch {
          // Already closed.
        }
      });
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/event-stream', ...headers } });
}

const pollAnswer = (json) => new Response(JSON.stringify(json), { headers: { 'content-type': 'application/json' } });

/** Resolves once `probe()` is true; fails after 10 s. */
async function until(probe, what) {
  const deadline = Date.now() + 10_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Connects with a stream of its own, recording statuses and dispatched events. */
function open(url, options = {}) {
  const log = { statuses: [], events: [] };
  const stream = connect(url, { share: false, onStatus: (s) => log.statuses.push(s), ...options });
  for (const type of ['connected', 'reset', 'message', 'todos:created']) {
    stream.on(type, (data, event) => log.events.push({ type, data: event.data, lastEventId: event.lastEventId }));
  }
  return { stream, log };
}

test('no response headers is a failure with backoff; only a second one in a row switches to polling', async () => {
  const requests = script((request) => (request.accept === 'application/json' ? pollAnswer({ events: [], lastEventId: 'h', retry: 50 }) : noAnswer(request)));
  const { stream, log } = open('/api/events', { firstByteTimeout: 40 });
  try {
    await until(() => requests.some((r) => r.accept === 'application/json'), 'a poll');
    const beforePoll = requests.slice(0, requests.findIndex((r) => r.accept === 'application/json'));
    assert.deepEqual(beforePoll.map((r) => r.accept), ['text/event-stream', 'text/event-stream'], 'one retry of the stream first');
    assert.ok(log.statuses.indexOf('reconnecting') > 0, `a backoff between the two: ${log.statuses}`);
    await until(() => stream.transport === 'poll' && stream.status === 'connected', 'polling');
  } finally {
    stream.close();
  }
});

test('headers and then no byte within firstByteTimeout switch to polling at once', async () => {
  const requests = script((request) => (request.accept === 'application/json' ? pollAnswer({ events: [], lastEventId: 'h', retry: 50 }) : sse(request)));
  const { stream } = open('/api/events', { firstByteTimeout: 40 });
  try {
    await until(() => stream.transport === 'poll', 'polling');
    assert.deepEqual(requests.slice(0, 2).map((r) => r.accept), ['text/event-stream', 'application/json']);
  } finally {
    stream.close();
  }
});

test('a stream without a resume id starts at its Last-Event-ID header; a resumed one ignores it', async () => {
  const requests = script((request, i) =>
    sse(request, { headers: { 'last-event-id': `head-${i}` }, chunks: ['retry: 20\n\n'], end: i === 0 }),
  );
  const { stream } = open('/api/events', { firstByteTimeout: 0 });
  try {
    await until(() => requests.length >= 2, 'a second stream');
    assert.equal(requests[0].url.searchParams.get('lastEventId'), null);
    assert.equal(requests[1].url.searchParams.get('lastEventId'), 'head-0', 'resumed from the header of the first');
    await until(() => stream.status === 'connected', 'the second stream');
    assert.equal(stream.lastEventId, 'head-0', 'the header of a resumed stream is not a cursor');
  } finally {
    stream.close();
  }
});

test('a poll answer moves the cursor without events, forgets it on null, and reset-only answers are not repeated at once', async () => {
  const answers = [
    { events: [{ type: 'connected', data: '{}' }, { type: 'todos:created', id: '5', data: '{"n":1}' }], lastEventId: '5', retry: 200 },
    { events: [], lastEventId: '9', retry: 200 }, // moved past what this subscription may see
    { events: [{ type: 'connected', data: '{}' }, { type: 'reset', data: '{}' }], lastEventId: null, retry: 200 },
    { events: [{ type: 'connected', data: '{}' }], lastEventId: '12', retry: 200 },
  ];
  let polls = 0;
  const answered = [];
  const requests = script((request) => {
    if (request.accept !== 'application/json') return sse(request); // buffered: poll
    const answer = answers[Math.min(polls++, answers.length - 1)];
    answered.push(Date.now());
    return pollAnswer(answer);
  });
  const { stream, log } = open('/api/events', { firstByteTimeout: 40, streamRetryInterval: 60_000 });
  try {
    await until(() => polls >= 4, 'four polls');
    const polled = requests.filter((r) => r.accept === 'application/json').map((r) => r.url.searchParams.get('lastEventId'));
    assert.deepEqual(polled.slice(0, 4), [null, '5', '9', null], 'the cursor moved to 9, then was forgotten');
    // The reset-only answer (the third) came at once; the fourth poll waited for about `retry`.
    assert.ok(requests.filter((r) => r.accept === 'application/json')[3].at - answered[2] >= 100, 'asked again at once');
    await until(() => stream.lastEventId === '12', 'the cursor of the fourth answer');
    assert.deepEqual(
      log.events.map((e) => e.type),
      ['connected', 'todos:created', 'reset'],
      'the same `connected` once, the reset dispatched',
    );
  } finally {
    stream.close();
  }
});

test('a Mercure update typed `connected` (it has an id) is dispatched like any other event', async () => {
  let polls = 0;
  script((request) => {
    if (request.accept !== 'application/json') return sse(request);
    polls++;
    const id = `urn:uuid:${polls}`;
    if (polls > 3) return noAnswer(request);
    return pollAnswer({ events: [{ type: 'connected', id, data: 'same' }], lastEventId: id, retry: 20 });
  });
  const { stream, log } = open('/.well-known/mercure?topic=t', { firstByteTimeout: 40 });
  try {
    await until(() => log.events.length >= 3, 'three updates');
    assert.deepEqual(
      log.events.map((e) => [e.type, e.data, e.lastEventId]),
      [1, 2, 3].map((n) => ['connected', 'same', `urn:uuid:${n}`]),
    );
    assert.equal(stream.lastEventId, 'urn:uuid:3');
  } finally {
    stream.close();
  }
});

test('back from the back/forward cache, a transport reopens its stream from the last id', async () => {
  const requests = script((request) => sse(request, { chunks: ['retry: 50\n\nid: 7\ndata: x\n\n'] }));
  const { stream, log } = open('/api/events', { firstByteTimeout: 0 });
  try {
    await until(() => stream.lastEventId === '7', 'the first event');
    const shown = new Event('pageshow');
    shown.persisted = true;
    events.dispatchEvent(new Event('pageshow')); // a first load: nothing to do
    assert.equal(requests.length, 1);
    events.dispatchEvent(shown);
    await until(() => requests.length === 2 && stream.status === 'connected', 'a new stream');
    assert.equal(requests[0].signal.aborted, true, 'the frozen request is dropped');
    assert.equal(requests[1].url.searchParams.get('lastEventId'), '7');
    assert.deepEqual(log.events.map((e) => e.data), ['x'], 'the replayed event is dropped by id');
    assert.ok(!log.statuses.includes('offline'));
  } finally {
    stream.close();
  }
});
