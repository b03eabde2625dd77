/**
 * Benchmark: a mostly unallocated VHDX converted to standard output, against producing the same number
 * of zero bytes with no format at all.
 *
 *   node dist/bench/stdout.js [--quick] [--runs N] [--dir DIR] [--no-trace]
 *
 * The image: a 10 GiB dynamic VHDX (1 GiB with --quick) made by `vhdx create`, with 64 MiB of random
 * data written by `vhdx write` in four 16 MiB pieces spread over the disk (each off the 32 MiB block
 * grid, so some pieces straddle two blocks); everything else is unallocated and reads as zeros.
 *
 * Contenders, each a whole pipeline run by `sh -c` (same shell, same pipe, same reader), timed as a
 * whole (start-up included), rounds interleaved, best and median of N (default 3):
 *
 *   vhdx convert IMG - | cat > /dev/null         (this project's CLI, as shipped)
 *   head -c SIZE /dev/zero | cat > /dev/null     (the floor: the same byte count, nothing to look up)
 *   VHDX_NATIVE=0 vhdx convert IMG - | cat ...   (informational: without the native helper)
 *
 * It is like for like: both producers write SIZE bytes into a pipe of the same kind, read by the same
 * `cat` (128 KiB reads) that throws them away; nothing is written to a disk. head reads /dev/zero and
 * writes 8 KiB at a time into a 64 KiB pipe; vhdx is free to produce its bytes as it can: with the
 * helper it grows its pipe to 1 MiB (at most /proc/sys/fs/pipe-max-size) and moves zero ranges with
 * vmsplice from one never-written zero region, so it copies no zero byte at all (`cat` still copies
 * every byte out); without it, zero ranges are writes of one shared zero buffer.
 *
 * Output: before timing, each vhdx variant's standard output is compared byte for byte (cmp) with
 * `qemu-img convert -O raw` of the same image; a timed run that prints anything on stderr or fails
 * counts as wrong. An untimed strace run per contender (unless --no-trace) counts the system calls of
 * the whole pipeline, to show how the bytes move.
 *
 * Target: vhdx / head <= 1.2 (best against best). Exit status 0 whatever the ratio; 1 only if an output
 * is wrong or a tool fails. Timings on a shared machine swing widely (head alone varies 2-3x with where
 * the scheduler puts it and cat), so the load line is printed before and after.
 */
import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLine, nodeStartupLine } from './lib.js';
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
  removeFile,
  rounds,
  run,
  scratch,
  seconds,
  table,
  timed,
  traceCounts,
  verdict,
  warm,
} from './write-lib.js';

type Key = 'vhdx' | 'head' | 'vhdx-no-helper';

interface Contender {
  key: Key;
  label: string;
  /** The pipeline, run as `sh -c SCRIPT ARGS...` (the script names them "$0", "$1" ...: no quoting). */
  script: string;
  args: string[];
}

const PIECE = 16 * MiB;
const PIECES = 4;

function makeImage(path: string, size: number, dir: string): void {
  run(VHDX_BIN, ['create', path, String(size)]);
  const data = new Uint8Array(PIECE);
  for (let i = 0; i < PIECES; i++) {
    // Spread over the disk, 1 MiB aligned but off the 32 MiB block grid.
    const offset = Math.floor(((i + 0.5) * size) / PIECES / MiB) * MiB + 7 * MiB;
    randomFillSync(data);
    const file = join(dir, `piece-${i}.bin`);
    writeFileSync(file, data);
    run(VHDX_BIN, ['write', path, '--offset', String(offset), '--from', file, '--no-progress']);
    removeFile(file);
  }
}

function contenders(image: string, size: number): Contender[] {
  const convert = '"$0" convert "$1" - | cat > /dev/null';
  return [
    { key: 'vhdx', label: 'vhdx convert IMG - | cat > /dev/null', script: convert, args: [VHDX_BIN, image] },
    { key: 'head', label: `head -c ${size} /dev/zero | cat > /dev/null`, script: 'head -c "$0" /dev/zero | cat > /dev/null', args: [String(size)] },
    { key: 'vhdx-no-helper', label: 'VHDX_NATIVE=0 vhdx convert IMG - | cat > /dev/null', script: `VHDX_NATIVE=0 ${convert}`, args: [VHDX_BIN, image] },
  ];
}

/** Our standard output, compared byte for byte with qemu-img's raw conversion; null when identical. */
function verify(image: string, raw: string, env: string): string | null {
  try {
    run('sh', ['-c', `${env}"$0" convert "$1" - | cmp - "$2"`, VHDX_BIN, image, raw]);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/** "write 123, vmsplice 45, ..." for the calls that move the bytes, over the whole pipeline. */
function callSummary(calls: Map<string, number>): string {
  const names = ['write', 'vmsplice', 'read', 'epoll_pwait', 'epoll_wait'];
  return names.filter((n) => (calls.get(n) ?? 0) > 0).map((n) => `${n} ${calls.get(n)}`).join(', ') || 'none';
}

async function main(): Promise<number> {
  const args = parseCommonArgs(process.argv.slice(2));
  for (const tool of ['qemu-img', 'head', 'cat', 'cmp']) {
    if (!available(tool)) {
      console.error(`${tool} is not installed`);
      return 1;
    }
  }
  const size = args.quick ? 1 * GiB : 10 * GiB;
  const dir = scratch('vhdx-bench-stdout', args.dir);
  const need = PIECES * PIECE * 3 + 64 * MiB;
  if (freeBytes(dir) < need) {
    console.error(`not enough free space in ${dir}: need ${bytes(need)}`);
    return 1;
  }
  console.log(`stdout: ${bytes(size)} dynamic VHDX, ${bytes(PIECES * PIECE)} of data in ${PIECES} pieces, to standard output; best of ${args.runs}${args.quick ? ' (quick)' : ''}`);
  console.log(environmentLine());
  console.log(loadLine());
  console.log(nodeStartupLine());

  const image = join(dir, 'disk.vhdx');
  makeImage(image, size, dir);
  const raw = join(dir, 'disk.raw');
  run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', image, raw]);
  const list = contenders(image, size);
  const problems = new Map<Key, string[]>(list.map((c) => [c.key, []]));
  for (const [key, env] of [['vhdx', ''], ['vhdx-no-helper', 'VHDX_NATIVE=0 ']] as const) {
    const wrong = verify(image, raw, env);
    console.log(`  output of ${list.find((c) => c.key === key)!.label.replace(' | cat > /dev/null', '')} vs qemu-img convert -O raw (cmp): ${wrong ? `DIFFERENT: ${wrong}` : 'identical'}`);
    if (wrong) problems.get(key)!.push(wrong);
  }
  removeFile(raw);

  const times = new Map<Key, number[]>(list.map((c) => [c.key, []]));
  rounds(
    list.map((c) => c.key),
    args.runs,
    (key, round) => {
      const c = list.find((x) => x.key === key)!;
      warm(image);
      let line: string;
      try {
        const t = timed('sh', ['-c', c.script, ...c.args]);
        times.get(key)!.push(t.seconds);
        if (t.stderr.trim()) problems.get(key)!.push(`round ${round + 1}: stderr: ${t.stderr.trim()}`);
        line = seconds(t.seconds) + (t.stderr.trim() ? '  WRONG (stderr)' : '');
      } catch (error) {
        problems.get(key)!.push(`round ${round + 1}: ${(error as Error).message}`);
        line = 'FAILED';
      }
      process.stdout.write(`  run ${round + 1}: ${c.label.padEnd(58)} ${line}\n`);
    },
  );

  const traced = new Map<Key, string>();
  if (args.trace && available('strace', ['-V'])) {
    for (const c of list) traced.set(c.key, callSummary(traceCounts('sh', ['-c', c.script, ...c.args], join(dir, 'strace.txt')).calls));
  }

  const rows = [['contender', 'best', 'median', 'system calls of the pipeline (strace, untimed)', 'output']];
  for (const c of list) {
    const t = times.get(c.key)!;
    const ok = problems.get(c.key)!.length === 0;
    rows.push([c.label, t.length ? seconds(best(t)) : '-', t.length ? seconds(median(t)) : '-', traced.get(c.key) ?? 'not traced', c.key === 'head' ? (ok ? 'ok' : 'FAILED') : ok ? 'identical' : 'WRONG']);
  }
  console.log('');
  console.log(table(rows));
  console.log('');
  const vhdx = times.get('vhdx')!;
  const head = times.get('head')!;
  const fallback = times.get('vhdx-no-helper')!;
  if (vhdx.length && head.length) {
    console.log(verdict({ name: 'vhdx / head (best)', ratio: best(vhdx) / best(head), op: '<=', limit: 1.2, note: `median ${(median(vhdx) / median(head)).toFixed(3)}` }));
  }
  if (fallback.length && head.length) {
    console.log(`without the native helper / head (best) = ${(best(fallback) / best(head)).toFixed(3)}  (informational; median ${(median(fallback) / median(head)).toFixed(3)})`);
  }
  console.log(environmentLine());
  console.log(loadLine());
  let ok = true;
  for (const c of list) {
    for (const p of problems.get(c.key)!) {
      console.error(`PROBLEM (${c.label}): ${p}`);
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

process.exitCode = await main();
