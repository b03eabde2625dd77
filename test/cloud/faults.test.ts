/**
 * Uploads and downloads through a fault-injecting proxy in front of the storage emulator: answers of
 * 503, connections reset in the middle of a body and a 5 s stall still give the exact blob; an upload
 * killed with SIGKILL half way and run again with --resume completes, sending little twice.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { PageBlobClient } from '@azure/storage-blob';
import { uploadToAzure, downloadFromAzure } from '../../src/node/azure.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { ROOT, VHDX_BIN, runAsync, tempDir, tiledBytes } from '../helpers.js';
import { startFaultProxy, type FaultProxy } from '../net/fault-proxy.js';
import { startAzurite, type Azurite } from './azurite.js';
import { MiB, checkBlobBytes, makeVhdx, nonZeroSectors, type Write } from './images.js';

let azurite: Azurite;
let proxy: FaultProxy;
let dir: { path: string; cleanup: () => void };

before(async () => {
  dir = tempDir('vhdx-cloud-faults-');
  azurite = await startAzurite();
  await azurite.createContainer('disks');
  proxy = await startFaultProxy(azurite.origin);
});

after(async () => {
  await proxy?.close();
  await azurite?.stop();
  dir?.cleanup();
});

function pageBlob(blob: string): PageBlobClient {
  return azurite.service.getContainerClient('disks').getPageBlobClient(blob);
}

/** Data in runs of `run` bytes every `stride` bytes from `from` to `to`. */
function runs(from: number, to: number, run: number, stride: number, seed: number): Write[] {
  const out: Write[] = [];
  for (let at = from, i = 0; at + run <= to; at += stride, i++) out.push({ offset: at, data: tiledBytes(run, seed + i) });
  return out;
}

const FAST_RETRY = { retryDelayMs: 20, maxRetryDelayMs: 200, maxTries: 8 };

describe('faults on the way', () => {
  const size = 24 * MiB;
  let image: string;
  let model: Uint8Array;

  before(async () => {
    image = join(dir.path, 'faults.vhdx');
    model = await makeVhdx(image, size, runs(0, size, 384 * 1024, MiB, 100));
  });

  test('10% 503 answers, 10% resets mid-body and a 5 s stall: the blob is still exact', async () => {
    proxy.resetStats();
    proxy.setPlan({ errorRate: 0.1, resetRate: 0.1, stalls: [{ request: 6, ms: 5000 }], seed: 7 });
    try {
      const result = await uploadToAzure(image, azurite.sasUrl('disks', 'faults.vhd', { origin: proxy.origin }), { retry: FAST_RETRY, verify: 'full', parallel: 4 });
      const stats = proxy.stats;
      assert.ok(stats.errors > 0 && stats.resets > 0 && stats.stalls === 1, `faults injected: ${JSON.stringify(stats)}`);
      assert.equal(result.dataBytes, nonZeroSectors(model).reduce((n, r) => n + r.end - r.start, 0));
    } finally {
      proxy.setPlan({});
    }
    checkBlobBytes(new Uint8Array(await pageBlob('faults.vhd').downloadToBuffer()), model, { size });
  });

  test('a download through resets and 503s gives the same disk, fetching only the pages', async () => {
    const out = join(dir.path, 'faults-back.vhdx');
    proxy.resetStats();
    proxy.setPlan({ errorRate: 0.1, resetRate: 0.15, seed: 3 });
    const backend = await NodeFileBackend.open(out, { readOnly: false, create: true });
    try {
      const result = await downloadFromAzure(azurite.sasUrl('disks', 'faults.vhd', { origin: proxy.origin }), backend, { retry: FAST_RETRY, blockSize: MiB });
      assert.equal(result.virtualSize, size);
      assert.ok(proxy.stats.resets > 0, 'resets injected');
      // The page ranges and the footer, plus what resets cut short: never the zeros between them.
      assert.ok(result.fetchedBytes === nonZeroSectors(model).reduce((n, r) => n + r.end - r.start, 0), `fetched ${result.fetchedBytes}`);
      assert.ok(proxy.stats.bytesDown < result.fetchedBytes * 1.5 + MiB, `bytes down ${proxy.stats.bytesDown}`);
    } finally {
      proxy.setPlan({});
      await backend.close();
    }
    const back = await openImage(out);
    try {
      assert.ok(Buffer.from(await back.read(0, size)).equals(Buffer.from(model)));
    } finally {
      await back.close();
    }
  });
});

describe('resume after SIGKILL', () => {
  test('killed half way, run again with --resume: identical, less than 10% sent twice', async () => {
    const size = 48 * MiB;
    const image = join(dir.path, 'resume.vhdx');
    // 256 KiB runs: a write in flight at the kill is small beside the whole.
    const model = await makeVhdx(image, size, runs(0, size, 256 * 1024, 512 * 1024, 200));
    const dataBytes = nonZeroSectors(model).reduce((n, r) => n + r.end - r.start, 0);
    const url = azurite.sasUrl('disks', 'resume.vhd', { origin: proxy.origin });
    proxy.resetStats();
    proxy.setPlan({});

    const child = spawn(process.execPath, [VHDX_BIN, 'upload', image, url, '--parallel', '2', '--no-progress'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const watch = setInterval(() => {
      if (proxy.stats.putBytes >= dataBytes / 2) child.kill('SIGKILL');
    }, 2);
    let first;
    try {
      first = await exited;
    } finally {
      clearInterval(watch);
      child.kill('SIGKILL');
    }
    assert.equal(first.signal, 'SIGKILL', `the first upload was killed (it ended ${first.code}: ${stderr})`);
    const sentBeforeKill = proxy.stats.putBytes;
    assert.ok(sentBeforeKill < dataBytes, 'killed before the end');
    const properties = await pageBlob('resume.vhd').getProperties();
    assert.equal(properties.metadata?.['vhdxstate'], 'uploading');

    proxy.resetStats();
    // Asynchronously: the proxy runs in this process and must go on serving.
    const again = await runAsync(VHDX_BIN, ['upload', image, url, '--resume', '--json', '--no-progress']);
    assert.equal(again.code, 0, again.stderr);
    const resumed = JSON.parse(again.stdout.toString()) as { resumed: boolean; presentBytes: number; sentBytes: number };
    assert.equal(resumed.resumed, true);
    const sentAfter = proxy.stats.putBytes;
    const resent = sentBeforeKill + sentAfter - (dataBytes + 512);
    assert.ok(resent >= 0 && resent < dataBytes * 0.1, `resent ${resent} of ${dataBytes} (before the kill ${sentBeforeKill}, after ${sentAfter})`);
    assert.equal(resumed.presentBytes + resumed.sentBytes, dataBytes + 512);
    console.log(`# resume: ${sentBeforeKill} bytes before the kill, ${sentAfter} after, ${resent} sent twice (${((100 * resent) / dataBytes).toFixed(2)}% of ${dataBytes})`);
    checkBlobBytes(new Uint8Array(await pageBlob('resume.vhd').downloadToBuffer()), model, { size });
  });
});

describe('Ctrl-C', () => {
  test('SIGINT stops an upload at once with a one-line message; --resume then completes it', async () => {
    const size = 8 * MiB;
    const image = join(dir.path, 'interrupt.vhdx');
    const model = await makeVhdx(image, size, runs(0, size, 128 * 1024, 256 * 1024, 300));
    const url = azurite.sasUrl('disks', 'interrupt.vhd', { origin: proxy.origin });
    proxy.resetStats();
    // A long stall on an early page write: the upload is surely in the middle when the signal comes.
    proxy.setPlan({ stalls: [{ request: 4, ms: 6000 }] });
    try {
      const child = spawn(process.execPath, [VHDX_BIN, 'upload', image, url, '--parallel', '1', '--no-progress'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      while (proxy.stats.stalls === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      const signalled = Date.now();
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 130, stderr);
      assert.ok(Date.now() - signalled < 5000, 'stopped without waiting for the stalled request');
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0]!, /^vhdx: http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/disks\/interrupt\.vhd: interrupted by SIGINT; .*--resume/);
    } finally {
      proxy.setPlan({});
    }
    assert.equal((await pageBlob('interrupt.vhd').getProperties()).metadata?.['vhdxstate'], 'uploading');
    const again = await runAsync(VHDX_BIN, ['upload', image, url, '--resume', '--no-progress']);
    assert.equal(again.code, 0, again.stderr);
    checkBlobBytes(new Uint8Array(await pageBlob('interrupt.vhd').downloadToBuffer()), model, { size });
  });
});
