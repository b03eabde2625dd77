/**
 * The CLI reading images by URL, as a user would run it against S3, Azure or a web server: a real
 * HTTP server on loopback (test/net/range-server.ts) serves files made with the library, sometimes
 * behind the fault proxy, and `vhdx` runs as its own process. Requests and bytes are counted at the
 * server; outputs are compared with what the same command makes from the local file. Every child
 * process is started asynchronously: the server lives in this process and must keep answering.
 */
import assert from 'node:assert/strict';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { create } from '../../src/ops/create.js';
import { requireProgram, runAsync, tempDir, tiledBytes, VHDX_BIN, type RunResult } from '../helpers.js';
import { startFaultProxy } from '../net/fault-proxy.js';
import { startRangeServer, type RangeServer } from '../net/range-server.js';
import { startServe } from '../nbd/util.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SECRET = 'X-Amz-Signature=TOPSECRET';

function vhdx(...args: string[]): Promise<RunResult> {
  return runAsync(VHDX_BIN, args);
}

async function vhdxOk(...args: string[]): Promise<Buffer> {
  const r = await vhdx(...args);
  assert.equal(r.code, 0, `vhdx ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Two files hold the same bytes (`cmp`, which stops at the first difference). */
async function sameFiles(a: string, b: string): Promise<void> {
  const r = await runAsync('cmp', [a, b]);
  assert.equal(r.code, 0, `cmp ${a} ${b}: ${r.stdout.toString()}${r.stderr}`);
}

/** A dynamic image of `virtualSize` with `data` bytes written at each of `at` (library, no syncs). */
async function makeImage(path: string, virtualSize: number, blockSize: number, writes: { offset: number; length: number; seed: number }[]): Promise<void> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true, cache: 'unsafe' });
  await create(backend, { virtualSize, blockSize });
  await backend.close();
  const image = await openImage(path, { readOnly: false, cache: 'unsafe' });
  for (const w of writes) {
    const chunk = tiledBytes(Math.min(w.length, 32 * MiB), w.seed);
    for (let done = 0; done < w.length; done += chunk.length) await image.write(w.offset + done, chunk.subarray(0, Math.min(chunk.length, w.length - done)));
  }
  await image.close();
}

/** A failed run: the status, one line on stderr, no stack, the URL shown with its signature redacted. */
function assertOneLineError(r: RunResult, status: number, pattern: RegExp): void {
  assert.equal(r.code, status, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^vhdx: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /TOPSECRET|\bat .*\.js:\d+/);
}

describe('vhdx reading images by URL', { timeout: 120_000 }, () => {
  const dir = tempDir('vhdx-cli-http-');
  const small = join(dir.path, 'small.vhdx');
  const smallRaw = join(dir.path, 'small.raw');
  let server: RangeServer;
  const at = (name: string): string => `${server.origin}/${name}?${SECRET}`;

  before(async () => {
    server = await startRangeServer();
    // 256 MiB virtual, 24 MiB of data in three runs (one starting and ending mid-block).
    await makeImage(small, 256 * MiB, 2 * MiB, [
      { offset: 0, length: 8 * MiB, seed: 1 },
      { offset: 37 * MiB + 4096, length: 8 * MiB, seed: 2 },
      { offset: 200 * MiB, length: 8 * MiB, seed: 3 },
    ]);
    server.serve('/small.vhdx', small);
    await vhdxOk('convert', small, smallRaw, '--no-progress');
  });
  after(async () => {
    await server.close();
    dir.cleanup();
  });

  test('info of a 64 GiB image takes at most 10 requests', async () => {
    const big = join(dir.path, 'big.vhdx');
    await makeImage(big, 64 * GiB, MiB, [
      { offset: 0, length: MiB, seed: 4 },
      { offset: 63 * GiB, length: 3 * MiB, seed: 5 },
    ]);
    server.serve('/big.vhdx', big);
    server.set({});
    server.resetStats();
    const info = JSON.parse((await vhdxOk('info', at('big.vhdx'), '--json')).toString()) as { file: string; virtualSize: number; allocatedBytes: number };
    const requests = server.stats.requests;
    const local = JSON.parse((await vhdxOk('info', big, '--json')).toString()) as { virtualSize: number; allocatedBytes: number };
    assert.equal(info.virtualSize, 64 * GiB);
    assert.equal(info.allocatedBytes, local.allocatedBytes);
    assert.equal(info.file, `${server.origin}/big.vhdx?REDACTED`);
    assert.ok(requests <= 10, `info made ${requests} requests`);
    process.stdout.write(`# info of 64 GiB over HTTP: ${requests} requests, ${server.stats.bytes} bytes\n`);
    // --debug reports the backend's own counts, which agree with the server's.
    server.resetStats();
    const debug = await vhdx('info', at('big.vhdx'), '--debug');
    assert.equal(debug.code, 0, debug.stderr);
    const m = /^vhdx: http: (\S+): (\d+) requests, (\d+) bytes received, 0 retries, \d+ cache hits$/m.exec(debug.stderr);
    assert.ok(m, debug.stderr);
    assert.deepEqual([m[1], Number(m[2]), Number(m[3])], [`${server.origin}/big.vhdx?REDACTED`, server.stats.requests, server.stats.bytes]);
  });

  test('convert of an image holding 1 GiB fetches at most 1.05x what it stores; the output equals a local convert', { timeout: 90_000 }, async () => {
    const image = join(dir.path, 'gib.vhdx');
    const viaHttp = join(dir.path, 'gib-http.raw');
    const local = join(dir.path, 'gib-local.raw');
    try {
      let clock = Date.now();
      const lap = (): string => {
        const seconds = ((Date.now() - clock) / 1000).toFixed(1);
        clock = Date.now();
        return `${seconds} s`;
      };
      // 1 GiB of data in a 1.25 GiB disk: two runs, the second starting mid-block.
      await makeImage(image, 1280 * MiB, 32 * MiB, [
        { offset: 0, length: 512 * MiB, seed: 6 },
        { offset: 700 * MiB + 4096, length: 512 * MiB, seed: 7 },
      ]);
      const made = lap();
      const stored = (JSON.parse((await vhdxOk('info', image, '--json')).toString()) as { allocatedBytes: number }).allocatedBytes;
      assert.ok(stored >= GiB, `stored ${stored}`);
      server.serve('/gib.vhdx', image);
      server.set({});
      server.resetStats();
      lap();
      await vhdxOk('convert', at('gib.vhdx'), viaHttp, '--no-progress');
      const overHttp = lap();
      const ratio = server.stats.bytes / stored;
      await vhdxOk('convert', image, local, '--no-progress');
      const locally = lap();
      assert.equal(statSync(viaHttp).size, 1280 * MiB);
      await sameFiles(viaHttp, local);
      process.stdout.write(
        `# convert over HTTP: ${server.stats.bytes} bytes in ${server.stats.requests} requests for ${stored} stored (${ratio.toFixed(4)}x); ` +
          `image made in ${made}, converted over HTTP in ${overHttp}, locally in ${locally}, compared in ${lap()}\n`,
      );
      assert.ok(ratio <= 1.05, `fetched ${ratio}x the stored data`);
    } finally {
      for (const f of [image, viaHttp, local]) rmSync(f, { force: true });
    }
  });

  test('through 10% 503s, resets mid-body and a 5 s stall, convert and compare still read identical bytes', async () => {
    const proxy = await startFaultProxy(server.origin, { errorRate: 0.1, resetRate: 0.1, stalls: [{ request: 4, ms: 5000 }], seed: 11 });
    try {
      server.set({});
      const url = `${proxy.origin}/small.vhdx?${SECRET}`;
      const out = join(dir.path, 'faulty.raw');
      await vhdxOk('convert', url, out, '--no-progress');
      await sameFiles(out, smallRaw);
      const converted = { ...proxy.stats };
      proxy.setPlan({ errorRate: 0.1, resetRate: 0.1, seed: 12 });
      proxy.resetStats();
      const r = await vhdx('compare', url, small);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout.toString(), /^disks are identical/);
      assert.ok(converted.stalls === 1 && converted.errors > 0 && converted.resets > 0, JSON.stringify(converted));
      assert.ok(proxy.stats.errors + proxy.stats.resets > 0, JSON.stringify(proxy.stats));
      process.stdout.write(`# faults: convert ${JSON.stringify(converted)}; compare ${JSON.stringify(proxy.stats)}\n`);
    } finally {
      await proxy.close();
    }
  });

  test('403, 404, a server without Range, an ETag that changes mid-read: one-line errors, signature redacted', async () => {
    const out = join(dir.path, 'changed.raw');
    server.set({ status: 403 });
    assertOneLineError(await vhdx('info', at('small.vhdx')), 1, /small\.vhdx\?REDACTED: access denied \(HTTP 403\)/);
    server.set({ status: 404 });
    assertOneLineError(await vhdx('map', at('small.vhdx')), 1, /small\.vhdx\?REDACTED: no such object \(HTTP 404\)/);
    server.set({ ignoreRange: true });
    assertOneLineError(await vhdx('check', at('small.vhdx')), 1, /small\.vhdx\?REDACTED: the server ignores HTTP Range requests/);
    server.set({ changeAfter: 4 });
    assertOneLineError(await vhdx('convert', at('small.vhdx'), out, '--no-progress'), 1, /small\.vhdx\?REDACTED: the object changed while it was being read/);
    assert.throws(() => statSync(out), 'the partial output was removed');
    server.set({});
  });

  test('--http-header, --http-tries and --http-timeout reach every request; bad values are usage errors', async () => {
    // A server that wants a bearer token: refused without it, read with it (and the token never shown).
    server.set({ requireHeader: { name: 'authorization', value: 'Bearer TOPSECRET-token' } });
    assertOneLineError(await vhdx('info', at('small.vhdx')), 1, /access denied \(HTTP 401\)/);
    const header = ['--http-header', 'Authorization: Bearer TOPSECRET-token', '--http-header', 'X-Trace:  one two '];
    const info = JSON.parse((await vhdxOk('info', at('small.vhdx'), '--json', ...header)).toString()) as { virtualSize: number };
    assert.equal(info.virtualSize, 256 * MiB);
    assert.equal(server.stats.lastHeaders['x-trace'], 'one two', 'the value is trimmed');
    const out = join(dir.path, 'with-header.raw');
    await vhdxOk('convert', at('small.vhdx'), out, '--no-progress', ...header);
    await sameFiles(out, smallRaw);
    rmSync(out);
    for (const args of [['map', at('small.vhdx')], ['check', at('small.vhdx')], ['compare', at('small.vhdx'), smallRaw], ['read', at('small.vhdx'), '--offset', '0', '--length', '512']]) {
      const r = await vhdx(...args, ...header);
      assert.equal(r.code, 0, `${args[0]} with --http-header: ${r.stderr}`);
    }
    // Tries: a server failing with 503 is asked exactly that many times.
    server.set({ status: 503 });
    server.resetStats();
    assertOneLineError(await vhdx('info', at('small.vhdx'), '--http-tries', '2'), 1, /gave up after 2 tries: HTTP 503/);
    assert.equal(server.stats.requests, 2);
    // Timeout: a server slower than it is abandoned.
    server.set({ delayMs: 1500 });
    assertOneLineError(await vhdx('info', at('small.vhdx'), '--http-timeout', '0.2', '--http-tries', '1'), 1, /gave up after 1 try: no answer within 200 ms/);
    server.set({});
    for (const [args, message] of [
      [['--http-timeout', '0'], /--http-timeout must be seconds/],
      [['--http-timeout', 'soon'], /--http-timeout must be seconds/],
      [['--http-tries', '0'], /--http-tries must be a whole number from 1 to 100/],
      [['--http-header', 'no colon here'], /--http-header must be 'Name: value'/],
      [['--http-header', 'Range: bytes=0-1'], /--http-header Range is set by vhdx itself/],
    ] as const) {
      assertOneLineError(await vhdx('info', at('small.vhdx'), ...args), 2, message);
    }
  });

  test('writing commands and serve without --read-only refuse a URL as a usage error', async () => {
    server.resetStats();
    assertOneLineError(await vhdx('write', at('small.vhdx'), '--offset', '0', '--pattern', '1', '--length', '512'), 2, /can only be read/);
    assertOneLineError(await vhdx('check', at('small.vhdx'), '--repair'), 2, /can only be read/);
    assertOneLineError(await vhdx('serve', at('small.vhdx'), '--port', '0'), 2, /--read-only/);
    assertOneLineError(await vhdx('convert', small, at('out.raw')), 2, /OUT must be a local file/);
    assert.equal(server.stats.requests, 0);
  });

  test('serve --read-only URL: nbdinfo and nbdcopy read the same bytes', async () => {
    for (const p of ['nbdinfo', 'nbdcopy']) requireProgram(p);
    server.set({});
    const served = await startServe(at('small.vhdx'), ['--read-only']);
    try {
      assert.match(served.stderr(), /serving http:\/\/127\.0\.0\.1:\d+\/small\.vhdx\?REDACTED/);
      const info = await runAsync('nbdinfo', ['--json', served.uri]);
      assert.equal(info.code, 0, info.stderr);
      const exported = (JSON.parse(info.stdout.toString()) as { exports: { 'export-size': number; 'is_read_only': boolean }[] }).exports[0]!;
      assert.equal(exported['export-size'], 256 * MiB);
      assert.equal(exported.is_read_only, true);
      const out = join(dir.path, 'nbdcopy.raw');
      const copy = await runAsync('nbdcopy', [served.uri, out]);
      assert.equal(copy.code, 0, copy.stderr);
      await sameFiles(out, smallRaw);
    } finally {
      const { code } = await served.stop();
      assert.equal(code, 0, served.stderr());
    }
    assert.doesNotMatch(served.stderr(), /TOPSECRET/);
  });
});
