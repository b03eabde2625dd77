/**
 * Benchmark: reading a differencing chain end to end, side by side with reading the same disk as one
 * standalone image.
 *
 *   node dist/bench/chain-read.js [--quick] [--runs N] [--dir DIR]
 *
 * It builds a 3-layer chain (1 GiB virtual): a dynamic base holding ~512 MiB of random data in 64 MiB
 * segments placed at random, then a middle and a top child, each overwriting scattered ranges (~100 MiB
 * per layer, unaligned and partial blocks, so sector bitmaps are exercised). STANDALONE is made with
 * `vhdx convert TOP standalone.vhdx`. Then, after a warm-up with the page cache warm for both, the
 * contenders take turns each round (order rotating):
 *
 *   vhdx convert TOP OUT          (the chain: three files, bitmaps, parent fall-through)
 *   vhdx convert STANDALONE OUT   (the same bytes in one dynamic image)
 *
 * Every output is compared with cmp against an expected raw file built from the written data alone
 * (not read back through vhdx). Target: chain/standalone <= 1.5 (best of N). The exit status is 0
 * whatever the ratio; it is 1 only if an output is wrong or a command fails.
 */
import { copyFileSync, existsSync, closeSync, mkdtempSync, openSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createChild, openImage } from '../src/node/paths.js';
import { GiB, KiB, MiB, ROOT, available, formatBytes, formatSeconds, freeBytes, identical, loadLine, median, min, runOk, settle, table, timeCommand, versionLine, warmPageCache, writeSparseRandomRaw, type Segment } from './lib.js';
import { rng } from '../test/model.js';

interface Config {
  virtualSize: number;
  segment: number;
  baseData: number;
  /** Bytes each child overwrites, in ranges of `rangeMin`..`rangeMax` bytes. */
  layerData: number;
  rangeMin: number;
  rangeMax: number;
  runs: number;
}


/** `baseData / segment` data segments chosen at random among the disk's segments, the rest holes. */
function randomSegments(config: Config, random: () => number): Segment[] {
  const count = config.virtualSize / config.segment;
  const indices = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  const data = new Set(indices.slice(0, config.baseData / config.segment));
  return Array.from({ length: count }, (_, i) => ({ offset: i * config.segment, length: config.segment, kind: data.has(i) ? 'data' : 'hole' }) as Segment);
}

/** Scattered ranges totalling about `layerData` bytes, at unaligned offsets and of unaligned lengths. */
function scatteredRanges(config: Config, random: () => number): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  for (let total = 0; total < config.layerData; ) {
    const length = config.rangeMin + Math.floor(random() * (config.rangeMax - config.rangeMin)) + Math.floor(random() * 512);
    const offset = Math.floor(random() * (config.virtualSize - length));
    out.push({ offset, length });
    total += length;
  }
  return out;
}

function usage(): string {
  return [
    'usage: node dist/bench/chain-read.js [--quick] [--runs N] [--dir DIR]',
    '',
    '  --quick     small chain (128 MiB virtual, 64 MiB base data, 12 MiB per child), 1 timed run',
    '  --runs N    timed runs per contender after the warm-up (default 5; best and median reported)',
    '  --dir DIR   where to make the temporary folder (default: the system temp folder)',
  ].join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
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
    ? { virtualSize: 128 * MiB, segment: 16 * MiB, baseData: 64 * MiB, layerData: 12 * MiB, rangeMin: 16 * KiB, rangeMax: 256 * KiB, runs: 1 }
    : { virtualSize: GiB, segment: 64 * MiB, baseData: 512 * MiB, layerData: 100 * MiB, rangeMin: 16 * KiB, rangeMax: 512 * KiB, runs: 5 };
  if (values.runs !== undefined) {
    const runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, not ${values.runs}`);
    config.runs = runs;
  }
  for (const tool of ['cmp', 'sync']) if (!available(tool)) throw new Error(`${tool} is needed and was not found on PATH`);

  const parent = values.dir ?? tmpdir();
  // The expected raw, the base raw, base + children (blocks of children are written whole), standalone, one output.
  const needed = 2 * config.virtualSize + 4 * config.baseData + 64 * MiB;
  if (freeBytes(parent) < needed) throw new Error(`${parent} has ${formatBytes(freeBytes(parent))} free; this benchmark needs about ${formatBytes(needed)}`);
  const dir = mkdtempSync(join(parent, 'vhdx-bench-chain-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals): void => {
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await bench(config, dir);
  } finally {
    cleanup();
  }
}

async function bench(config: Config, dir: string): Promise<number> {
  const baseRaw = join(dir, 'base.raw');
  const expected = join(dir, 'expected.raw');
  const base = join(dir, 'base.vhdx');
  const mid = join(dir, 'mid.avhdx');
  const top = join(dir, 'top.avhdx');
  const standalone = join(dir, 'standalone.vhdx');
  const out = join(dir, 'out.raw');
  const random = rng(0x5eed);

  console.log('vhdx differencing chain read benchmark');
  console.log(`  node ${process.version}; ${versionLine('cmp')}`);
  console.log(`  temp: ${dir}`);
  console.log(`  ${loadLine()}`);

  const t = process.hrtime.bigint();
  const layout = randomSegments(config, random);
  writeSparseRandomRaw(baseRaw, config.virtualSize, layout);
  runOk(process.execPath, [join(ROOT, 'bin', 'vhdx'), 'convert', baseRaw, base]);
  copyFileSync(baseRaw, expected);
  unlinkSync(baseRaw);

  // The children: scattered random writes, applied to the expected raw file as well.
  const expectedFd = openSync(expected, 'r+');
  const layers: { file: string; ranges: number; bytes: number }[] = [];
  try {
    for (const [file, parentFile] of [[mid, base], [top, mid]] as const) {
      await createChild(file, parentFile);
      const ranges = scatteredRanges(config, random);
      const image = await openImage(file, { readOnly: false });
      try {
        for (const r of ranges) {
          const data = randomFillSync(Buffer.allocUnsafe(r.length));
          await image.write(r.offset, data);
          for (let done = 0; done < data.length; ) done += writeSync(expectedFd, data, done, data.length - done, r.offset + done);
        }
      } finally {
        await image.close();
      }
      layers.push({ file, ranges: ranges.length, bytes: ranges.reduce((n, r) => n + r.length, 0) });
    }
  } finally {
    closeSync(expectedFd);
  }
  runOk(process.execPath, [join(ROOT, 'bin', 'vhdx'), 'convert', top, standalone]);

  const describeImage = async (file: string): Promise<string> => {
    const image = await openImage(file, { parentPath: false });
    try {
      const states = new Map<string, number>();
      for (const e of (await image.extents())) states.set(e.state, (states.get(e.state) ?? 0) + e.length);
      return `${image.type}, ${formatBytes(image.blockSize)} blocks, file ${formatBytes(statSync(file).size)}; ${[...states].map(([s, n]) => `${s} ${formatBytes(n)}`).join(', ')}`;
    } finally {
      await image.close();
    }
  };
  console.log(`  made inputs in ${formatSeconds(Number(process.hrtime.bigint() - t) / 1e9)}:`);
  console.log(`    base:       ${formatBytes(config.baseData)} random data in ${config.baseData / config.segment} of ${config.virtualSize / config.segment} segments of ${formatBytes(config.segment)}; ${await describeImage(base)}`);
  for (const l of layers) console.log(`    ${l === layers[0] ? 'middle:    ' : 'top:       '} ${l.ranges} ranges, ${formatBytes(l.bytes)} written; ${await describeImage(l.file)}`);
  console.log(`    standalone: ${await describeImage(standalone)}`);

  const node = process.execPath;
  const bin = join(ROOT, 'bin', 'vhdx');
  const contenders = [
    { key: 'chain', label: 'vhdx convert TOP (3-layer chain)', args: (o: string) => [bin, 'convert', top, o] },
    { key: 'standalone', label: 'vhdx convert STANDALONE', args: (o: string) => [bin, 'convert', standalone, o] },
  ] as const;
  const times = new Map<string, number[]>(contenders.map((c) => [c.key, []]));
  const wrong: string[] = [];
  for (const f of [base, mid, top, standalone, expected]) warmPageCache(f);
  const rounds = config.runs + 1;
  console.log(`  ${config.runs} timed run(s) per contender after 1 warm-up; contenders take turns, rotating the order each round\n`);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + round) % contenders.length]!;
      if (existsSync(out)) unlinkSync(out);
      settle();
      const seconds = timeCommand(node, c.args(out));
      if (!identical(out, expected)) wrong.push(`${c.label}, round ${round}: output differs from the expected raw file`);
      unlinkSync(out);
      if (round > 0) times.get(c.key)!.push(seconds);
    }
    if (round > 0) console.log(`  round ${round}/${config.runs}: ${contenders.map((c) => `${c.key} ${times.get(c.key)!.at(-1)!.toFixed(3)}`).join('  ')}`);
  }
  console.log(`  ${loadLine()}\n`);

  const rows: string[][] = [['contender', 'best', 'median', 'MB/s (best)', 'identical']];
  for (const c of contenders) {
    const r = times.get(c.key)!;
    rows.push([c.label, formatSeconds(min(r)), formatSeconds(median(r)), (config.virtualSize / 1e6 / min(r)).toFixed(0), wrong.some((w) => w.startsWith(c.label)) ? 'NO' : 'yes']);
  }
  console.log(table(rows));
  const chain = times.get('chain')!;
  const alone = times.get('standalone')!;
  const ratio = min(chain) / min(alone);
  const medianRatio = median(chain) / median(alone);
  console.log(`\n  chain/standalone: best ${ratio.toFixed(2)}, median ${medianRatio.toFixed(2)} (target <= 1.5) ${ratio <= 1.5 ? 'PASS' : 'MISS'}`);
  if (wrong.length > 0) {
    for (const w of wrong) console.log(`  WRONG OUTPUT ${w}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`chain-read: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
