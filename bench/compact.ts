/**
 * Benchmark: compacting an image in place against re-packing it.
 *
 *   node dist/bench/compact.js [--quick] [--runs N] [--dir DIR]
 *
 * The image: a 4 GiB dynamic VHDX (1 GiB with --quick) with 32 MiB blocks, every block allocated, half
 * of them (picked at random, scattered through the file) holding only zeros, the rest data. Made once,
 * not timed; each run works on a fresh copy, the page cache written back first (`sync`).
 *
 *   vhdx compact    bin/vhdx compact COPY (full mode: finds the zero blocks, unmaps them, moves the
 *                   blocks from the end of the file down, cuts the file; syncs as it goes)
 *   qemu-img        qemu-img convert -f vhdx -O vhdx -o subformat=dynamic,block_size=32M COPY OUT
 *                   (the re-pack: a new file holding the same disk without the zero blocks), plus an
 *                   fdatasync of OUT so both end durable
 *
 * Both are timed as whole processes; best of N after a warm-up, rounds interleaved. While the
 * compaction runs, the file's size is sampled every few milliseconds: its peak over the starting size is
 * the extra disk space compaction needs (the re-pack needs a whole second file). Each result is checked:
 * `qemu-img compare` against the original, `qemu-img check`.
 *
 * Targets: compaction time <= 1.0x the re-pack's; peak extra space < 1% of the image.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NodeFileBackend } from '../src/node/file-backend.js';
import { VhdxImage } from '../src/image/image.js';
import { create } from '../src/ops/create.js';
import {
  GiB,
  MiB,
  VHDX_BIN,
  available,
  best,
  bytes,
  environmentLine,
  fdatasyncSeconds,
  fileSize,
  parseCommonArgs,
  qemuCheck,
  qemuCompare,
  removeFile,
  scratch,
  seconds,
  settle,
  table,
  timed,
  verdict,
} from './write-lib.js';

const BLOCK_SIZE = 32 * MiB;

/** The source image: every block written, a seeded half of them with zeros. */
async function makeSource(path: string, virtualSize: number): Promise<number> {
  removeFile(path);
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await create(backend, { virtualSize, type: 'dynamic', blockSize: BLOCK_SIZE });
  const image = await VhdxImage.open(backend, { readOnly: false });
  const data = new Uint8Array(BLOCK_SIZE);
  for (let i = 0; i < data.length; i += 4096) data.fill((i >> 12) % 251 + 1, i, i + 4096);
  const zeros = new Uint8Array(BLOCK_SIZE);
  let seed = 12345;
  let zeroBlocks = 0;
  for (let block = 0; block < virtualSize / BLOCK_SIZE; block++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const zero = (seed >>> 16) % 2 === 0;
    if (zero) zeroBlocks++;
    await image.write(block * BLOCK_SIZE, zero ? zeros : data);
  }
  await image.close();
  return zeroBlocks;
}

/** Runs a process, sampling `watch`'s size meanwhile; resolves to the seconds taken and the peak size seen. */
function timedWatching(command: string, args: string[], watch: string): Promise<{ seconds: number; peak: number }> {
  return new Promise((resolve, reject) => {
    let peak = statSync(watch).size;
    const sample = (): void => {
      try {
        peak = Math.max(peak, statSync(watch).size);
      } catch {
        // between a rename and a create: nothing to sample
      }
    };
    const timer = setInterval(sample, 2);
    const start = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      sample();
      const s = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== 0) reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      else resolve({ seconds: s, peak });
    });
  });
}

async function main(): Promise<number> {
  const args = parseCommonArgs(process.argv.slice(2));
  if (!available('qemu-img')) {
    console.error('qemu-img is not installed: nothing to compare with');
    return 1;
  }
  const virtualSize = args.quick ? GiB : 4 * GiB;
  const dir = scratch('vhdx-compact-bench', args.dir);
  const source = join(dir, 'source.vhdx');
  const work = join(dir, 'work.vhdx');
  const repacked = join(dir, 'repacked.vhdx');
  const zeroBlocks = await makeSource(source, virtualSize);
  const startSize = fileSize(source);
  console.log(
    `compact: ${bytes(virtualSize)} dynamic VHDX, ${bytes(BLOCK_SIZE)} blocks, all allocated, ${zeroBlocks} of ${virtualSize / BLOCK_SIZE} holding zeros (scattered); file ${bytes(startSize)}; best of ${args.runs} after a warm-up${args.quick ? ' (quick)' : ''}`,
  );
  console.log(environmentLine());
  const ours: number[] = [];
  const qemu: number[] = [];
  let peak = 0;
  let oursSize = 0;
  let qemuSize = 0;
  const problems: string[] = [];
  for (let round = 0; round <= args.runs; round++) {
    removeFile(work);
    copyFileSync(source, work);
    settle();
    const c = await timedWatching(VHDX_BIN, ['compact', work], work);
    peak = Math.max(peak, c.peak);
    oursSize = fileSize(work);
    const wrongOurs = qemuCompare(source, 'vhdx', work, 'vhdx') ?? qemuCheck(work);
    if (wrongOurs) problems.push(`vhdx compact, round ${round}: ${wrongOurs}`);

    removeFile(work);
    copyFileSync(source, work);
    removeFile(repacked);
    settle();
    const q = timed('qemu-img', ['convert', '-f', 'vhdx', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', work, repacked]);
    const sync = fdatasyncSeconds(repacked);
    qemuSize = fileSize(repacked);
    const wrongQemu = qemuCompare(source, 'vhdx', repacked, 'vhdx');
    if (wrongQemu) problems.push(`qemu-img convert, round ${round}: ${wrongQemu}`);
    console.log(`  ${round === 0 ? 'warm-up' : `run ${round}`}: vhdx compact ${seconds(c.seconds)}   qemu-img convert ${seconds(q.seconds)} (+ fdatasync ${seconds(sync)})`);
    if (round > 0) {
      ours.push(c.seconds);
      qemu.push(q.seconds + sync);
    }
  }
  removeFile(work);
  removeFile(repacked);
  const extra = (peak - startSize) / startSize;
  console.log('');
  console.log(
    table([
      ['method', 'best time', 'result file', 'peak extra space'],
      ['vhdx compact (in place)', seconds(best(ours)), bytes(oursSize), `${bytes(Math.max(0, peak - startSize))} (${(extra * 100).toFixed(2)}%)`],
      ['qemu-img convert (re-pack)', seconds(best(qemu)), bytes(qemuSize), `${bytes(qemuSize)} (${((qemuSize / startSize) * 100).toFixed(1)}%)`],
    ]),
  );
  console.log('');
  console.log(verdict({ name: 'compact time / qemu-img convert time', ratio: best(ours) / best(qemu), op: '<=', limit: 1.0 }));
  console.log(verdict({ name: 'peak extra space / image size', ratio: extra, op: '<=', limit: 0.01 }));
  for (const p of problems) console.log(`WRONG OUTPUT: ${p}`);
  return problems.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
