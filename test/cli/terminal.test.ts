/**
 * The progress bar as a person sees it: a slow `convert` from standard input runs in a detached tmux
 * pane, and the pane is captured while it works. On a terminal the bar shows by default and advances;
 * with stderr going to a file, or with --no-progress, nothing of it appears anywhere.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireProgram, run, runOk, tempDir, VHDX_BIN } from '../helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BAR = /convert \[[^\]\n]*\] (\d+)% \| ([\d.]+) (B|KiB|MiB) \/ (\d+) MiB \| [\d.]+ \w+\/s \| ETA/;

/** Writes `steps` pieces of `mib` MiB of non-zero bytes to stdout, pausing `pause` ms after each. */
const PRODUCER = `
const [steps, mib, pause] = process.argv.slice(2).map(Number);
const piece = Buffer.alloc(mib * 1048576, 0x5a);
for (let i = 0; i < steps; i++) {
  await new Promise((r) => process.stdout.write(piece, r));
  await new Promise((r) => setTimeout(r, pause));
}
`;

describe('progress bar on a terminal', () => {
  const dir = tempDir();
  const producer = join(dir.path, 'producer.mjs');
  // A private tmux server: its socket lives (and is removed) with the temporary folder.
  const socket = join(dir.path, 'tmux.sock');
  const tmux = (...args: string[]): ReturnType<typeof run> => run('tmux', ['-S', socket, ...args]);

  before(() => {
    requireProgram('tmux');
    writeFileSync(producer, PRODUCER);
  });
  after(() => {
    tmux('kill-server');
    dir.cleanup();
  });

  /** Runs `vhdx convert` fed slowly in a fresh tmux session; returns every capture of the pane and the exit status. */
  async function inPane(name: string, steps: number, vhdxArgs: string, redirect = ''): Promise<{ captures: string[]; status: string }> {
    const status = join(dir.path, `${name}.status`);
    const command = `'${process.execPath}' '${producer}' ${steps} 8 450 | '${VHDX_BIN}' convert - ${vhdxArgs} ${redirect}; echo $? > '${status}'`;
    runOk('tmux', ['-S', socket, 'new-session', '-d', '-s', name, '-x', '160', '-y', '10', command]);
    const captures: string[] = [];
    for (let i = 0; !existsSync(status); i++) {
      assert.ok(i < 100, `${name}: the command finishes`);
      await sleep(300);
      const capture = tmux('capture-pane', '-p', '-t', name);
      if (capture.code === 0) captures.push(capture.stdout.toString());
    }
    await sleep(50);
    return { captures, status: readFileSync(status, 'utf8').trim() };
  }

  test('shown by default when stderr is a terminal, and it advances', async () => {
    const out = join(dir.path, 'bar.vhdx');
    const { captures, status } = await inPane('bar', 8, `'${out}' --size 64M`);
    assert.equal(status, '0');
    const seen = captures.map((c) => BAR.exec(c)).filter((m) => m !== null);
    assert.ok(seen.length >= 3, `the bar is on screen while it works; captures:\n${captures.join('\n---\n')}`);
    const percents = seen.map((m) => Number(m[1]));
    const done = seen.map((m) => Number(m[2]) * { B: 1, KiB: 1024, MiB: 1024 * 1024 }[m[3] as 'B' | 'KiB' | 'MiB']);
    for (const m of seen) assert.equal(m[4], '64', 'total is the --size');
    for (let i = 1; i < seen.length; i++) {
      assert.ok(percents[i]! >= percents[i - 1]! && done[i]! >= done[i - 1]!, `never goes back: ${percents.join(', ')}`);
    }
    assert.ok(new Set(percents).size >= 3, `the percentage advances: ${percents.join(', ')}`);
    assert.ok(percents[0]! < 100 && percents[0]! > 0, 'first seen mid-way');
    assert.ok(done[done.length - 1]! > done[0]!, 'the byte count advances');
  });

  test('check and map of a large image draw their bars with -p (check as a percentage, map in bytes of the disk)', async () => {
    const image = join(dir.path, 'large.vhdx');
    runOk(VHDX_BIN, ['create', image, '1T', '--block-size', '1M']);
    const status = join(dir.path, 'scan.status');
    const command = `'${VHDX_BIN}' check '${image}' -p > /dev/null && '${VHDX_BIN}' map '${image}' -p > /dev/null; echo $? > '${status}'; sleep 30`; // the pane stays to be read
    runOk('tmux', ['-S', socket, 'new-session', '-d', '-s', 'scan', '-x', '160', '-y', '10', command]);
    for (let i = 0; !existsSync(status); i++) {
      assert.ok(i < 100, 'check and map finish');
      await sleep(200);
    }
    await sleep(50);
    const screen = tmux('capture-pane', '-p', '-t', 'scan').stdout.toString();
    tmux('kill-session', '-t', 'scan');
    assert.equal(readFileSync(status, 'utf8').trim(), '0');
    // A finished bar stays on screen, at 100%.
    assert.match(screen, /check \[[^\]\n]*\] 100% \| ETA/, screen);
    assert.match(screen, /map \[[^\]\n]*\] 100% \| 1 TiB \/ 1 TiB \|/, screen);
  });

  test('never drawn when stderr is not a terminal, nor with --no-progress', async () => {
    const err = join(dir.path, 'stderr.txt');
    const piped = await inPane('piped', 4, `'${join(dir.path, 'piped.vhdx')}' --size 32M`, `2> '${err}'`);
    assert.equal(piped.status, '0');
    assert.equal(readFileSync(err, 'utf8'), '', 'nothing on stderr: no carriage returns, no escape sequences');
    const off = await inPane('off', 4, `'${join(dir.path, 'off.vhdx')}' --size 32M --no-progress`);
    assert.equal(off.status, '0');
    for (const { captures } of [piped, off]) {
      assert.ok(captures.length >= 4, 'captured while it ran');
      for (const c of captures) assert.doesNotMatch(c, /convert \[|%|MiB\/s/, c);
    }
  });
});
