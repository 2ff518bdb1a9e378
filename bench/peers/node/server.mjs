// A plain Express SSE server, as a Node.js team would write one: a peer in Herald's
// side-by-side benchmark.
//
// GET /events?topic=T  keeps the response in a per-topic Set and streams `data: ...\n\n` frames.
// POST /publish        JSON {topic, data}: writes one frame to every response on that topic.
//
// Usage: node server.mjs --port 8083 (listens on 127.0.0.1 only).

import express from 'express';

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 8083;

/** @type {Map<string, Set<import('express').Response>>} */
const topics = new Map();

const app = express();
app.use(express.json({ limit: '1mb' }));

app.get('/healthz', (_req, res) => res.send('ok'));

app.get('/events', (req, res) => {
  const topic = String(req.query.topic ?? '');
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
  });
  res.flushHeaders();
  let subs = topics.get(topic);
  if (!subs) {
    subs = new Set();
    topics.set(topic, subs);
  }
  subs.add(res);
  req.on('close', () => {
    subs.delete(res);
    if (subs.size === 0 && topics.get(topic) === subs) topics.delete(topic);
  });
});

app.post('/publish', (req, res) => {
  const { topic, data } = req.body ?? {};
  if (typeof topic !== 'string' || typeof data !== 'string') {
    res.status(400).json({ error: 'topic and data must be strings' });
    return;
  }
  const frame = `data: ${data.replace(/\r?\n/g, '\ndata: ')}\n\n`;
  const subs = topics.get(topic);
  if (subs) for (const sub of subs) sub.write(frame);
  res.json({ delivered: subs ? subs.size : 0 });
});

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${port}`);
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 0;
server.requestTimeout = 0;

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
