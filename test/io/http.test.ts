/**
 * HttpBackend against a real HTTP server on loopback (test/net/range-server.ts) and, for faults, the
 * fault proxy in front of it: what it reads equals the file, how many requests and bytes that costs
 * (counted at the server), and how each refusal or change of the object is reported.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { VhdxError } from '../../src/format/errors.js';
import { HttpBackend, redactUrl } from '../../src/io/http.js';
import { readFully } from '../../src/io/backend.js';
import { createChild, openImage } from '../../src/node/paths.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { create } from '../../src/ops/create.js';
import { patternBytes, tempDir } from '../helpers.js';
import { startFaultProxy } from '../net/fault-proxy.js';
import { startRangeServer, type RangeServer } from '../net/range-server.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SECRET = 'sig=TOPSECRET';

/** `fn` rejects with a VhdxError of `code` whose message matches `pattern` and never shows the secret. */
async function rejectsWith(fn: () => Promise<unknown>, code: string, pattern: RegExp): Promise<VhdxError> {
  let caught: unknown;
  await fn().catch((e: unknown) => (caught = e));
  assert.ok(caught instanceof VhdxError, `expected a VhdxError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.match(caught.message, pattern);
  assert.doesNotMatch(`${caught.message} ${caught.file}`, /TOPSECRET/);
  assert.doesNotMatch(caught.message, /\n/);
  return caught;
}

describe('HttpBackend', () => {
  const dir = tempDir('vhdx-http-');
  const bytes = patternBytes(5 * MiB + 333, 7);
  const file = join(dir.path, 'data.bin');
  let server: RangeServer;
  let url: string;

  before(async () => {
    writeFileSync(file, bytes);
    server = await startRangeServer();
    server.serve('/data.bin', file);
    url = `${server.origin}/data.bin?${SECRET}`;
  });
  after(async () => {
    await server.close();
    dir.cleanup();
  });

  test('redactUrl keeps origin and path, hides query, credentials and fragment', () => {
    assert.equal(redactUrl('https://acct.blob.core.windows.net/c/disk.vhdx?sv=2022&sig=abc%2F#x'), 'https://acct.blob.core.windows.net/c/disk.vhdx?REDACTED');
    assert.equal(redactUrl('http://user:pw@host:8080/a/b.vhdx'), 'http://host:8080/a/b.vhdx');
    assert.equal(redactUrl('http://host/a.vhdx'), 'http://host/a.vhdx');
  });

  test('one request opens; small reads are cached, adjacent misses coalesced, shared in flight; large reads go straight through', async () => {
    server.set({});
    server.resetStats();
    const backend = await HttpBackend.open(url, { pieceSize: 64 * KiB, cacheBytes: MiB, maxRequestBytes: 512 * KiB, maxParallel: 3 });
    assert.equal(await backend.size(), bytes.length);
    assert.equal(server.stats.requests, 1);
    assert.equal(backend.name, `${server.origin}/data.bin?REDACTED`);
    const check = async (position: number, length: number): Promise<void> => {
      const target = new Uint8Array(length);
      const n = await readFully(backend, target, position);
      const expected = bytes.subarray(position, position + length);
      assert.equal(n, expected.length);
      assert.ok(Buffer.from(target.subarray(0, n)).equals(expected), `bytes at ${position}+${length}`);
    };
    await check(100, 50); // inside the first piece, fetched by open
    assert.equal(server.stats.requests, 1);
    await check(2 * 64 * KiB + 10, 2 * 64 * KiB); // pieces 2..4, all missing: one request
    assert.equal(server.stats.requests, 2);
    assert.equal(server.stats.bytes, 64 * KiB + 3 * 64 * KiB);
    assert.match(String(server.stats.lastHeaders['if-match']), /^"/, 'requests after the first carry If-Match');
    await Promise.all([check(20 * 64 * KiB, 100), check(20 * 64 * KiB + 500, 100), check(20 * 64 * KiB + 9000, 4096)]);
    assert.equal(server.stats.requests, 3, 'concurrent reads of one piece share its request');
    // 3 MiB at an odd offset: six requests of at most 512 KiB, three at a time, exactly the bytes asked.
    server.resetStats();
    await check(MiB + 7, 3 * MiB);
    assert.equal(server.stats.bytes, 3 * MiB);
    assert.equal(server.stats.requests, 6);
    assert.ok(server.stats.maxConcurrent <= 3 && server.stats.maxConcurrent >= 2, `max concurrent ${server.stats.maxConcurrent}`);
    // It evicted nothing: the pieces read before are still cached.
    await check(100, 50);
    await check(2 * 64 * KiB + 10, 2 * 64 * KiB);
    assert.equal(server.stats.requests, 6);
    await check(bytes.length - 100, 4096); // short at the end
    assert.equal(await backend.read(new Uint8Array(10), bytes.length), 0);
    await rejectsWith(() => backend.write(new Uint8Array(1), 0), 'READ_ONLY', /read-only/);
    await backend.close();
  });

  test('refusals: 403, 404, a server ignoring Range, retries exhausted; each one line, signature redacted', async () => {
    server.set({ status: 403 });
    const denied = await rejectsWith(() => HttpBackend.open(url), 'REMOTE', /^access denied \(HTTP 403\)/);
    assert.equal(denied.file, `${server.origin}/data.bin?REDACTED`);
    server.set({ status: 404 });
    await rejectsWith(() => HttpBackend.open(url), 'NOT_FOUND', /^no such object \(HTTP 404\)/);
    server.set({ ignoreRange: true });
    server.resetStats();
    await rejectsWith(() => HttpBackend.open(url), 'REMOTE', /ignores HTTP Range/);
    server.set({ status: 503 });
    server.resetStats();
    await rejectsWith(() => HttpBackend.open(url, { maxAttempts: 3, retryDelayMs: 1 }), 'REMOTE', /^gave up after 3 tries: HTTP 503/);
    assert.equal(server.stats.requests, 3);
    server.set({});
    await rejectsWith(() => HttpBackend.open('ftp://host/x?sig=TOPSECRET'), 'INVALID_ARGUMENT', /not an http or https URL/);
  });

  test('an empty object opens with size 0 (416 to the first range) and reads nothing', async () => {
    const empty = join(dir.path, 'empty.bin');
    writeFileSync(empty, new Uint8Array(0));
    server.serve('/empty.bin', empty);
    server.set({});
    const backend = await HttpBackend.open(`${server.origin}/empty.bin`);
    assert.equal(await backend.size(), 0);
    assert.equal(await backend.read(new Uint8Array(512), 0), 0);
    await backend.close();
  });

  test('an object that changes mid-read is CHANGED: by If-Match (412), or by the ETag of the answer', async () => {
    for (const switches of [{ changeAfter: 1 }, { changeAfter: 1, ignoreIfMatch: true }]) {
      server.set(switches);
      const backend = await HttpBackend.open(url, { pieceSize: 64 * KiB });
      await rejectsWith(() => readFully(backend, new Uint8Array(4096), 2 * MiB), 'CHANGED', /changed while it was being read/);
      await backend.close();
    }
    server.set({});
  });

  test('through 10% 503s, resets mid-body and a stall past the timeout, every byte arrives intact', async () => {
    const proxy = await startFaultProxy(server.origin, { errorRate: 0.1, resetRate: 0.1, stalls: [{ request: 3, ms: 1500 }], seed: 5 });
    try {
      server.set({});
      const backend = await HttpBackend.open(`${proxy.origin}/data.bin?${SECRET}`, { pieceSize: 64 * KiB, cacheBytes: 512 * KiB, maxRequestBytes: 256 * KiB, timeoutMs: 700, retryDelayMs: 5 });
      const target = new Uint8Array(bytes.length);
      // Small reads through the cache, then large reads straight through.
      for (let position = 0; position < MiB; position += 8 * KiB) await readFully(backend, target.subarray(position, position + 8 * KiB), position);
      await readFully(backend, target.subarray(MiB), MiB);
      assert.ok(Buffer.from(target).equals(bytes));
      assert.ok(proxy.stats.errors > 0 && proxy.stats.resets > 0 && proxy.stats.stalls === 1, JSON.stringify(proxy.stats));
      assert.ok(backend.stats.retries >= proxy.stats.errors + proxy.stats.resets, `retries ${backend.stats.retries}`);
      await backend.close();
    } finally {
      await proxy.close();
    }
  });

  test('a differencing chain read by URL finds its parent beside it, with the same query string', async () => {
    const base = join(dir.path, 'base.vhdx');
    const child = join(dir.path, 'child.vhdx');
    const backend = await NodeFileBackend.open(base, { readOnly: false, create: true, cache: 'unsafe' });
    await create(backend, { virtualSize: 64 * MiB, blockSize: MiB });
    await backend.close();
    const writable = await openImage(base, { readOnly: false, cache: 'unsafe' });
    await writable.write(0, patternBytes(3 * MiB, 1));
    await writable.close();
    await createChild(child, base, { blockSize: MiB });
    const top = await openImage(child, { readOnly: false, cache: 'unsafe' });
    await top.write(MiB + 512, patternBytes(4096, 2));
    await top.close();
    server.serve('/chain/base.vhdx', base);
    server.serve('/chain/child.vhdx', child);
    server.set({});
    server.resetStats();
    const local = await openImage(child);
    const remote = await openImage(`${server.origin}/chain/child.vhdx?${SECRET}`);
    try {
      assert.equal(remote.chain().length, 2);
      assert.equal(remote.parent!.backend.name, `${server.origin}/chain/base.vhdx?REDACTED`);
      assert.ok(Buffer.from(await remote.read(0, 4 * MiB)).equals(await local.read(0, 4 * MiB)));
    } finally {
      await remote.close();
      await local.close();
    }
    // A writable open of a URL is refused before any request.
    server.resetStats();
    await rejectsWith(() => openImage(`${server.origin}/chain/child.vhdx?${SECRET}`, { readOnly: false }), 'INVALID_ARGUMENT', /can only be read/);
    assert.equal(server.stats.requests, 0);
    // A parent that is not there: the hint names --parent.
    server.serve('/alone/child.vhdx', child);
    await rejectsWith(() => openImage(`${server.origin}/alone/child.vhdx?${SECRET}`), 'NOT_FOUND', /parent .*base\.vhdx\?REDACTED: no such object.*--parent/);
  });

  test('a hostile server: bad or lying Content-Range, a body longer than asked; nothing allocated from it', async () => {
    let answer: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
    const liar = createServer((req, res) => answer(req, res));
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    const liarUrl = `http://127.0.0.1:${(liar.address() as AddressInfo).port}/x?${SECRET}`;
    const honest = (req: IncomingMessage, res: ServerResponse): void => {
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.range!)!;
      const first = Number(a);
      const last = Math.min(Number(b), bytes.length - 1);
      res.writeHead(206, { 'Content-Range': `bytes ${first}-${last}/${bytes.length}`, ETag: '"1"' });
      res.end(bytes.subarray(first, last + 1));
    };
    try {
      // A size past 2^53, a range past the size, no Content-Range: refused at open.
      for (const contentRange of ['bytes 0-65535/99999999999999999', 'bytes 0-65535/1000', undefined]) {
        answer = (_req, res) => {
          res.writeHead(206, contentRange ? { 'Content-Range': contentRange } : {});
          res.end(bytes.subarray(0, 65536));
        };
        await rejectsWith(() => HttpBackend.open(liarUrl, { pieceSize: 64 * KiB }), 'REMOTE', /bad Content-Range/);
      }
      // Other bytes than asked for.
      answer = honest;
      const backend = await HttpBackend.open(liarUrl, { pieceSize: 64 * KiB, cacheBytes: 0 });
      answer = (_req, res) => {
        res.writeHead(206, { 'Content-Range': `bytes 0-4095/${bytes.length}`, ETag: '"1"' });
        res.end(bytes.subarray(0, 4096));
      };
      await rejectsWith(() => backend.read(new Uint8Array(4096), MiB), 'REMOTE', /asked for bytes 1048576-1052671, the server sent 0-4095/);
      // A body longer than its range (chunked, so no length to hold it to): stopped at what was asked.
      answer = (req, res) => {
        const first = Number(/bytes=(\d+)-/.exec(req.headers.range!)![1]);
        res.writeHead(206, { 'Content-Range': `bytes ${first}-${first + 4095}/${bytes.length}`, ETag: '"1"', 'Transfer-Encoding': 'chunked' });
        res.write(bytes.subarray(first, first + 4096));
        res.end(new Uint8Array(MiB));
      };
      await rejectsWith(() => backend.read(new Uint8Array(4096), MiB), 'REMOTE', /sent more than the 4096 bytes asked for/);
      // The size moved: the object changed.
      answer = (_req, res) => {
        res.writeHead(206, { 'Content-Range': `bytes ${MiB}-${MiB + 4095}/${bytes.length + 1}`, ETag: '"1"' });
        res.end(bytes.subarray(MiB, MiB + 4096));
      };
      await rejectsWith(() => backend.read(new Uint8Array(4096), MiB), 'CHANGED', /size went from/);
      await backend.close();
    } finally {
      liar.closeAllConnections();
      await new Promise<void>((resolve) => liar.close(() => resolve()));
    }
  });
});
