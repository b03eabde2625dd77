/**
 * Benchmark: VHDX -> raw conversion, side by side with qemu-img and with a plain copy of the same bytes.
 *
 *   node dist/bench/read-convert.js [--quick] [--runs N] [--dir DIR]
 *
 * It builds a dynamic VHDX (2 GiB virtual, 1 GiB of random data in alternating 64 MiB data / 64 MiB
 * never-written segments) plus an equivalent sparse raw file, then times, best of N after a warm-up
 * with the page cache warm for everyone:
 *
 *   vhdx convert IMG OUT                  (this project's CLI, as shipped)
 *   qemu-img convert -f vhdx -O raw IMG OUT
 *   cp --sparse=auto EQUIVALENT.raw OUT   (the floor: copying the same bytes with no format at all)
 *   vhdx library convertToRaw, no fsync   (informational: the copy path without the CLI's final fsync)
 *
 * Every output is compared byte for byte with the equivalent raw file (cmp) after every run, and its
 * allocation is reported, so no contender can win by skipping work. Durability differs between the
 * tools (the vhdx CLI fsyncs its output; qemu-img convert defaults to cache=unsafe and cp never syncs),
 * so each run is also timed "durable": the command plus an fdatasync of its output, which makes the
 * contenders equal. The warm-up run is traced with strace (when installed) to show who syncs.
 * Targets: vhdx/qemu-img <= 1.0 and vhdx/cp <= 1.3. The exit status is 0 whatever the ratios; it is 1
 * only if an output is wrong or a tool fails.
 */
import { existsSync, mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NodeFileBackend } from '../src/node/file-backend.js';
import { openImage } from '../src/node/paths.js';
import { convertToRaw } from '../src/ops/convert.js';
import {
  GiB,
  MiB,
  ROOT,
  allocatedBytes,
  alternatingLayout,
  available,
  formatBytes,
  formatSeconds,
  freeBytes,
  identical,
  median,
  loadLine,
  min,
  nodeStartupLine,
  runOk,
  settle,
  syncCalls,
  table,
  timeCommand,
  timeFdatasync,
  versionLine,
  warmPageCache,
  writeSparseRandomRaw,
} from './lib.js';

const CHILD_FLAG = '--child-library-convert';

interface Config {
  virtualSize: number;
  segment: number;
  blockSize: number;
  runs: number;
}

interface Contender {
  key: 'vhdx' | 'qemu' | 'cp' | 'lib';
  label: string;
  command: string;
  args: (out: string) => string[];
}

interface Result {
  cmd: number[];
  durable: number[];
  sync: string;
  allocated: number;
  identical: boolean;
  problems: string[];
}

/** The library path the CLI uses, minus the final fsync: what `vhdx convert` costs without durability. */
async function childConvert(image: string, out: string): Promise<void> {
  const vhdx = await openImage(image, { readOnly: true });
  try {
    const output = await NodeFileBackend.open(out, { readOnly: false, create: true });
    try {
      await convertToRaw(vhdx, { kind: 'file', backend: output });
    } finally {
      await output.close();
    }
  } finally {
    await vhdx.close();
  }
}

function usage(): string {
  return [
    'usage: node dist/bench/read-convert.js [--quick] [--runs N] [--dir DIR]',
    '',
    '  --quick     small image (128 MiB virtual, 64 MiB data), 1 timed run: a smoke test',
    '  --runs N    timed runs per contender after the warm-up (default 5; best is reported)',
    '  --dir DIR   where to make the temporary folder (default: the system temp folder)',
  ].join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === CHILD_FLAG) {
    await childConvert(argv[1]!, argv[2]!);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const config: Config = values.quick
    ? { virtualSize: 128 * MiB, segment: 8 * MiB, blockSize: 1 * MiB, runs: 1 }
    : { virtualSize: 2 * GiB, segment: 64 * MiB, blockSize: 32 * MiB, runs: 5 };
  if (values.runs !== undefined) {
    const runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, not ${values.runs}`);
    config.runs = runs;
  }

  for (const tool of ['qemu-img', 'cp', 'cmp', 'sync']) {
    if (!available(tool)) throw new Error(`${tool} is needed and was not found on PATH`);
  }
  const haveStrace = available('strace', ['-V']);

  const layout = alternatingLayout(config.virtualSize, config.segment);
  const dataBytes = layout.filter((s) => s.kind === 'data').reduce((a, s) => a + s.length, 0);
  const parent = values.dir ?? tmpdir();
  // The equivalent raw file, the VHDX (data plus metadata) and one output at a time, plus slack.
  const needed = 3 * dataBytes + 64 * MiB;
  if (freeBytes(parent) < needed) {
    throw new Error(`${parent} has ${formatBytes(freeBytes(parent))} free; this benchmark needs about ${formatBytes(needed)}`);
  }

  const dir = mkdtempSync(join(parent, 'vhdx-bench-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals): void => {
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await bench(config, layout, dataBytes, dir, haveStrace);
  } finally {
    cleanup();
  }
}

async function bench(config: Config, layout: ReturnType<typeof alternatingLayout>, dataBytes: number, dir: string, haveStrace: boolean): Promise<number> {
  const raw = join(dir, 'equivalent.raw');
  const img = join(dir, 'disk.vhdx');
  const out = join(dir, 'out.raw');
  const trace = join(dir, 'sync.trace');
  const dataSegments = layout.filter((s) => s.kind === 'data').length;

  console.log('vhdx read/convert benchmark');
  console.log(`  node ${process.version}; ${versionLine('qemu-img')}; ${versionLine('cp')}`);
  console.log(
    `  disk: ${formatBytes(config.virtualSize)} virtual, ${formatBytes(dataBytes)} random data in ${dataSegments} segments of ` +
      `${formatBytes(config.segment)} alternating with never-written holes; VHDX block size ${formatBytes(config.blockSize)}`,
  );
  console.log(`  temp: ${dir}`);
  console.log(`  ${loadLine()}; ${nodeStartupLine()}`);

  // Inputs: the raw file first, then the VHDX made from it by qemu-img. The VHDX is created empty and
  // filled with --target-is-zero, so the holes are never written (qemu marks fresh dynamic blocks ZERO).
  const t = process.hrtime.bigint();
  writeSparseRandomRaw(raw, config.virtualSize, layout);
  runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `subformat=dynamic,block_size=${config.blockSize}`, img, String(config.virtualSize)]);
  runOk('qemu-img', ['convert', '-q', '-n', '--target-is-zero', '-f', 'raw', '-O', 'vhdx', raw, img]);
  const image = await openImage(img, { readOnly: true });
  const info = image.info();
  const states = new Map<string, number>();
  for (const e of image.extents()) states.set(e.state, (states.get(e.state) ?? 0) + e.length);
  await image.close();
  console.log(
    `  made inputs in ${formatSeconds(Number(process.hrtime.bigint() - t) / 1e9)}: VHDX file ${formatBytes(statSync(img).size)}, ` +
      `${formatBytes(info.allocatedBytes)} allocated; block states ${[...states].map(([s, n]) => `${s} ${formatBytes(n)}`).join(', ')}`,
  );
  if (info.allocatedBytes !== dataBytes) throw new Error(`the VHDX holds ${info.allocatedBytes} bytes of data, expected ${dataBytes}`);

  const node = process.execPath;
  const contenders: Contender[] = [
    // bin/vhdx run as an executable, as a user runs it (its sh line drops NODE_EXTRA_CA_CERTS).
    { key: 'vhdx', label: 'vhdx convert', command: join(ROOT, 'bin', 'vhdx'), args: (o) => ['convert', img, o] },
    { key: 'qemu', label: 'qemu-img convert -O raw', command: 'qemu-img', args: (o) => ['convert', '-f', 'vhdx', '-O', 'raw', img, o] },
    { key: 'cp', label: 'cp --sparse=auto (raw)', command: 'cp', args: (o) => ['--sparse=auto', raw, o] },
    { key: 'lib', label: 'vhdx library, no fsync *', command: node, args: (o) => [process.argv[1]!, CHILD_FLAG, img, o] },
  ];
  const results = new Map<Contender['key'], Result>(
    contenders.map((c) => [c.key, { cmd: [], durable: [], sync: haveStrace ? '' : 'strace missing', allocated: 0, identical: true, problems: [] }]),
  );

  warmPageCache(raw);
  warmPageCache(img);
  const rounds = config.runs + 1;
  console.log(`  ${config.runs} timed run(s) per contender after 1 warm-up; contenders take turns, rotating the order each round\n`);
  let failed = false;
  for (let round = 0; round < rounds; round++) {
    const warmUp = round === 0;
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + round) % contenders.length]!;
      const r = results.get(c.key)!;
      if (existsSync(out)) unlinkSync(out);
      settle();
      let seconds: number;
      if (warmUp && haveStrace) {
        // Not timed: strace slows the run. It tells who makes the output durable before exiting.
        const calls = syncCalls(c.command, c.args(out), trace);
        r.sync = calls.size ? [...calls].map(([name, n]) => `${name} x${n}`).join(', ') : 'none';
        seconds = NaN;
      } else {
        seconds = timeCommand(c.command, c.args(out));
      }
      const syncSeconds = timeFdatasync(out);
      const size = statSync(out).size;
      const same = size === config.virtualSize && identical(out, raw);
      r.allocated = allocatedBytes(out);
      if (!same) {
        r.identical = false;
        failed = true;
        r.problems.push(`round ${round}: output differs from the equivalent raw file (size ${size})`);
      }
      if (!warmUp) {
        r.cmd.push(seconds);
        r.durable.push(seconds + syncSeconds);
      }
      unlinkSync(out);
    }
    if (!warmUp) process.stdout.write(`  round ${round}/${config.runs}: ${contenders.map((c) => `${c.key} ${results.get(c.key)!.cmd.at(-1)!.toFixed(3)}`).join('  ')}\n`);
  }
  settle();
  console.log(`  ${loadLine()}`);

  const rows: string[][] = [['contender', 'syncs output itself', 'best', 'median', 'best + fdatasync', 'MB/s (best)', 'output allocated', 'holes kept', 'identical']];
  // Sparse output: no more than the data plus a little slack for file-system rounding.
  const holesKept = (allocated: number): boolean => allocated <= dataBytes + dataBytes / 64 + MiB;
  for (const c of contenders) {
    const r = results.get(c.key)!;
    rows.push([
      c.label,
      r.sync,
      formatSeconds(min(r.cmd)),
      formatSeconds(median(r.cmd)),
      formatSeconds(min(r.durable)),
      (config.virtualSize / 1e6 / min(r.cmd)).toFixed(0),
      formatBytes(r.allocated),
      holesKept(r.allocated) ? 'yes' : 'NO',
      r.identical ? 'yes' : 'NO',
    ]);
  }
  console.log('');
  console.log(table(rows));
  console.log('  * informational: convertToRaw to a file as the CLI does it, without the CLI\'s final fsync');
  console.log('  "best + fdatasync": the command, then an fdatasync of its output, both timed: equal durability for all');
  console.log(`  MB/s: virtual bytes (${formatBytes(config.virtualSize)}) per second\n`);

  const best = (key: Contender['key'], durable = false): number => min(durable ? results.get(key)!.durable : results.get(key)!.cmd);
  const verdict = (ratio: number, target: number): string => `${ratio.toFixed(2)} (target <= ${target.toFixed(1)}) ${ratio <= target ? 'PASS' : 'MISS'}`;
  const comparisons: Array<[string, number, number, number, number]> = [
    ['as shipped (each tool with its own durability)', best('vhdx'), best('qemu'), best('vhdx'), best('cp')],
    ['durability equalized (every output fdatasync\'d)', best('vhdx', true), best('qemu', true), best('vhdx', true), best('cp', true)],
    ['nobody syncs (library path vs peers as shipped)', best('lib'), best('qemu'), best('lib'), best('cp')],
  ];
  const width = Math.max(...comparisons.map((c) => c[0].length));
  for (const [label, v1, q, v2, cp] of comparisons) {
    console.log(`  ${label.padEnd(width)}  vhdx/qemu-img ${verdict(v1 / q, 1.0)}   vhdx/cp ${verdict(v2 / cp, 1.3)}`);
  }

  if (failed) {
    console.log('');
    for (const c of contenders) for (const p of results.get(c.key)!.problems) console.log(`  WRONG OUTPUT ${c.label}: ${p}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`read-convert: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
