/**
 * Benchmark: sequential 4 KiB writes into a fresh dynamic image, through this library and through QEMU.
 *
 *   node dist/bench/write-seq.js [--quick] [--runs N] [--dir DIR] [--count N] [--no-trace]
 *
 * Both images are 1 GiB dynamic VHDX with 32 MiB blocks, made fresh before every run and not timed:
 * ours by `create`, QEMU's by `qemu-img create -f vhdx -o subformat=dynamic,block_size=32M`. Then
 * 200,000 writes of 4 KiB (20,000 with --quick), one after another from offset 0 (800 MiB, 25 blocks):
 *
 *   vhdx library     a Node process: openImage(path, {readOnly: false}); for each write
 *                    `await image.write(i * 4096, buf)`; then `await image.close()` (which fsyncs)
 *   qemu-img bench   qemu-img bench -w -f vhdx -c N -d 1 -s 4096 -S 4096 --pattern=1 IMG
 *                    (-d 1: one request in flight, the same shape as awaiting each write; cache mode
 *                    left at bench's default, writeback through the page cache with the thread pool,
 *                    which is what the library does too; -t none would add O_DIRECT and is not used)
 *   qemu-img bench -d 64 (info)   bench's default queue depth, 64 requests in flight
 *   vhdx library {sparse: true} (info)   the opt-in sparse open: a block allocated past the end of the
 *                    file is not zero-filled, the file is extended (what QEMU does)
 *
 * Both write the byte 0x01 (qemu-img bench writes zeros unless --pattern is given). Timed as whole
 * processes (start-up, open and close included), best of N after a warm-up round, rounds interleaved.
 * The in-process loop times are reported too: ours measured around the write loop, QEMU's from its
 * "Run completed in" line (which excludes its open and close). QEMU flushes on close and, for each new
 * block, through its log; the library fsyncs on close. "durable" adds an fdatasync of the output after
 * the process ends (about zero for both, as both synced). Every output is compared with a raw reference
 * by `qemu-img compare` and checked with `qemu-img check`. Target: vhdx/qemu-img (-d 1) <= 1.0.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../src/node/paths.js';
import {
  createDynamicVhdx,
  createDynamicVhdxWithQemu,
  GiB,
  MiB,
  available,
  best,
  bytes,
  environmentLine,
  fdatasyncSeconds,
  median,
  parseCommonArgs,
  qemuCheck,
  qemuCompare,
  removeFile,
  rounds,
  run,
  scratch,
  seconds,
  settle,
  syncSummary,
  table,
  timed,
  traceCounts,
  verdict,
  writeCallCount,
} from './write-lib.js';

const CHILD = '--child-seq';
const VIRTUAL_SIZE = GiB;
const BLOCK_SIZE = 32 * MiB;
const WRITE_SIZE = 4096;

type Key = 'vhdx' | 'qemu1' | 'qemu64' | 'sparse';

interface ChildReport {
  open: number;
  writes: number;
  close: number;
}

/** Child mode: the library workload, timed in-process by phase (the parent times the whole process). */
async function child(path: string, count: number, sparse: boolean): Promise<void> {
  const t0 = performance.now();
  const image = await openImage(path, sparse ? { readOnly: false, sparse: true } : { readOnly: false });
  const buffer = new Uint8Array(WRITE_SIZE).fill(1);
  const t1 = performance.now();
  for (let i = 0; i < count; i++) await image.write(i * WRITE_SIZE, buffer);
  const t2 = performance.now();
  await image.close();
  const t3 = performance.now();
  const report: ChildReport = { open: (t1 - t0) / 1000, writes: (t2 - t1) / 1000, close: (t3 - t2) / 1000 };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

/** The raw reference: `count` writes of 0x01 from offset 0, zeros (a hole) after. */
function makeReference(path: string, count: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, VIRTUAL_SIZE);
    const chunk = Buffer.alloc(8 * MiB, 1);
    const total = count * WRITE_SIZE;
    for (let at = 0; at < total; ) {
      const n = Math.min(chunk.length, total - at);
      at += writeSync(fd, chunk, 0, n, at);
    }
  } finally {
    closeSync(fd);
  }
}

async function main(): Promise<number> {
  if (process.argv[2] === CHILD) {
    await child(process.argv[3]!, Number(process.argv[4]), process.argv[5] === 'sparse');
    return 0;
  }
  const args = parseCommonArgs(process.argv.slice(2), ['count']);
  const count = Number(args.rest.get('count') ?? (args.quick ? 20_000 : 200_000));
  if (!Number.isSafeInteger(count) || count < 1 || count * WRITE_SIZE > VIRTUAL_SIZE) {
    console.error(`--count must be from 1 to ${VIRTUAL_SIZE / WRITE_SIZE}`);
    return 2;
  }
  if (!available('qemu-img')) {
    console.error('qemu-img is not installed: nothing to compare with');
    return 1;
  }
  const dir = scratch('vhdx-write-seq', args.dir);
  const reference = join(dir, 'reference.raw');
  makeReference(reference, count);
  const out: Record<Key, string> = { vhdx: join(dir, 'ours.vhdx'), qemu1: join(dir, 'qemu-d1.vhdx'), qemu64: join(dir, 'qemu-d64.vhdx'), sparse: join(dir, 'ours-sparse.vhdx') };
  const bench = (key: Key): string[] => [
    'bench', '-w', '-f', 'vhdx', '-c', String(count), '-d', key === 'qemu1' ? '1' : '64', '-s', String(WRITE_SIZE), '-S', String(WRITE_SIZE), '--pattern=1', out[key],
  ];
  const command = (key: Key): [string, string[]] =>
    key === 'vhdx' || key === 'sparse'
      ? [process.execPath, [process.argv[1]!, CHILD, out[key], String(count), key]]
      : ['qemu-img', bench(key)];
  const labels: Record<Key, string> = {
    vhdx: 'vhdx library, await each write',
    qemu1: 'qemu-img bench -d 1',
    qemu64: 'qemu-img bench -d 64 (default; info)',
    sparse: 'vhdx library, open {sparse: true} (info)',
  };
  const results = new Map<Key, { whole: number[]; loop: number[]; close: number[]; durable: number[]; problems: string[]; sync: string; writes: number; futex: number }>();
  for (const k of Object.keys(out) as Key[]) results.set(k, { whole: [], loop: [], close: [], durable: [], problems: [], sync: 'not traced', writes: 0, futex: 0 });

  console.log(`write-seq: ${count.toLocaleString('en')} sequential ${WRITE_SIZE}-byte writes (${bytes(count * WRITE_SIZE)}) into a fresh ${bytes(VIRTUAL_SIZE)} dynamic VHDX, ${bytes(BLOCK_SIZE)} blocks; best of ${args.runs} after a warm-up${args.quick ? ' (quick)' : ''}`);
  console.log(environmentLine());
  const keys: Key[] = ['vhdx', 'qemu1', 'qemu64', 'sparse'];
  const prepare = async (key: Key): Promise<void> => {
    if (key === 'vhdx' || key === 'sparse') await createDynamicVhdx(out[key], VIRTUAL_SIZE, BLOCK_SIZE);
    else createDynamicVhdxWithQemu(out[key], VIRTUAL_SIZE, BLOCK_SIZE);
  };
  // Rounds interleaved; round 0 is the warm-up.
  const order: [Key, number][] = [];
  rounds(keys, args.runs + 1, (key, round) => order.push([key, round]));
  for (const [key, round] of order) {
    const r = results.get(key)!;
    await prepare(key);
    settle();
    const [cmd, cmdArgs] = command(key);
    const t = timed(cmd, cmdArgs);
    const sync = fdatasyncSeconds(out[key]);
    let loop = Number.NaN;
    let close = Number.NaN;
    if (key === 'vhdx' || key === 'sparse') {
      const report = JSON.parse(t.stdout.trim().split('\n').pop()!) as ChildReport;
      loop = report.writes;
      close = report.close;
    } else {
      const m = /Run completed in ([\d.]+) seconds/.exec(t.stdout);
      if (m) loop = Number(m[1]);
    }
    if (round > 0) {
      r.whole.push(t.seconds);
      r.loop.push(loop);
      r.close.push(close);
      r.durable.push(t.seconds + sync);
    }
    const wrong = qemuCompare(reference, 'raw', out[key], 'vhdx') ?? qemuCheck(out[key]);
    if (wrong) r.problems.push(`round ${round}: ${wrong}`);
    console.log(`  ${round === 0 ? 'warm-up' : `run ${round}`}: ${labels[key].padEnd(36)} ${seconds(t.seconds)}  (loop ${seconds(loop)}${key === 'vhdx' || key === 'sparse' ? `, close ${seconds(close)}` : ''}; + fdatasync ${seconds(sync)})${wrong ? '  WRONG OUTPUT' : ''}`);
    removeFile(out[key]);
  }
  if (args.trace && available('strace', ['-V'])) {
    for (const key of keys) {
      await prepare(key);
      settle();
      const [cmd, cmdArgs] = command(key);
      const tr = traceCounts(cmd, cmdArgs, join(dir, 'strace.txt'));
      const r = results.get(key)!;
      r.sync = syncSummary(tr);
      r.writes = writeCallCount(tr);
      r.futex = tr.calls.get('futex') ?? 0;
      removeFile(out[key]);
    }
  }

  const rows = [['contender', 'best', 'median', 'best loop', 'per write', 'best durable', 'syncs (strace)', 'pwrite+copy calls', 'futex calls', 'verified']];
  for (const key of keys) {
    const r = results.get(key)!;
    const loop = best(r.loop.filter((x) => !Number.isNaN(x)));
    rows.push([
      labels[key],
      seconds(best(r.whole)),
      seconds(median(r.whole)),
      seconds(loop),
      `${((loop / count) * 1e6).toFixed(1)} us`,
      seconds(best(r.durable)),
      r.sync,
      String(r.writes || '-'),
      String(r.futex || '-'),
      r.problems.length ? 'WRONG' : 'ok',
    ]);
  }
  console.log('');
  console.log(table(rows));
  console.log('  best/median: whole process; loop: the write loop alone (ours in-process; QEMU\'s "Run completed in"); per write: loop / count;');
  console.log(`  best durable: whole process + fdatasync of the output. Our close (flush + log + headers) took ${seconds(best(results.get('vhdx')!.close))} at best.`);
  const whole = (k: Key): number => best(results.get(k)!.whole);
  const loop = (k: Key): number => best(results.get(k)!.loop);
  console.log('');
  console.log(verdict({ name: 'vhdx/qemu-img -d 1 (whole process)', ratio: whole('vhdx') / whole('qemu1'), op: '<=', limit: 1.0 }));
  console.log(verdict({ name: 'vhdx/qemu-img -d 1 (write loop)   ', ratio: loop('vhdx') / loop('qemu1'), op: '<=', limit: 1.0, note: '(informational)' }));
  console.log(verdict({ name: 'vhdx/qemu-img -d 64 (whole process)', ratio: whole('vhdx') / whole('qemu64'), op: '<=', limit: 1.0, note: '(informational: QEMU with 64 requests in flight)' }));
  let ok = true;
  for (const key of keys) {
    for (const p of results.get(key)!.problems) {
      console.error(`WRONG OUTPUT (${labels[key]}): ${p}`);
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

process.exitCode = await main();
