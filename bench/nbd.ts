/**
 * Benchmark: `vhdx serve` side by side with `qemu-nbd` serving the same file.
 *
 *   node dist/bench/nbd.js [--quick] [--runs N] [--dir DIR]
 *
 * It builds a dynamic VHDX (2 GiB virtual, 1 GiB of random data in alternating 64 MiB data / 64 MiB
 * never-written segments) from an equivalent sparse raw file, serves it with both servers (Unix
 * sockets, 4 connections allowed, so both advertise multi-conn), and times, contenders interleaved,
 * best and median of N rounds after a warm-up:
 *
 *   nbdcopy URI null:                      the whole disk out (holes skipped by block status)
 *   qemu-img bench -c C -d 32 -s 4K -S STEP URI      4 KiB reads, read-only export
 *   qemu-img bench -w ... on a writable copy each    4 KiB writes (warm-up pass allocates the blocks)
 *
 * qemu-img bench has no random mode: STEP is a prime number of 4 KiB sectors (about 31 MiB), so
 * consecutive requests land far apart and wrap around the disk, touching data and hole blocks alike.
 * Outputs are verified: one nbdcopy per server into a file, compared byte for byte with the raw
 * source, and after the write runs the two written copies must compare equal (qemu-img compare).
 * Unix sockets are used because qemu-nbd over loopback TCP stalls on concurrent small requests here
 * (about 40x slower than over a Unix socket), which would flatter us.
 * Targets: nbdcopy ratio <= 1.0, qemu-img bench ratios <= 1.2. Exit status 1 only if an output is wrong.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GiB, MiB, ROOT, alternatingLayout, formatSeconds, identical, median, min, runOk, table, timeCommand, versionLine, warmPageCache, writeSparseRandomRaw } from './lib.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, runs: { type: 'string' }, dir: { type: 'string' } } });
const quick = values.quick ?? false;
const runs = Number(values.runs ?? (quick ? 1 : 3));
const SIZE = quick ? 256 * MiB : 2 * GiB;
const SEGMENT = quick ? 16 * MiB : 64 * MiB;
const COUNT = quick ? 5000 : 40000;
const STEP = 4096 * 7919;

interface Server {
  name: string;
  uri: string;
  child: ChildProcess;
}

async function startServer(name: string, command: string, args: string[], socket: string): Promise<Server> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(socket)) throw new Error(`${name} did not start: ${err}`);
  await new Promise((r) => setTimeout(r, 200));
  return { name, uri: `nbd+unix:///?socket=${socket}`, child };
}

async function stop(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((r) => server.child.on('exit', r));
  server.child.kill('SIGTERM');
  await exited;
}

function ours(image: string, socket: string, readOnly: boolean): Promise<Server> {
  const args = [join(ROOT, 'bin', 'vhdx'), 'serve', image, '--socket', socket, '--shared', '4', ...(readOnly ? ['--read-only'] : [])];
  return startServer('vhdx serve', process.execPath, args, socket);
}

function qemu(image: string, socket: string, readOnly: boolean): Promise<Server> {
  return startServer('qemu-nbd', 'qemu-nbd', ['-f', 'vhdx', '-t', '-e', '4', '-k', socket, ...(readOnly ? ['-r'] : []), image], socket);
}

async function main(): Promise<number> {
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'vhdx-bench-nbd-'));
  let failed = false;
  const servers: Server[] = [];
  try {
    console.log(`nbd benchmark: ${SIZE / GiB} GiB image, ${runs} round(s), ${availableParallelism()} cores, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    console.log(`${versionLine('qemu-nbd')}; ${versionLine('nbdcopy')}; node ${process.version}`);
    const raw = join(dir, 'source.raw');
    const image = join(dir, 'image.vhdx');
    writeSparseRandomRaw(raw, SIZE, alternatingLayout(SIZE, SEGMENT));
    runOk(process.execPath, [join(ROOT, 'bin', 'vhdx'), 'convert', raw, image, '-O', 'vhdx']);
    warmPageCache(image);

    // Whole-disk copy and random reads against read-only exports of the same file.
    const a = await ours(image, join(dir, 'ours.sock'), true);
    const b = await qemu(image, join(dir, 'qemu.sock'), true);
    servers.push(a, b);
    for (const s of [a, b]) {
      const out = join(dir, 'copy.raw');
      runOk('nbdcopy', [s.uri, out]);
      if (!identical(out, raw)) {
        console.log(`WRONG: nbdcopy from ${s.name} differs from the source`);
        failed = true;
      }
      rmSync(out);
    }
    const times: Record<string, number[]> = {};
    const time = (key: string, command: string, args: string[]): void => {
      (times[key] ??= []).push(timeCommand(command, args));
    };
    const benchArgs = (uri: string, write: boolean): string[] => ['bench', '-f', 'raw', '-c', String(COUNT), '-d', '32', '-s', '4096', '-S', String(STEP), ...(write ? ['-w'] : []), uri];
    for (let round = -1; round < runs; round++) {
      for (const s of round % 2 === 0 ? [a, b] : [b, a]) {
        time(`copy ${s.name}`, 'nbdcopy', [s.uri, 'null:']);
        time(`read ${s.name}`, 'qemu-img', benchArgs(s.uri, false));
      }
      if (round === -1) for (const k of Object.keys(times)) times[k] = []; // the warm-up does not count
    }
    await stop(a);
    await stop(b);

    // Random writes, each server on its own copy; a warm-up pass allocates the blocks the runs touch.
    const copyA = join(dir, 'ours.vhdx');
    const copyB = join(dir, 'qemu.vhdx');
    copyFileSync(image, copyA);
    copyFileSync(image, copyB);
    const wa = await ours(copyA, join(dir, 'ours-w.sock'), false);
    const wb = await qemu(copyB, join(dir, 'qemu-w.sock'), false);
    servers.push(wa, wb);
    for (let round = -1; round < runs; round++) {
      for (const s of round % 2 === 0 ? [wa, wb] : [wb, wa]) {
        const key = `write ${s.name.replace(/ .*/, '')}`;
        const t = timeCommand('qemu-img', benchArgs(s.uri, true));
        if (round >= 0) (times[key === 'write vhdx' ? 'write vhdx serve' : 'write qemu-nbd'] ??= []).push(t);
      }
    }
    await stop(wa);
    await stop(wb);
    const cmp = runOk('qemu-img', ['compare', '-f', 'vhdx', '-F', 'vhdx', copyA, copyB]);
    if (!/identical/.test(cmp)) {
      console.log(`WRONG: the written copies differ: ${cmp}`);
      failed = true;
    }

    const rows = [['benchmark', 'vhdx serve best', 'median', 'qemu-nbd best', 'median', 'ratio (best)', 'target']];
    for (const [label, key, target] of [
      ['nbdcopy whole disk', 'copy', 1.0],
      ['qemu-img bench 4K read', 'read', 1.2],
      ['qemu-img bench 4K write', 'write', 1.2],
    ] as const) {
      const x = times[`${key} vhdx serve`]!;
      const y = times[`${key} qemu-nbd`]!;
      const ratio = min(x) / min(y);
      rows.push([label, formatSeconds(min(x)), formatSeconds(median(x)), formatSeconds(min(y)), formatSeconds(median(y)), ratio.toFixed(2), `<= ${target} ${ratio <= target ? 'met' : 'MISSED'}`]);
    }
    console.log(table(rows));
    console.log(`(${COUNT} requests per qemu-img bench run, depth 32; outputs verified: ${failed ? 'NO' : 'yes'})`);
  } finally {
    for (const s of servers) await stop(s);
    if (!values.dir) rmSync(dir, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
