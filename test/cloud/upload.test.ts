/**
 * Upload to and download from a page blob, against the storage emulator (Azurite) on loopback: the
 * blob's bytes are the fixed VHD expected from the bytes written (checked independently), its page
 * ranges only the non-zero data and the footer; a download gives back the same disk (our compare and
 * qemu-img's); failures are one-line typed errors with no secret in them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { PageBlobClient } from '@azure/storage-blob';
import { uploadToAzure } from '../../src/node/azure.js';
import { openImage } from '../../src/node/paths.js';
import { guidFromString } from '../../src/format/guid.js';
import { ROOT, VHDX_BIN, requireProgram, run, tempDir, tiledBytes } from '../helpers.js';
import { startAzurite, type Azurite } from './azurite.js';
import { MiB, checkBlobBytes, checkFooter, makeVhdx, nonZeroSectors, withFooterPage, type Write } from './images.js';

let azurite: Azurite;
let dir: { path: string; cleanup: () => void };

before(async () => {
  dir = tempDir('vhdx-cloud-');
  azurite = await startAzurite();
  await azurite.createContainer('disks');
});

after(async () => {
  await azurite?.stop();
  dir?.cleanup();
});

function pageBlob(container: string, blob: string): PageBlobClient {
  return azurite.service.getContainerClient(container).getPageBlobClient(blob);
}

/** The blob's page ranges as [start, end): the client reports `count` as the service's inclusive end minus start. */
async function pageRangesOf(client: PageBlobClient): Promise<{ start: number; end: number }[]> {
  const answer = await client.getPageRanges();
  const out: { start: number; end: number }[] = [];
  for (const r of answer.pageRange ?? []) {
    const range = { start: r.offset, end: r.offset + r.count! + 1 };
    const last = out[out.length - 1];
    if (last && last.end === range.start) last.end = range.end;
    else out.push(range);
  }
  return out;
}

async function wholeBlob(client: PageBlobClient): Promise<Uint8Array> {
  return new Uint8Array(await client.downloadToBuffer());
}

/** Runs the CLI; the environment is this process's plus `env`. */
function vhdx(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = run(VHDX_BIN, args, { env, cwd: ROOT, timeoutMs: 60_000 });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
}

/** Scattered data: runs crossing 4 MiB boundaries, zero sectors and a zero 64 KiB span inside data, a block written with zeros only, the last sector. */
function scatteredWrites(virtualSize: number): Write[] {
  const big = tiledBytes(3 * MiB, 7);
  big.fill(0, 4096, 4096 + 3 * 512); // three zero sectors inside the data
  big.fill(0, MiB, MiB + 64 * 1024); // a zero span inside the data
  return [
    { offset: MiB + 4096, data: tiledBytes(256 * 1024, 1) },
    { offset: 7 * MiB + 512, data: big }, // crosses 8 MiB
    { offset: 12 * MiB, data: new Uint8Array(MiB) }, // allocates a block of zeros: no pages
    { offset: 15 * MiB - 100, data: tiledBytes(5 * MiB, 3) }, // unaligned, crosses 16 MiB
    { offset: 30 * MiB + 3 * 512, data: tiledBytes(700, 4) }, // ends inside a sector
    { offset: virtualSize - 512, data: tiledBytes(512, 5) },
  ];
}

describe('upload to a page blob', () => {
  const size = 40 * MiB;
  let image: string;
  let model: Uint8Array;

  before(async () => {
    image = join(dir.path, 'scattered.vhdx');
    model = await makeVhdx(image, size, scatteredWrites(size));
  });

  test('library: the blob is the fixed VHD of the disk, pages only where data is', async () => {
    const time = new Date('2026-01-02T03:04:05Z');
    const result = await uploadToAzure(image, azurite.sasUrl('disks', 'scattered.vhd'), { time, verify: 'full' });
    const client = pageBlob('disks', 'scattered.vhd');
    const opened = await openImage(image);
    const diskId = guidFromString(opened.info().virtualDiskId);
    await opened.close();
    checkBlobBytes(await wholeBlob(client), model, { size, uniqueId: diskId, time: time.getTime() / 1000 });
    const data = nonZeroSectors(model);
    assert.deepEqual(await pageRangesOf(client), withFooterPage(data, size));
    const dataBytes = data.reduce((n, r) => n + r.end - r.start, 0);
    assert.equal(result.dataBytes, dataBytes);
    assert.equal(result.sentBytes, dataBytes + 512);
    assert.equal(result.blobSize, size + 512);
    assert.equal(result.verified, 'full');
    assert.ok(!result.blob.includes('?'), 'the result names the blob without its SAS token');
    const properties = await client.getProperties();
    assert.equal(properties.metadata?.['vhdxstate'], 'complete');
  });

  test('CLI: download gives back the same disk, sparse (vhdx compare and qemu-img compare)', async () => {
    requireProgram('qemu-img');
    const url = azurite.sasUrl('disks', 'scattered.vhd');
    const out = join(dir.path, 'back.vhdx');
    const down = vhdx(['download', url, out, '--no-progress', '--block-size', '1M']);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(vhdx(['compare', image, out]).code, 0);
    assert.equal(run('qemu-img', ['compare', '-f', 'vhdx', '-F', 'vhdx', image, out]).code, 0);
    const back = await openImage(out);
    try {
      assert.equal(back.type, 'dynamic');
      assert.equal(back.virtualSize, size);
      // Only blocks holding data were allocated: the zero-written block and the untouched ones were not.
      const blocksWithData = new Set(nonZeroSectors(model).flatMap((r) => Array.from({ length: Math.ceil(r.end / MiB) - Math.floor(r.start / MiB) }, (_, i) => Math.floor(r.start / MiB) + i)));
      assert.equal(back.info().allocatedBytes, blocksWithData.size * MiB);
    } finally {
      await back.close();
    }
  });

  test('CLI: a size that is not a whole MiB is padded; SOURCE_DATE_EPOCH sets the timestamp; --json', async () => {
    const odd = 5 * MiB + 3 * 512;
    const path = join(dir.path, 'odd.vhdx');
    const oddModel = await makeVhdx(path, odd, [{ offset: odd - 2048, data: tiledBytes(2048, 9) }, { offset: 0, data: tiledBytes(4096, 10) }]);
    const r = vhdx(['upload', path, azurite.sasUrl('disks', 'odd.vhd'), '--json', '--verify'], { SOURCE_DATE_EPOCH: '1767225600' });
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout) as { blobSize: number; dataBytes: number; verified: string };
    assert.equal(json.blobSize, 6 * MiB + 512);
    assert.equal(json.dataBytes, 6144);
    assert.equal(json.verified, 'full');
    const opened = await openImage(path);
    const diskId = guidFromString(opened.info().virtualDiskId);
    await opened.close();
    const blob = await wholeBlob(pageBlob('disks', 'odd.vhd'));
    checkBlobBytes(blob, oddModel, { size: 6 * MiB, uniqueId: diskId, time: 1767225600 });
    // The same bytes as the fixed VHD `convert -O vhd --azure` writes of the same disk at the same time.
    const converted = join(dir.path, 'odd-converted.vhd');
    const c = vhdx(['convert', path, converted, '--azure', '--no-progress'], { SOURCE_DATE_EPOCH: '1767225600' });
    assert.equal(c.code, 0, c.stderr);
    assert.ok(Buffer.from(blob).equals(readFileSync(converted)), 'the blob equals the converted VHD byte for byte');
    // And that VHD, uploaded as it is, gives the same blob again (a VHD input keeps its Unique Id).
    const again = vhdx(['upload', converted, azurite.sasUrl('disks', 'odd-again.vhd')], { SOURCE_DATE_EPOCH: '1767225600' });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(Buffer.from(await wholeBlob(pageBlob('disks', 'odd-again.vhd'))).equals(blob), 'a VHD uploaded gives the same blob');
  });

  test('CLI: a sparse raw file: holes and zeros are not sent, a random unique ID', async () => {
    const path = join(dir.path, 'disk.raw');
    const rawSize = 9 * MiB;
    const rawModel = new Uint8Array(rawSize);
    const fd = openSync(path, 'w');
    ftruncateSync(fd, rawSize);
    for (const [offset, length, seed] of [[MiB, 300_000, 1], [6 * MiB + 512, 4096, 2]] as const) {
      const data = tiledBytes(length, seed);
      writeSync(fd, data, 0, length, offset);
      rawModel.set(data, offset);
    }
    writeSync(fd, new Uint8Array(65536), 0, 65536, 4 * MiB); // written zeros: data to the file system, none to the blob
    closeSync(fd);
    const r = vhdx(['upload', path, azurite.sasUrl('disks', 'raw.vhd'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const client = pageBlob('disks', 'raw.vhd');
    checkBlobBytes(await wholeBlob(client), rawModel, { size: rawSize });
    assert.deepEqual(await pageRangesOf(client), withFooterPage(nonZeroSectors(rawModel), rawSize));
  });

  test('a connection string names the account, a target names container and blob', async () => {
    const small = join(dir.path, 'small.vhdx');
    const smallModel = await makeVhdx(small, 2 * MiB, [{ offset: 4096, data: tiledBytes(8192, 11) }]);
    const r = vhdx(['upload', small, 'disks/by-key.vhd', '--json'], { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString });
    assert.equal(r.code, 0, r.stderr);
    const blob = await wholeBlob(pageBlob('disks', 'by-key.vhd'));
    checkFooter(blob.subarray(2 * MiB), { size: 2 * MiB });
    assert.ok(Buffer.from(blob.subarray(0, 2 * MiB)).equals(Buffer.from(smallModel)));
  });
});

describe('upload into an existing blob (a managed disk\'s upload URL)', () => {
  const size = 40 * MiB + 3 * 512; // not a whole MiB: the blob is the size rounded up, plus the footer
  const blobSize = 41 * MiB + 512;
  let image: string;
  let model: Uint8Array;

  before(async () => {
    image = join(dir.path, 'managed.vhdx');
    model = await makeVhdx(image, size, scatteredWrites(size));
  });

  test('--print-size gives the blob size az disk create needs, for VHDX, VHD and raw input', async () => {
    const r = vhdx(['upload', image, '--print-size']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${blobSize}\n`);
    const raw = join(dir.path, 'managed.raw');
    const fd = openSync(raw, 'w');
    ftruncateSync(fd, 5 * MiB + 1);
    closeSync(fd);
    assert.equal(vhdx(['upload', raw, '--print-size']).stdout, `${6 * MiB + 512}\n`);
    const vhd = join(dir.path, 'managed.vhd');
    assert.equal(vhdx(['convert', image, vhd, '--no-progress']).code, 0);
    assert.equal(vhdx(['upload', vhd, '--print-size']).stdout, `${blobSize}\n`);
  });

  test('pages of an earlier attempt are cleared; the blob is not re-created and its metadata is untouched', async () => {
    const client = pageBlob('disks', 'managed-disk.vhd');
    // As `az disk create --upload-type Upload` leaves it, plus stale pages: inside data, where the disk
    // has zeros, and an old footer.
    await client.create(blobSize, { metadata: { madeby: 'the service' } });
    const stale = Buffer.alloc(MiB, 0x77);
    for (const at of [0, 20 * MiB, 34 * MiB]) await client.uploadPages(stale, at, stale.length);
    await client.uploadPages(Buffer.alloc(512, 0x66), blobSize - 512, 512);
    const createdOn = (await client.getProperties()).createdOn;

    const r = vhdx(['upload', image, azurite.sasUrl('disks', 'managed-disk.vhd'), '--existing', '--verify', '--no-progress']);
    assert.equal(r.code, 0, r.stderr);
    const after = await client.getProperties();
    assert.deepEqual(after.metadata, { madeby: 'the service' }, 'no metadata written');
    assert.equal(after.createdOn?.getTime(), createdOn?.getTime(), 'the blob was not created again');
    assert.equal(after.contentLength, blobSize);
    const opened = await openImage(image);
    const diskId = guidFromString(opened.info().virtualDiskId);
    await opened.close();
    const padded = new Uint8Array(41 * MiB);
    padded.set(model);
    const bytes = await wholeBlob(client);
    checkBlobBytes(bytes, padded, { size: 41 * MiB, uniqueId: diskId });
    assert.deepEqual(await pageRangesOf(client), withFooterPage(nonZeroSectors(padded), 41 * MiB), 'pages: the data and the footer, nothing stale');
  });

  test('a blob of the wrong size, a missing blob, and --existing with --resume are refused, nothing written', async () => {
    const client = pageBlob('disks', 'managed-small.vhd');
    await client.create(blobSize - MiB);
    const url = azurite.sasUrl('disks', 'managed-small.vhd');
    const small = vhdx(['upload', image, url, '--existing']);
    assert.equal(small.code, 2, small.stderr);
    assert.match(small.stderr, new RegExp(`^vhdx: \\S+managed-small\\.vhd: the blob is ${blobSize - MiB} bytes but this image needs exactly ${blobSize} \\(for a managed disk: az disk create --upload-type Upload --upload-size-bytes ${blobSize}\\)\\n$`));
    assert.deepEqual(await pageRangesOf(client), [], 'nothing written');
    const missing = vhdx(['upload', image, azurite.sasUrl('disks', 'managed-missing.vhd'), '--existing']);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /the blob does not exist: an upload into an existing blob/);
    assert.equal(await pageBlob('disks', 'managed-missing.vhd').exists(), false, 'not created');
    const both = vhdx(['upload', image, url, '--existing', '--resume']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^vhdx: --resume cannot be combined with --existing/);
    const printWithUrl = vhdx(['upload', image, url, '--print-size']);
    assert.equal(printWithUrl.code, 2);
    assert.match(printWithUrl.stderr, /--print-size takes only IMAGE/);
  });
});

describe('errors: one line, typed, no signature', () => {
  let image: string;

  before(async () => {
    image = join(dir.path, 'errors.vhdx');
    await makeVhdx(image, 2 * MiB, [{ offset: 0, data: tiledBytes(4096, 12) }]);
  });

  function assertOneLine(stderr: string, pattern: RegExp, secret: string): void {
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${stderr}`);
    assert.match(lines[0]!, pattern);
    assert.ok(!stderr.includes(secret), `the signature must not appear: ${stderr}`);
    assert.ok(!/\n\s+at /.test(stderr), 'no stack trace');
  }

  const signatureOf = (url: string): string => decodeURIComponent(new URL(url).searchParams.get('sig')!);

  test('a SAS with a bad signature: access denied', () => {
    const url = azurite.sasUrl('disks', 'denied.vhd');
    const sig = signatureOf(url);
    const forged = `${sig.slice(0, -6)}AAAAA=`;
    const bad = url.replace(encodeURIComponent(sig), encodeURIComponent(forged));
    const up = vhdx(['upload', image, bad]);
    assert.equal(up.code, 1);
    assertOneLine(up.stderr, /^vhdx: http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/disks\/denied\.vhd: access denied \(HTTP 403/, forged.slice(0, 20));
    const down = vhdx(['download', bad, join(dir.path, 'denied.vhdx')]);
    assert.equal(down.code, 1);
    assertOneLine(down.stderr, /access denied \(HTTP 403/, forged.slice(0, 20));
  });

  test('a container that does not exist', () => {
    const url = azurite.sasUrl('nothere', 'x.vhd');
    const up = vhdx(['upload', image, url]);
    assert.equal(up.code, 1);
    assertOneLine(up.stderr, /the container does not exist \(HTTP 404\)/, signatureOf(url));
  });

  test('download of a blob that is not a VHD: a block blob, a page blob without a footer, a missing blob', async () => {
    await azurite.service.getContainerClient('disks').getBlockBlobClient('notes.txt').upload('hello', 5);
    await pageBlob('disks', 'empty.vhd').create(4 * MiB);
    const out = join(dir.path, 'never.vhdx');
    const block = vhdx(['download', azurite.sasUrl('disks', 'notes.txt'), out]);
    assert.equal(block.code, 1);
    assertOneLine(block.stderr, /not a VHD: a BlockBlob of 5 bytes/, signatureOf(azurite.sasUrl('disks', 'notes.txt')));
    const empty = vhdx(['download', azurite.sasUrl('disks', 'empty.vhd'), out]);
    assert.equal(empty.code, 1);
    assertOneLine(empty.stderr, /no VHD footer/, 'sig=');
    const missing = vhdx(['download', azurite.sasUrl('disks', 'missing.vhd'), out]);
    assert.equal(missing.code, 1);
    assertOneLine(missing.stderr, /the blob does not exist \(HTTP 404\)/, 'sig=');
    assert.equal(run('test', ['-e', out]).code, 1, 'no output left behind');
  });

  test('--resume onto a blob made from another source is refused', async () => {
    const other = join(dir.path, 'other.vhdx');
    await makeVhdx(other, 2 * MiB, [{ offset: 0, data: tiledBytes(4096, 13) }]);
    const url = azurite.sasUrl('disks', 'resume-other.vhd');
    assert.equal(vhdx(['upload', other, url]).code, 0);
    const r = vhdx(['upload', image, url, '--resume']);
    assert.equal(r.code, 1);
    assertOneLine(r.stderr, /made from a different source/, signatureOf(url));
  });
});
