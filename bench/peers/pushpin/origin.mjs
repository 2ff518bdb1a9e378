// The origin behind Pushpin in Herald's side-by-side benchmark (Node, no dependencies).
//
// Every GET is answered with GRIP instructions: hold the response open as an SSE stream on
// channel `<topic>` (the `topic` query parameter). Pushpin keeps the connection; publishes go
// to Pushpin's publish endpoint, not here.
//
// Usage: node origin.mjs --port 8090 (listens on 127.0.0.1 only).

import http from 'node:http';

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 8090;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://origin');
  if (url.pathname === '/healthz') {
    res.end('ok\n');
    return;
  }
  const topic = url.searchParams.get('topic') ?? '';
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    'Grip-Hold': 'stream',
    'Grip-Channel': topic,
  });
  res.end();
});
server.listen(port, '127.0.0.1', () => console.log(`origin listening on 127.0.0.1:${port}`));

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
