// The SSE parser of /herald.js, without a browser: each input is fed whole, one character at a
// time, and split at every position, and must give the same events and retries every time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../../crates/herald/assets/herald.js';

/** Feeds `chunks` and returns what the parser reported, in order. */
function run(chunks) {
  const out = [];
  const parser = new SseParser({
    onEvent: (e) => out.push({ ...e }),
    onRetry: (ms) => out.push({ retry: ms }),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return out;
}

/**
 * Checks that `input` gives `expected` fed whole, char by char (also with empty chunks between
 * the characters), and split at each position and at each pair of positions.
 */
function check(input, expected) {
  assert.deepEqual(run([input]), expected, `whole: ${JSON.stringify(input)}`);
  assert.deepEqual(run([...input]), expected, `char by char: ${JSON.stringify(input)}`);
  assert.deepEqual(run([...input].flatMap((c) => ['', c, ''])), expected, `with empty chunks: ${JSON.stringify(input)}`);
  for (let i = 1; i < input.length; i++) {
    assert.deepEqual(run([input.slice(0, i), input.slice(i)]), expected, `split at ${i}: ${JSON.stringify(input)}`);
    // Three pieces, so that a piece may be a lone line end (a CR, then a chunk of just "\n").
    for (let j = i + 1; j < input.length; j++) {
      const chunks = [input.slice(0, i), input.slice(i, j), input.slice(j)];
      assert.deepEqual(run(chunks), expected, `split at ${i} and ${j}: ${JSON.stringify(input)}`);
    }
  }
}

const ev = (type, data, id = null, lastEventId = id ?? '') => ({ type, data, id, lastEventId });

const CASES = [
  ['data: hello\n\n', [ev('message', 'hello')]],
  ['data:hello\n\n', [ev('message', 'hello')]],
  ['data:  two spaces\n\n', [ev('message', ' two spaces')]],
  ['data: a\ndata: b\n\n', [ev('message', 'a\nb')]],
  ['data\n\n', [ev('message', '')]],
  ['data:\ndata:\n\n', [ev('message', '\n')]],
  ['event: todos:created\nid: 7\ndata: {"a":1}\n\n', [ev('todos:created', '{"a":1}', '7')]],
  // Line ends: CRLF, CR and LF alike, mixed.
  ['data: a\r\ndata: b\r\n\r\n', [ev('message', 'a\nb')]],
  ['data: a\rdata: b\r\r', [ev('message', 'a\nb')]],
  ['data: a\r\n\rdata: b\n\r\n', [ev('message', 'a'), ev('message', 'b')]],
  // A CRLF then LF: two line ends, so two events (fed char by char the LF after the CR comes
  // alone, and only that one LF belongs to the CR).
  ['data: a\r\n\ndata: b\n\n', [ev('message', 'a'), ev('message', 'b')]],
  ['data: a\r\n\r\ndata: b\r\n\r\n', [ev('message', 'a'), ev('message', 'b')]],
  // A lone CR ends a line, even right before the end of the input.
  ['data: a\r\rdata: b\r\r', [ev('message', 'a'), ev('message', 'b')]],
  ['data: a\r\r', [ev('message', 'a')]],
  ['data: a\r\n\r', [ev('message', 'a')]],
  // A BOM is skipped at the start only.
  ['\uFEFFdata: x\n\n', [ev('message', 'x')]],
  ['data: \uFEFFx\n\n', [ev('message', '\uFEFFx')]],
  // Comments are not events; an event without data is not dispatched, but its id sticks.
  [': heartbeat\n\n', []],
  [':\n: another\ndata: after\n\n', [ev('message', 'after')]],
  ['id: 1\n\ndata: x\n\n', [ev('message', 'x', null, '1')]],
  ['event: lonely\n\ndata: x\n\n', [ev('message', 'x')]],
  // The last id is sticky; an own id only on events that carry one; an empty id resets it.
  ['id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n', [ev('message', 'a', '1'), ev('message', 'b', null, '1'), ev('message', 'c', null, '')]],
  // An id with NUL is ignored.
  ['id: 1\ndata: a\n\nid: 2\u00003\ndata: b\n\n', [ev('message', 'a', '1'), ev('message', 'b', null, '1')]],
  // retry: digits only.
  ['retry: 3000\n\n', [{ retry: 3000 }]],
  ['retry: 3000ms\nretry: -1\nretry:\nretry: 1.5\nretry: 10\n', [{ retry: 10 }]],
  // Unknown fields and a field without colon are ignored; a colon in the value is kept.
  ['foo: bar\nevent\ndata: a:b: c\n\n', [ev('message', 'a:b: c')]],
  // An unfinished event at the end is not dispatched.
  ['data: a\n\ndata: b\n', [ev('message', 'a')]],
  ['data: a\n\ndata: b', [ev('message', 'a')]],
];

test('the SSE parser follows the WHATWG rules, however the input is split', () => {
  for (const [input, expected] of CASES) check(input, expected);
});

test('the SSE parser refuses a line that never ends', () => {
  const parser = new SseParser();
  const chunk = 'x'.repeat(1024 * 1024);
  assert.throws(() => {
    for (let i = 0; i < 9; i++) parser.feed(chunk);
  }, /too long/);
});
