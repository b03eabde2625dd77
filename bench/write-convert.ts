/**
 * Benchmark: raw -> dynamic VHDX conversion, side by side with qemu-img and with a plain copy.
 *
 *   node dist/bench/write-convert.js [--quick] [--runs N] [--dir DIR] [--source zeros|holes|both] [--no-trace]
 *
 * The source is a raw disk of 2 GiB (256 MiB with --quick) made of alternating 64 MiB regions: random
 * bytes, then zeros. With `--source zeros` (the default) the zero regions are real zero bytes written
 * to disk, as in an image read off a device with dd: every contender must read all 2 GiB and find the
 * zeros itself. With `--source holes` they are holes (a sparse raw file), which lets qemu-img and cp skip
 * them by asking the file system (SEEK_DATA) instead of reading. `both` measures the two in turn.
 *
 * Contenders, each timed as a whole process (start-up included), best of N after one warm-up round,
 * rounds interleaved so background load hits all alike; before every run the source is read into the
 * page cache and `sync` writes back everything dirty, so every contender starts from the same state:
 *
 *   vhdx convert RAW OUT.vhdx                                        (this project's CLI; 32 MiB blocks by default)
 *   qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=32M RAW OUT.vhdx
 *   cp RAW OUT.raw                                                   (the floor: the same bytes with no format)
 *   vhdx library convertToVhdx with flush() a no-op (info only)      (what our fsyncs cost; never a target)
 *
 * Durability is not equal out of the box: `vhdx convert` fsyncs its output before it exits (it closes
 * the image through the log), while qemu-img convert writes with cache=unsafe (no fsync after creating
 * the empty image) and cp never syncs. So every run is also timed "durable": the command plus an
 * fdatasync of its output afterwards, which is what it takes for each output to be on disk. The strace
 * column (a separate, untimed run under `strace -f -c`) shows who syncs and how many write calls each
 * makes. Every output is checked with `qemu-img compare` against the raw source (and VHDX outputs with
 * `qemu-img check`) after every run.
 *
 * Targets (as-is, the CLI as shipped): vhdx/qemu-img <= 1.0 and vhdx/cp <= 1.3. The durable ratios are
 * printed beside them. Exit status 0 whatever the ratios; 1 only if an output is wrong or a tool fails.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, fdatasyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { NodeFileBackend } from '../src/node/file-backend.js';
import { convertToVhdx } from '../src/ops/convert-to-vhdx.js';
import { rawSource } from '../src/ops/source.js';
import type { Backend } from '../src/io/backend.js';
import {
  GiB,
  MiB,
  VHDX_BIN,
  allocatedBytes,
  available,
  best,
  bytes,
  environmentLine,
  fdatasyncSeconds,
  fileSize,
  freeBytes,
  median,
  parseCommonArgs,
  qemuCheck,
  qemuCompare,
  removeFile,
  rounds,
  scratch,
  seconds,
  settle,
  syncSummary,
  table,
  timed,
  traceCounts,
  verdict,
  warm,
  writeCallCount,
} from './write-lib.js';

const CHILD = '--child-nosync-convert';

type Key = 'vhdx' | 'qemu' | 'cp' | 'nosync';

interface Contender {
  key: Key;
  label: string;
  out: string;
  format: 'vhdx' | 'raw';
  command: string;
  args: string[];
  info: boolean;
}

interface Result {
  cmd: number[];
  durable: number[];
  sync: string;
  writes: number;
  size: number;
  allocated: number;
  problems: string[];
}

/** Child mode: the library conversion with every flush() turned into a no-op (information only). */
async function childNoSync(raw: string, out: string): Promise<void> {
  const input = await NodeFileBackend.open(raw, { readOnly: true });
  const real = await NodeFileBackend.open(out, { readOnly: false, create: true });
  const noSync: Backend = {
    name: real.name,
    readOnly: false,
    read: (t, p) => real.read(t, p),
    write: (d, p) => real.write(d, p),
    flush: async () => undefined,
    size: () => real.size(),
    truncate: (s) => real.truncate(s),
    close: () => real.close(),
  };
  await convertToVhdx(rawSource(input, await input.size()), noSync);
  await real.close();
  await input.close();
}

/** Alternating 64 MiB regions, random then zero; zero regions written as zero bytes or left as holes. */
function makeSource(path: string, size: number, region: number, zeros: 'zeros' | 'holes'): void {
  const fd = openSync(path, 'wx');
  const buffer = Buffer.alloc(8 * MiB);
  try {
    ftruncateSync(fd, size);
    for (let offset = 0, i = 0; offset < size; offset += region, i++) {
      const data = i % 2 === 0;
      if (!data && zeros === 'holes') continue;
      const end = Math.min(size, offset + region);
      for (let at = offset; at < end; ) {
        const n = Math.min(buffer.length, end - at);
        if (data) randomFillSync(buffer, 0, n);
        else buffer.fill(0, 0, n);
        for (let w = 0; w < n; ) w += writeSync(fd, buffer, w, n - w, at + w);
        at += n;
      }
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function measure(dir: string, sourceKind: 'zeros' | 'holes', size: number, region: number, runs: number, trace: boolean): boolean {
  const raw = join(dir, `source-${sourceKind}.raw`);
  makeSource(raw, size, region, sourceKind);
  const contenders: Contender[] = [
    { key: 'vhdx', label: 'vhdx convert', out: join(dir, 'out-vhdx.vhdx'), format: 'vhdx', command: VHDX_BIN, args: [], info: false },
    { key: 'qemu', label: 'qemu-img convert -O vhdx', out: join(dir, 'out-qemu.vhdx'), format: 'vhdx', command: 'qemu-img', args: [], info: false },
    { key: 'cp', label: 'cp', out: join(dir, 'out-cp.raw'), format: 'raw', command: 'cp', args: [], info: false },
    { key: 'nosync', label: 'vhdx lib, flush no-op (info)', out: join(dir, 'out-nosync.vhdx'), format: 'vhdx', command: process.execPath, args: [], info: true },
  ];
  for (const c of contenders) {
    if (c.key === 'vhdx') c.args = ['convert', raw, c.out]; // the executable, as a user runs it
    if (c.key === 'qemu') c.args = ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', raw, c.out];
    if (c.key === 'cp') c.args = [raw, c.out];
    if (c.key === 'nosync') c.args = [process.argv[1]!, CHILD, raw, c.out];
  }
  const results = new Map<Key, Result>(contenders.map((c) => [c.key, { cmd: [], durable: [], sync: 'not traced', writes: 0, size: 0, allocated: 0, problems: [] }]));

  console.log(`\nsource: ${bytes(size)} raw, alternating ${bytes(region)} random / ${bytes(region)} zero regions, zero regions ${sourceKind === 'zeros' ? 'written as zero bytes (fully allocated file)' : 'left as holes (sparse file)'}; allocated ${bytes(allocatedBytes(raw))}`);
  // Round 0 is the warm-up (verified, not counted).
  rounds(
    contenders.map((c) => c.key),
    runs + 1,
    (key, round) => {
      const c = contenders.find((x) => x.key === key)!;
      const r = results.get(key)!;
      removeFile(c.out);
      warm(raw);
      settle();
      const t = timed(c.command, c.args);
      const sync = fdatasyncSeconds(c.out);
      if (round > 0) {
        r.cmd.push(t.seconds);
        r.durable.push(t.seconds + sync);
      }
      const wrong = qemuCompare(raw, 'raw', c.out, c.format) ?? (c.format === 'vhdx' ? qemuCheck(c.out) : null);
      if (wrong) r.problems.push(`round ${round}: ${wrong}`);
      r.size = fileSize(c.out);
      r.allocated = allocatedBytes(c.out);
      removeFile(c.out);
      process.stdout.write(`  ${round === 0 ? 'warm-up' : `run ${round}`}: ${c.label.padEnd(30)} ${seconds(t.seconds)}  (+ fdatasync ${seconds(sync)})${wrong ? '  WRONG OUTPUT' : ''}\n`);
    },
  );
  if (trace && available('strace', ['-V'])) {
    for (const c of contenders) {
      removeFile(c.out);
      settle();
      const tr = traceCounts(c.command, c.args, join(dir, 'strace.txt'));
      const r = results.get(c.key)!;
      r.sync = syncSummary(tr);
      r.writes = writeCallCount(tr);
      removeFile(c.out);
    }
  }

  const rows = [['contender', 'best', 'median', 'best durable', 'syncs (strace)', 'pwrite+copy calls', 'output size', 'allocated', 'verified']];
  for (const c of contenders) {
    const r = results.get(c.key)!;
    rows.push([c.label, seconds(best(r.cmd)), seconds(median(r.cmd)), seconds(best(r.durable)), r.sync, String(r.writes || '-'), bytes(r.size), bytes(r.allocated), r.problems.length ? 'WRONG' : 'ok']);
  }
  console.log('');
  console.log(table(rows));
  console.log('  best/median: whole process, best and median of the timed runs; best durable: command + fdatasync of its output afterwards.');
  console.log('  durability: qemu-img convert opens its output with cache=unsafe, so the fdatasyncs strace shows all come from creating the');
  console.log('  empty image, none after the data; cp never syncs; vhdx convert fsyncs the data, its log entry and headers as it closes.');
  const get = (k: Key, durable = false): number => best(durable ? results.get(k)!.durable : results.get(k)!.cmd);
  console.log('');
  console.log(verdict({ name: 'vhdx/qemu-img (as-is)  ', ratio: get('vhdx') / get('qemu'), op: '<=', limit: 1.0 }));
  console.log(verdict({ name: 'vhdx/cp (as-is)        ', ratio: get('vhdx') / get('cp'), op: '<=', limit: 1.3 }));
  console.log(verdict({ name: 'vhdx/qemu-img (durable)', ratio: get('vhdx', true) / get('qemu', true), op: '<=', limit: 1.0, note: '(both outputs fdatasynced; informational)' }));
  console.log(verdict({ name: 'vhdx/cp (durable)      ', ratio: get('vhdx', true) / get('cp', true), op: '<=', limit: 1.3, note: '(both outputs fdatasynced; informational)' }));
  console.log(`  info: our fsyncs cost ${seconds(get('vhdx') - get('nosync'))} here (vhdx convert minus the library run with flush a no-op, which is not durable).`);
  removeFile(raw);
  let ok = true;
  for (const c of contenders) {
    for (const p of results.get(c.key)!.problems) {
      console.error(`WRONG OUTPUT (${c.label}): ${p}`);
      ok = false;
    }
  }
  return ok;
}

async function main(): Promise<number> {
  if (process.argv[2] === CHILD) {
    await childNoSync(process.argv[3]!, process.argv[4]!);
    return 0;
  }
  const args = parseCommonArgs(process.argv.slice(2), ['source']);
  const sourceArg = args.rest.get('source') ?? 'zeros';
  if (!['zeros', 'holes', 'both'].includes(sourceArg)) {
    console.error('--source must be zeros, holes or both');
    return 2;
  }
  if (!available('qemu-img')) {
    console.error('qemu-img is not installed: nothing to compare with');
    return 1;
  }
  const size = args.quick ? 256 * MiB : 2 * GiB;
  const region = 64 * MiB;
  const dir = scratch('vhdx-write-convert', args.dir);
  const need = size * 2 + 64 * MiB;
  if (freeBytes(dir) < need) {
    console.error(`not enough free space in ${dir}: need ${bytes(need)}`);
    return 1;
  }
  console.log(`write-convert: raw -> dynamic VHDX (32 MiB blocks), best of ${args.runs} after a warm-up${args.quick ? ' (quick)' : ''}`);
  console.log(environmentLine());
  let ok = true;
  for (const kind of sourceArg === 'both' ? (['zeros', 'holes'] as const) : ([sourceArg as 'zeros' | 'holes'] as const)) {
    ok = measure(dir, kind, size, region, args.runs, args.trace) && ok;
  }
  return ok ? 0 : 1;
}

process.exitCode = await main();
