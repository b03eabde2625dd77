/**
 * Benchmark: allocation-heavy writing. Every write lands in a block nobody has written yet.
 *
 *   node dist/bench/write-alloc.js [--quick] [--runs N] [--dir DIR] [--count N] [--no-trace]
 *
 * A fresh 2 GiB dynamic VHDX with 1 MiB blocks (made before every run, not timed: ours by `create`,
 * QEMU's by `qemu-img create -f vhdx -o subformat=dynamic,block_size=1M`), then 2,000 writes of 4 KiB
 * (200 with --quick), write i at offset i MiB (so each one allocates a block), a flush after every
 * 100 writes, then close:
 *
 *   vhdx library   a Node process: openImage(path, {readOnly: false}); `await image.write(i MiB, buf)`,
 *                  `await image.flush()` every 100; `await image.close()`
 *   qemu-io        qemu-io -f vhdx -c 'write -P 1 OFFSET 4k' ... -c flush (every 100) ... IMG
 *                  (one process, the commands run in order; default cache mode, writeback, so its
 *                  flush is an fdatasync like ours is an fsync)
 *
 * qemu-io cannot time its own write phase (it times each command, not flushes), so both are timed as
 * whole processes, and each also has a baseline run that opens the fresh image and closes it with no
 * writes (ours: the same child with 0 writes; QEMU: qemu-io -c flush); "net" is whole minus the best
 * baseline. Best of N after a warm-up round, rounds interleaved. Outputs are compared with a raw
 * reference by `qemu-img compare` and checked with `qemu-img check`; their allocated size is shown
 * (a writer that zero-fills each new block allocates the whole block, one that extends the file
 * leaves a hole). An information row repeats the library run with the opt-in `sparse: true` open, which
 * extends the file instead of zero-filling a block allocated past its end (what QEMU does). Target (the
 * default open): our rate >= 10x QEMU's, i.e. qemu_time / vhdx_time >= 10.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../src/node/paths.js';
import {
  createDynamicVhdx,
  createDynamicVhdxWithQemu,
  GiB,
  MiB,
  allocatedBytes,
  available,
  best,
  bytes,
  environmentLine,
  fdatasyncSeconds,
  fileSize,
  median,
  parseCommonArgs,
  qemuCheck,
  qemuCompare,
  removeFile,
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

const CHILD = '--child-alloc';
const VIRTUAL_SIZE = 2 * GiB;
const BLOCK_SIZE = MiB;
const WRITE_SIZE = 4096;
const FLUSH_EVERY = 100;

type Key = 'vhdx' | 'qemu' | 'vhdx0' | 'qemu0' | 'sparse';

interface ChildReport {
  open: number;
  writes: number;
  close: number;
}

/** Child mode: the library workload; `count` 0 is the open/close baseline. */
async function child(path: string, count: number, sparse: boolean): Promise<void> {
  const t0 = performance.now();
  const image = await openImage(path, sparse ? { readOnly: false, sparse: true } : { readOnly: false });
  const buffer = new Uint8Array(WRITE_SIZE).fill(1);
  const t1 = performance.now();
  for (let i = 0; i < count; i++) {
    await image.write(i * BLOCK_SIZE, buffer);
    if ((i + 1) % FLUSH_EVERY === 0) await image.flush();
  }
  const t2 = performance.now();
  await image.close();
  const t3 = performance.now();
  const report: ChildReport = { open: (t1 - t0) / 1000, writes: (t2 - t1) / 1000, close: (t3 - t2) / 1000 };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function qemuIoArgs(path: string, count: number): string[] {
  const args = ['-f', 'vhdx'];
  for (let i = 0; i < count; i++) {
    args.push('-c', `write -P 1 ${i * BLOCK_SIZE} 4k`);
    if ((i + 1) % FLUSH_EVERY === 0) args.push('-c', 'flush');
  }
  if (count === 0) args.push('-c', 'flush');
  args.push(path);
  return args;
}

/** The raw reference: 4 KiB of 0x01 at every i MiB, holes elsewhere. */
function makeReference(path: string, count: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, VIRTUAL_SIZE);
    const data = Buffer.alloc(WRITE_SIZE, 1);
    for (let i = 0; i < count; i++) writeSync(fd, data, 0, WRITE_SIZE, i * BLOCK_SIZE);
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
  const count = Number(args.rest.get('count') ?? (args.quick ? 200 : 2000));
  if (!Number.isSafeInteger(count) || count < 1 || count * BLOCK_SIZE > VIRTUAL_SIZE) {
    console.error(`--count must be from 1 to ${VIRTUAL_SIZE / BLOCK_SIZE}`);
    return 2;
  }
  if (!available('qemu-io', ['--version'])) {
    console.error('qemu-io is not installed: nothing to compare with');
    return 1;
  }
  const dir = scratch('vhdx-write-alloc', args.dir);
  const reference = join(dir, 'reference.raw');
  makeReference(reference, count);
  const out: Record<Key, string> = { vhdx: join(dir, 'ours.vhdx'), qemu: join(dir, 'qemu.vhdx'), vhdx0: join(dir, 'ours-0.vhdx'), qemu0: join(dir, 'qemu-0.vhdx'), sparse: join(dir, 'ours-sparse.vhdx') };
  const labels: Record<Key, string> = {
    vhdx: 'vhdx library',
    qemu: 'qemu-io',
    vhdx0: 'vhdx library, open+close only (baseline)',
    qemu0: 'qemu-io -c flush, open+close only (baseline)',
    sparse: 'vhdx library, open {sparse: true} (info)',
  };
  const command = (key: Key): [string, string[]] => {
    switch (key) {
      case 'vhdx':
        return [process.execPath, [process.argv[1]!, CHILD, out.vhdx, String(count)]];
      case 'vhdx0':
        return [process.execPath, [process.argv[1]!, CHILD, out.vhdx0, '0']];
      case 'qemu':
        return ['qemu-io', qemuIoArgs(out.qemu, count)];
      case 'qemu0':
        return ['qemu-io', qemuIoArgs(out.qemu0, 0)];
      case 'sparse':
        return [process.execPath, [process.argv[1]!, CHILD, out.sparse, String(count), 'sparse']];
    }
  };
  const prepare = async (key: Key): Promise<void> => {
    if (key === 'vhdx' || key === 'vhdx0' || key === 'sparse') await createDynamicVhdx(out[key], VIRTUAL_SIZE, BLOCK_SIZE);
    else createDynamicVhdxWithQemu(out[key], VIRTUAL_SIZE, BLOCK_SIZE);
  };
  const keys: Key[] = ['vhdx', 'qemu', 'vhdx0', 'qemu0', 'sparse'];
  const results = new Map<Key, { whole: number[]; durable: number[]; loop: number[]; problems: string[]; sync: string; writes: number; truncates: number; size: number; allocated: number }>();
  for (const k of keys) results.set(k, { whole: [], durable: [], loop: [], problems: [], sync: 'not traced', writes: 0, truncates: 0, size: 0, allocated: 0 });

  console.log(`write-alloc: ${count.toLocaleString('en')} writes of ${WRITE_SIZE} bytes, each into a fresh ${bytes(BLOCK_SIZE)} block, flush every ${FLUSH_EVERY}; ${bytes(VIRTUAL_SIZE)} dynamic VHDX; best of ${args.runs} after a warm-up${args.quick ? ' (quick)' : ''}`);
  console.log(environmentLine());
  for (let round = 0; round <= args.runs; round++) {
    for (const key of keys) {
      const r = results.get(key)!;
      await prepare(key);
      settle();
      const [cmd, cmdArgs] = command(key);
      const t = timed(cmd, cmdArgs);
      const sync = fdatasyncSeconds(out[key]);
      let loop = Number.NaN;
      if (key === 'vhdx' || key === 'vhdx0' || key === 'sparse') loop = (JSON.parse(t.stdout.trim().split('\n').pop()!) as ChildReport).writes;
      if (round > 0) {
        r.whole.push(t.seconds);
        r.durable.push(t.seconds + sync);
        r.loop.push(loop);
      }
      if (key === 'vhdx' || key === 'qemu' || key === 'sparse') {
        const wrong = qemuCompare(reference, 'raw', out[key], 'vhdx') ?? qemuCheck(out[key]);
        if (wrong) r.problems.push(`round ${round}: ${wrong}`);
        r.size = fileSize(out[key]);
        r.allocated = allocatedBytes(out[key]);
        console.log(`  ${round === 0 ? 'warm-up' : `run ${round}`}: ${labels[key].padEnd(44)} ${seconds(t.seconds)}  (+ fdatasync ${seconds(sync)})${wrong ? '  WRONG OUTPUT' : ''}`);
      }
      removeFile(out[key]);
    }
  }
  if (args.trace && available('strace', ['-V'])) {
    for (const key of ['vhdx', 'qemu', 'sparse'] as const) {
      await prepare(key);
      settle();
      const [cmd, cmdArgs] = command(key);
      const tr = traceCounts(cmd, cmdArgs, join(dir, 'strace.txt'));
      const r = results.get(key)!;
      r.sync = syncSummary(tr);
      r.writes = writeCallCount(tr);
      r.truncates = tr.calls.get('ftruncate') ?? 0;
      removeFile(out[key]);
    }
  }

  const base = (k: 'vhdx0' | 'qemu0'): number => best(results.get(k)!.whole);
  const rows = [['contender', 'best', 'median', 'net of baseline', 'best durable', 'syncs (strace)', 'pwrite+copy calls', 'ftruncate', 'file size', 'allocated', 'verified']];
  for (const key of keys) {
    const r = results.get(key)!;
    const main = key === 'vhdx' || key === 'qemu' || key === 'sparse';
    rows.push([
      labels[key],
      seconds(best(r.whole)),
      seconds(median(r.whole)),
      main ? seconds(best(r.whole) - base(key === 'qemu' ? 'qemu0' : 'vhdx0')) : '-',
      seconds(best(r.durable)),
      main ? r.sync : '-',
      main ? String(r.writes || '-') : '-',
      main ? String(r.truncates) : '-',
      main ? bytes(r.size) : '-',
      main ? bytes(r.allocated) : '-',
      main ? (r.problems.length ? 'WRONG' : 'ok') : '-',
    ]);
  }
  console.log('');
  console.log(table(rows));
  console.log(`  best/median: whole process; net: best minus the best open+close baseline; best durable: + fdatasync of the output after exit.`);
  console.log(`  our write loop (writes + flushes, in-process) took ${seconds(best(results.get('vhdx')!.loop))} at best.`);
  const whole = (k: Key): number => best(results.get(k)!.whole);
  console.log('');
  console.log(verdict({ name: 'qemu-io/vhdx (whole process)   ', ratio: whole('qemu') / whole('vhdx'), op: '>=', limit: 10 }));
  console.log(
    verdict({
      name: 'qemu-io/vhdx (net of baselines)',
      ratio: (whole('qemu') - base('qemu0')) / (whole('vhdx') - base('vhdx0')),
      op: '>=',
      limit: 10,
      note: '(informational)',
    }),
  );
  console.log(
    verdict({
      name: 'qemu-io/vhdx {sparse: true}     ',
      ratio: whole('qemu') / whole('sparse'),
      op: '>=',
      limit: 10,
      note: '(informational: the opt-in sparse open, new blocks past the end of the file left as holes as QEMU does)',
    }),
  );
  console.log(`  rates: vhdx ${(count / whole('vhdx')).toFixed(0)} allocating writes/s, qemu-io ${(count / whole('qemu')).toFixed(0)} allocating writes/s (whole process)`);
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
