// The hub as a browser sees it: Chromium's own EventSource subscribes at /.well-known/mercure,
// the page publishes with fetch, and the update arrives with its id, type and multi-line data.
// A private update reaches only the subscriber whose JWT allows its topic.
//
// The page is first navigated to the hub's /healthz so that EventSource and fetch are
// same-origin requests to the hub. A screenshot of what was received is saved to
// tests/browser/artifacts/hub.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { launchBrowser, mintToken, startHerald } from './harness.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const SELECTOR = 'https://example.com/books/{id}';
/** How long the page waits for an EventSource to open or an update to arrive. */
const WAIT_MS = 5_000;

let herald;
let browser;
/** What each test saw, rendered into the screenshot at the end. */
const summary = [];

before(async () => {
  herald = await startHerald({ args: ['--anonymous'] });
  browser = await launchBrowser();
});

after(async () => {
  try {
    if (browser) await screenshotSummary();
  } finally {
    await browser?.close();
    await herald?.stop();
  }
});

/** A new page (own context, so own connection pool) on a same-origin document of the hub. */
async function hubPage(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const res = await page.goto(`${herald.url}/healthz`);
  assert.equal(res.status(), 200);
  return page;
}

test('an update published with fetch reaches the page EventSource', { timeout: 30_000 }, async (t) => {
  const page = await hubPage(t);
  const publisher = mintToken({ publish: ['*'] });

  const result = await page.evaluate(
    async ({ selector, publisher, waitMs }) => {
      const withTimeout = (promise, what) =>
        Promise.race([
          promise,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`timed out after ${waitMs} ms waiting for ${what}`)), waitMs),
          ),
        ]);

      const es = new EventSource('/.well-known/mercure?topic=' + encodeURIComponent(selector));
      try {
        await withTimeout(
          new Promise((resolve, reject) => {
            es.onopen = resolve;
            es.onerror = () => reject(new Error('EventSource failed before it opened'));
          }),
          'the EventSource to open',
        );
        es.onerror = null;
        const received = withTimeout(
          new Promise((resolve) =>
            es.addEventListener('book', (e) => resolve({ data: e.data, lastEventId: e.lastEventId }), {
              once: true,
            }),
          ),
          'the "book" event',
        );

        const res = await fetch('/.well-known/mercure', {
          method: 'POST',
          headers: { Authorization: `Bearer ${publisher}` },
          body: new URLSearchParams({
            topic: 'https://example.com/books/1',
            data: 'hello\nworld',
            id: 'evt-1',
            type: 'book',
          }),
        });
        const publish = { status: res.status, body: await res.text() };
        if (publish.status !== 200) return { publish, event: null };
        return { publish, event: await received };
      } finally {
        es.close();
      }
    },
    { selector: SELECTOR, publisher, waitMs: WAIT_MS },
  );

  summary.push({ test: 'public update', ...result });
  assert.deepEqual(result.publish, { status: 200, body: 'evt-1' });
  assert.deepEqual(result.event, { data: 'hello\nworld', lastEventId: 'evt-1' });
});

test('a private update reaches only the subscriber authorized for its topic', { timeout: 30_000 }, async (t) => {
  const page = await hubPage(t);
  const publisher = mintToken({ publish: ['*'] });
  const subscriber = mintToken({ subscribe: [SELECTOR] });

  const result = await page.evaluate(
    async ({ selector, publisher, subscriber, waitMs }) => {
      const withTimeout = (promise, what) =>
        Promise.race([
          promise,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`timed out after ${waitMs} ms waiting for ${what}`)), waitMs),
          ),
        ]);

      // Each subscriber records every update it gets, typed or not, in arrival order, and
      // resolves `sawSentinel` on the public update sent after the private one: updates arrive
      // in order, so by then the private one has arrived too, if it ever will.
      const subscribe = (name, url) => {
        const es = new EventSource(url);
        const seen = [];
        let sawSentinel;
        const sentinel = new Promise((resolve) => (sawSentinel = resolve));
        const record = (e) => {
          seen.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
          if (e.lastEventId === 'evt-public-2') sawSentinel();
        };
        es.addEventListener('book', record);
        es.addEventListener('message', record);
        const opened = withTimeout(
          new Promise((resolve, reject) => {
            es.onopen = () => {
              es.onerror = null;
              resolve();
            };
            es.onerror = () => reject(new Error(`${name} EventSource failed before it opened`));
          }),
          `the ${name} EventSource to open`,
        );
        return { name, es, seen, opened, sentinel };
      };

      const query = '/.well-known/mercure?topic=' + encodeURIComponent(selector);
      const anonymous = subscribe('anonymous', query);
      const authorized = subscribe('authorized', query + '&authorization=' + encodeURIComponent(subscriber));
      const publish = async (fields) => {
        const res = await fetch('/.well-known/mercure', {
          method: 'POST',
          headers: { Authorization: `Bearer ${publisher}` },
          body: new URLSearchParams(fields),
        });
        return { status: res.status, body: await res.text() };
      };

      try {
        await Promise.all([anonymous.opened, authorized.opened]);
        const privateRes = await publish({
          topic: 'https://example.com/books/2',
          data: 'secret',
          id: 'evt-private-2',
          type: 'book',
          private: 'on',
        });
        const publicRes = await publish({
          topic: 'https://example.com/books/2',
          data: 'public',
          id: 'evt-public-2',
          type: 'book',
        });
        const published = { private: privateRes, public: publicRes };
        if (privateRes.status !== 200 || publicRes.status !== 200) {
          return { published, anonymous: anonymous.seen, authorized: authorized.seen };
        }
        await Promise.all(
          [anonymous, authorized].map((s) => withTimeout(s.sentinel, `the ${s.name} subscriber to get evt-public-2`)),
        );
        return { published, anonymous: anonymous.seen, authorized: authorized.seen };
      } finally {
        anonymous.es.close();
        authorized.es.close();
      }
    },
    { selector: SELECTOR, publisher, subscriber, waitMs: WAIT_MS },
  );

  summary.push({ test: 'private update', ...result });
  assert.deepEqual(result.published, {
    private: { status: 200, body: 'evt-private-2' },
    public: { status: 200, body: 'evt-public-2' },
  });
  assert.deepEqual(result.anonymous, [{ type: 'book', data: 'public', lastEventId: 'evt-public-2' }]);
  assert.deepEqual(result.authorized, [
    { type: 'book', data: 'secret', lastEventId: 'evt-private-2' },
    { type: 'book', data: 'public', lastEventId: 'evt-public-2' },
  ]);
});

/** Renders what the tests saw as a small HTML page and saves its screenshot. */
async function screenshotSummary() {
  await mkdir(ARTIFACTS, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  try {
    const escape = (s) =>
      String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
    const rows = summary.length
      ? summary
          .map((entry) => `<h2>${escape(entry.test)}</h2><pre>${escape(JSON.stringify(entry, null, 2))}</pre>`)
          .join('')
      : '<p>No test recorded a result.</p>';
    await page.setContent(
      `<!doctype html><meta charset="utf-8"><title>Herald hub browser test</title>
       <style>body{font:14px sans-serif;margin:16px}pre{background:#f4f4f4;padding:8px}</style>
       <h1>Herald hub: what Chromium's EventSource received</h1>
       <p>Hub ${escape(herald?.url ?? '(not started)')}</p>${rows}`,
    );
    await page.screenshot({ path: `${ARTIFACTS}hub.png`, fullPage: true });
  } finally {
    await page.close();
  }
}
