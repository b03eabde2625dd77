/**
 * Benchmark: convert raw -> VHDX and VHDX -> raw, side by side with qemu-img, like for like in both
 * cache modes, in one run.
 *
 *   node dist/bench/convert.js [--quick] [--runs N] [--dir DIR] [--no-trace]
 *
 * The disk: 2 GiB (256 MiB with --quick) of alternating 64 MiB regions, random bytes then zero bytes
 * (written, as in an image read off a device with dd: every contender must read the zeros and find them
 * itself). The VHDX input of the second direction is that disk converted by us (dynamic, 32 MiB blocks,
 * zero blocks unallocated); both tools read the same file.
 *
 * Contenders, each timed as a whole process (start-up included), rounds interleaved, best and median of
 * N after one warm-up round; before every run the input is read into the page cache and `sync` writes
 * back everything dirty, so each starts from the same state:
 *
 *   durable   vhdx convert IN OUT                    data synced before the metadata that points at it, synced at exit
 *             qemu-img convert -t writeback IN OUT   flushes (fdatasync) when it closes the output
 *             cp IN OUT && sync OUT                  the floor for durable bytes with no format
 *   unsafe    vhdx convert -t unsafe IN OUT          no sync at all
 *             qemu-img convert IN OUT                its default output cache mode is unsafe: no sync
 *
 * strace (a separate, untimed run per contender) shows the sync calls each makes, so the pairing is
 * checked, not assumed. Every output is verified with `qemu-img compare` against the raw disk (VHDX
 * outputs also with `qemu-img check`) after every run.
 *
 * Also raw -> dynamic VHD (2 MiB blocks on both sides; qemu-img `-O vpc -o subformat=dynamic,force_size=on`),
 * for information: the same job in the older format.
 *
 * Targets (issue: performance round 2): vhdx/qemu-img <= 0.8 in each direction and each cache mode; the
 * durable raw -> VHDX ratio to cp + sync is printed beside them. Exit status 0 whatever the ratios; 1
 * only if an output is wrong or a tool fails.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, fdatasyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  VHDX_BIN,
  available,
  best,
  bytes,
  environmentLine,
  freeBytes,
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
  warm,
} from './write-lib.js';

type Direction = 'to-vhdx' | 'to-raw' | 'to-vhd';
type Mode = 'durable' | 'unsafe';

interface Contender {
  key: string;
  label: string;
  mode: Mode;
  tool: 'vhdx' | 'qemu' | 'cp';
  out: string;
  format: 'vhdx' | 'raw' | 'vpc';
  command: string;
  args: string[];
}

interface Result {
  times: number[];
  sync: string;
  problems: string[];
}

/** Alternating regions, random then zero bytes (written, not holes), synced. */
function makeRaw(path: string, size: number, region: number): void {
  const fd = openSync(path, 'wx');
  const buffer = Buffer.alloc(8 * MiB);
  try {
    ftruncateSync(fd, size);
    for (let offset = 0, i = 0; offset < size; offset += region, i++) {
      const end = Math.min(size, offset + region);
      for (let at = offset; at < end; ) {
        const n = Math.min(buffer.length, end - at);
        if (i % 2 === 0) randomFillSync(buffer, 0, n);
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

function contenders(direction: Direction, input: string, dir: string): Contender[] {
  const toVhdx = direction === 'to-vhdx';
  const toVhd = direction === 'to-vhd';
  const format = toVhdx ? 'vhdx' : toVhd ? 'vpc' : 'raw';
  const ext = toVhdx ? 'vhdx' : toVhd ? 'vhd' : 'raw';
  // A dynamic VHD with QEMU's default 2 MiB blocks on both sides; force_size keeps the exact size (ours always does).
  const qemuArgs = toVhdx ? ['-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M'] : toVhd ? ['-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on'] : ['-f', 'vhdx', '-O', 'raw'];
  const out = (name: string): string => join(dir, `out-${name}.${ext}`);
  const list: Contender[] = [
    { key: 'vhdx-durable', label: 'vhdx convert', mode: 'durable', tool: 'vhdx', out: out('vhdx-durable'), format, command: VHDX_BIN, args: [] },
    { key: 'qemu-durable', label: 'qemu-img convert -t writeback', mode: 'durable', tool: 'qemu', out: out('qemu-durable'), format, command: 'qemu-img', args: [] },
    { key: 'cp-durable', label: 'cp + sync', mode: 'durable', tool: 'cp', out: join(dir, `out-cp.${direction === 'to-raw' ? 'vhdx' : 'raw'}`), format: direction === 'to-raw' ? 'vhdx' : 'raw', command: 'sh', args: [] },
    { key: 'vhdx-unsafe', label: 'vhdx convert -t unsafe', mode: 'unsafe', tool: 'vhdx', out: out('vhdx-unsafe'), format, command: VHDX_BIN, args: [] },
    { key: 'qemu-unsafe', label: 'qemu-img convert (default: unsafe)', mode: 'unsafe', tool: 'qemu', out: out('qemu-unsafe'), format, command: 'qemu-img', args: [] },
  ];
  for (const c of list) {
    if (c.tool === 'vhdx') c.args = ['convert', input, c.out, ...(toVhd ? ['--type', 'dynamic'] : []), ...(c.mode === 'unsafe' ? ['-t', 'unsafe'] : [])];
    if (c.tool === 'qemu') c.args = ['convert', ...qemuArgs, ...(c.mode === 'durable' ? ['-t', 'writeback'] : []), input, c.out];
    if (c.tool === 'cp') c.args = ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', input, c.out];
  }
  return list;
}

function toVhd(direction: Direction): boolean {
  return direction === 'to-vhd';
}

function measure(direction: Direction, input: string, raw: string, dir: string, runs: number, trace: boolean): { ok: boolean; lines: string[] } {
  const list = contenders(direction, input, dir);
  const results = new Map<string, Result>(list.map((c) => [c.key, { times: [], sync: 'not traced', problems: [] }]));
  const name = direction === 'to-vhdx' ? 'raw->VHDX' : direction === 'to-vhd' ? 'raw->VHD (dynamic)' : 'VHDX->raw';
  console.log(`\n${name} (input ${input})`);
  rounds(
    list.map((c) => c.key),
    runs + 1,
    (key, round) => {
      const c = list.find((x) => x.key === key)!;
      const r = results.get(key)!;
      removeFile(c.out);
      warm(input);
      settle();
      const t = timed(c.command, c.args);
      if (round > 0) r.times.push(t.seconds);
      // cp copies the input as it is: it is checked against the input, every other output against the disk.
      const wrong =
        c.tool === 'cp' ? qemuCompare(input, direction === 'to-raw' ? 'vhdx' : 'raw', c.out, c.format) : (qemuCompare(raw, 'raw', c.out, c.format) ?? (c.format === 'vhdx' ? qemuCheck(c.out) : null));
      if (wrong) r.problems.push(`round ${round}: ${wrong}`);
      removeFile(c.out);
      process.stdout.write(`  ${round === 0 ? 'warm-up' : `run ${round}`}: ${c.label.padEnd(36)} ${seconds(t.seconds)}${wrong ? '  WRONG OUTPUT' : ''}\n`);
    },
  );
  if (trace && available('strace', ['-V'])) {
    for (const c of list) {
      removeFile(c.out);
      settle();
      results.get(c.key)!.sync = syncSummary(traceCounts(c.command, c.args, join(dir, 'strace.txt')));
      removeFile(c.out);
    }
  }
  const rows = [['mode', 'contender', 'best', 'median', 'syncs (strace)', 'verified']];
  for (const c of list) {
    const r = results.get(c.key)!;
    rows.push([c.mode, c.label, seconds(best(r.times)), seconds(median(r.times)), r.sync, r.problems.length ? 'WRONG' : 'ok']);
  }
  console.log('');
  console.log(table(rows));
  const get = (key: string): number => best(results.get(key)!.times);
  // VHD output has no target of its own (information: the same job as raw -> VHDX, in the older format).
  const ratioLine = (label: string, ratio: number): string => (toVhd(direction) ? `${label} = ${ratio.toFixed(3)}  (informational)` : verdict({ name: label, ratio, op: '<=', limit: 0.8 }));
  const lines = [
    ratioLine(`${name} vhdx/qemu-img durable (writeback)`, get('vhdx-durable') / get('qemu-durable')),
    ratioLine(`${name} vhdx/qemu-img unsafe             `, get('vhdx-unsafe') / get('qemu-unsafe')),
    `${name} vhdx durable / (cp + sync) = ${(get('vhdx-durable') / get('cp-durable')).toFixed(3)}  (informational)`,
  ];
  let ok = true;
  for (const c of list) {
    for (const p of results.get(c.key)!.problems) {
      console.error(`WRONG OUTPUT (${c.label}): ${p}`);
      ok = false;
    }
  }
  return { ok, lines };
}

async function main(): Promise<number> {
  const args = parseCommonArgs(process.argv.slice(2));
  if (!available('qemu-img')) {
    console.error('qemu-img is not installed: nothing to compare with');
    return 1;
  }
  const size = args.quick ? 256 * MiB : 2 * GiB;
  const dir = scratch('vhdx-bench-convert', args.dir);
  const need = size * 3 + 64 * MiB;
  if (freeBytes(dir) < need) {
    console.error(`not enough free space in ${dir}: need ${bytes(need)}`);
    return 1;
  }
  console.log(`convert: ${bytes(size)} disk, alternating 64 MiB random / zero-byte regions; best of ${args.runs} after a warm-up${args.quick ? ' (quick)' : ''}`);
  console.log(environmentLine());
  const raw = join(dir, 'disk.raw');
  makeRaw(raw, size, 64 * MiB);
  const vhdx = join(dir, 'disk.vhdx');
  run(VHDX_BIN, ['convert', raw, vhdx]);
  const a = measure('to-vhdx', raw, raw, dir, args.runs, args.trace);
  const b = measure('to-raw', vhdx, raw, dir, args.runs, args.trace);
  const c = measure('to-vhd', raw, raw, dir, args.runs, args.trace);
  console.log('');
  for (const line of [...a.lines, ...b.lines, ...c.lines]) console.log(line);
  console.log(environmentLine());
  return a.ok && b.ok && c.ok ? 0 : 1;
}

process.exitCode = await main();
