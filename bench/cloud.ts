/**
 * Benchmark: uploading a disk to an Azure page blob, against the storage emulator (Azurite: blobs on
 * disk, in memory with --quick) on loopback in the same run.
 *
 *   node dist/bench/cloud.js [--quick] [--runs N] [--dir DIR] [--parallel N]
 *
 * The disk: a dynamic VHDX of 4 GiB (512 MiB with --quick), 2 MiB blocks, 10% of it data, in 1 MiB runs
 * scattered with a seeded generator (made through the library, not timed). Its equivalent fixed VHD
 * is the raw disk (`vhdx convert`) with the 512-byte footer appended: what one uploads without this
 * tool. Timed, each into a new blob, after an untimed warm-up of each path, rounds interleaved, best
 * of N (3 by default, 1 with --quick):
 *
 *   vhdx upload        uploadToAzure(VHDX, SAS URL): the non-zero sectors of the allocated blocks, then
 *                      the footer, the page ranges checked and samples read back (the default)
 *   SDK page blob      @azure/storage-blob's PageBlobClient the documented way (the SDK has no
 *                      whole-file upload for page blobs): create(size), then uploadPages of every 4 MiB
 *                      of the fixed VHD file, read from the file, the same number in flight
 *   SDK uploadFile (info)  BlockBlobClient.uploadFile of the same file: the SDK's own parallel
 *                      whole-file upload (a block blob cannot be attached as a disk; for scale only)
 *
 * The blob each makes is checked: the same length, and equal bytes at a few sampled offsets.
 * Target: vhdx upload / SDK page blob <= 0.3.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { NodeFileBackend } from '../src/node/file-backend.js';
import { openImage } from '../src/node/paths.js';
import { create } from '../src/ops/create.js';
import { uploadToAzure } from '../src/node/azure.js';
import { encodeVhdFooter } from '../src/vhd/footer.js';
import { vhdFooterFor } from '../src/vhd/footer-for.js';
import { startAzurite, type Azurite } from '../test/cloud/azurite.js';
import { rng } from '../test/model.js';
import { GiB, MiB, VHDX_BIN, best, bytes, environmentLine, parseCommonArgs, rounds, run, scratch, seconds, table, verdict } from './write-lib.js';

const PAGE_WRITE = 4 * MiB;

/** The VHDX: `share` of `size` written in 1 MiB runs at seeded random MiB offsets, each run distinct bytes. */
async function makeImage(path: string, size: number, share: number): Promise<number> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await create(backend, { virtualSize: size, blockSize: 2 * MiB });
  await backend.close();
  const image = await openImage(path, { readOnly: false, cache: 'unsafe' });
  const random = rng(42);
  const slots = size / MiB;
  const chosen = new Set<number>();
  while (chosen.size < Math.round(slots * share)) chosen.add(Math.floor(random() * slots));
  const run = new Uint8Array(MiB);
  for (const slot of [...chosen].sort((a, b) => a - b)) {
    for (let i = 0; i < run.length; i += 4) new DataView(run.buffer).setUint32(i, (slot * 2654435761 + i) >>> 0 || 1);
    await image.write(slot * MiB, run);
  }
  await image.close();
  return chosen.size * MiB;
}

/** The fixed VHD file: the raw disk and the footer after it. */
function makeFixedVhd(image: string, out: string, size: number): void {
  run(VHDX_BIN, ['convert', image, out, '-O', 'raw', '--no-progress']);
  const fd = openSync(out, 'r+');
  writeSync(fd, encodeVhdFooter(vhdFooterFor({ size }, { azure: true })), 0, 512, size);
  closeSync(fd);
}

/** The documented way: create the page blob, then every 4 MiB of the file with uploadPages, `parallel` in flight. */
async function sdkPageBlobUpload(azurite: Azurite, file: string, blob: string, length: number, parallel: number): Promise<void> {
  const client = azurite.service.getContainerClient('bench').getPageBlobClient(blob);
  await client.create(length);
  const handle = await open(file, 'r');
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      const buffer = Buffer.allocUnsafe(PAGE_WRITE);
      for (let offset = next; offset < length; offset = next) {
        next += PAGE_WRITE;
        const n = Math.min(PAGE_WRITE, length - offset);
        await handle.read(buffer, 0, n, offset);
        await client.uploadPages(buffer.subarray(0, n), offset, n);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    await handle.close();
  }
}

/** The blob has `length` bytes, ends in a footer, and has the bytes of the file at a few offsets (the footers' IDs and times differ). */
async function checkBlob(azurite: Azurite, blob: string, file: string, length: number): Promise<void> {
  const client = azurite.service.getContainerClient('bench').getBlobClient(blob);
  const properties = await client.getProperties();
  if (properties.contentLength !== length) throw new Error(`${blob}: ${properties.contentLength} bytes, expected ${length}`);
  const fd = openSync(file, 'r');
  try {
    const random = rng(7);
    const footer = await client.downloadToBuffer(length - 512, 512);
    if (footer.subarray(0, 8).toString('latin1') !== 'conectix') throw new Error(`${blob}: no footer`);
    const disk = length - 512;
    for (const offset of [0, disk - MiB, ...Array.from({ length: 6 }, () => Math.floor((random() * (disk - MiB)) / 512) * 512)]) {
      const n = MiB;
      const want = Buffer.alloc(n);
      readSync(fd, want, 0, n, offset);
      const got = await client.downloadToBuffer(offset, n);
      if (!got.equals(want)) throw new Error(`${blob}: different bytes at ${offset}`);
    }
  } finally {
    closeSync(fd);
  }
}

async function main(): Promise<void> {
  const args = parseCommonArgs(process.argv.slice(2), ['parallel']);
  const parallel = Number(args.rest.get('parallel') ?? 8);
  const size = args.quick ? 512 * MiB : 4 * GiB;
  const dir = scratch('vhdx-cloud-bench', args.dir);
  const image = join(dir, 'disk.vhdx');
  const fixed = join(dir, 'disk.vhd');
  console.log(`# cloud upload: ${bytes(size)} dynamic VHDX, 10% data in 1 MiB runs, ${parallel} requests in flight; ${args.runs} run(s)`);
  const dataBytes = await makeImage(image, size, 0.1);
  makeFixedVhd(image, fixed, size);
  const length = size + 512;

  // On disk: the full run puts 8 GiB a round through the emulator, more than its memory store holds.
  const azurite = await startAzurite({ onDisk: !args.quick });
  try {
    await azurite.createContainer('bench');
    const times: Record<string, number[]> = { ours: [], page: [], file: [] };
    const sdkBlock = azurite.service.getContainerClient('bench');
    const jobs: Record<string, (blob: string) => Promise<void>> = {
      ours: async (blob) => {
        await uploadToAzure(image, azurite.sasUrl('bench', blob), { parallel });
      },
      page: (blob) => sdkPageBlobUpload(azurite, fixed, blob, length, parallel),
      file: async (blob) => {
        await sdkBlock.getBlockBlobClient(blob).uploadFile(fixed, { concurrency: parallel, blockSize: PAGE_WRITE });
      },
    };
    // Warm-up, not timed: each path once (the SDK's on the first 64 MiB of the file), so neither pays
    // for loading and compiling its code in a timed run.
    await jobs.ours!('warm-ours.vhd');
    await sdkPageBlobUpload(azurite, fixed, 'warm-page.vhd', 64 * MiB, parallel);
    for (const blob of ['warm-ours.vhd', 'warm-page.vhd']) await sdkBlock.getBlobClient(blob).delete();

    const pending: Promise<void>[] = [];
    let chain = Promise.resolve();
    rounds(['ours', 'page', 'file'] as const, args.runs, (key, round) => {
      chain = chain.then(async () => {
        const blob = `${key}-${round}.vhd`;
        const start = process.hrtime.bigint();
        await jobs[key]!(blob);
        times[key]!.push(Number(process.hrtime.bigint() - start) / 1e9);
        await checkBlob(azurite, blob, fixed, length);
        // The emulator keeps blobs in memory: each goes once checked.
        await sdkBlock.getBlobClient(blob).delete();
      });
      pending.push(chain);
    });
    await Promise.all(pending);

    const ours = best(times.ours!);
    const page = best(times.page!);
    const file = best(times.file!);
    console.log(
      table([
        ['upload', 'best', 'sent', 'vs SDK page blob'],
        ['vhdx upload', seconds(ours), bytes(dataBytes + 512), `${(ours / page).toFixed(3)}x`],
        ['SDK page blob (uploadPages, whole file)', seconds(page), bytes(length), '1.000x'],
        ['SDK uploadFile, block blob (info)', seconds(file), bytes(length), `${(file / page).toFixed(3)}x`],
      ]),
    );
    console.log(verdict({ name: 'vhdx upload / SDK page blob', ratio: ours / page, op: '<=', limit: 0.3 }));
    console.log(`# ${environmentLine()}`);
  } finally {
    await azurite.stop();
  }
}

await main();
