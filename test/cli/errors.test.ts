/**
 * The error contract of the real `bin/vhdx`, command by command: one line on stderr starting with
 * `vhdx: `, naming the file when there is one, no stack trace, exit 2 for usage errors and 1 for the
 * rest, and nothing left half made (no partial output, no lock file, an existing file untouched).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireProgram, run, sha256File, tempDir, VHDX_BIN, type RunResult } from '../helpers.js';

const MiB = 1024 * 1024;
const COMMANDS = ['create', 'info', 'map', 'read', 'write', 'convert', 'check', 'compare', 'demo'];

function assertError(r: RunResult, status: 1 | 2, pattern: RegExp, what: string): void {
  assert.equal(r.code, status, `${what}: exit status (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^vhdx: [^\n]*\n$/, `${what}: exactly one line starting with "vhdx: "`);
  assert.match(r.stderr, pattern, what);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+|node:internal|Error:/, `${what}: no stack trace`);
  assert.equal(r.stdout.length, 0, `${what}: nothing on stdout`);
}

const vhdx = (args: string[], input?: Uint8Array): RunResult => run(VHDX_BIN, args, input ? { input } : {});

describe('vhdx errors', () => {
  const dir = tempDir();
  const at = (name: string): string => join(dir.path, name);
  const good = at('good.vhdx');
  const plain = at('plain.bin');
  const cut = at('cut.vhdx');

  before(() => {
    assert.equal(vhdx(['create', good, '16M', '--block-size', '1M']).code, 0);
    assert.equal(vhdx(['write', good, '--offset', '0', '--pattern', '0x5a', '--length', '5M']).code, 0);
    writeFileSync(plain, Buffer.alloc(2 * MiB, 7));
    writeFileSync(cut, readFileSync(good).subarray(0, 3 * MiB)); // headers intact, data blocks cut off
  });
  after(() => dir.cleanup());

  test('usage errors exit 2 for every command; --help has a usage line and examples', () => {
    assertError(vhdx(['frobnicate']), 2, /^vhdx: unknown command "frobnicate"/, 'unknown command');
    for (const name of COMMANDS) {
      assertError(vhdx([name, '--bogus']), 2, new RegExp(`^vhdx: ${name}: unknown option --bogus`), `${name} --bogus`);
      assertError(vhdx([name, 'a', 'b', 'c']), 2, new RegExp(`^vhdx: ${name}: unexpected argument "\\w"`), `${name} with extra arguments`);
      if (name !== 'demo') assertError(vhdx([name]), 2, new RegExp(`^vhdx: ${name}: missing [A-Z]`), `${name} without arguments`);
      const help = vhdx([name, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout.toString(), new RegExp(`^usage: vhdx ${name}\\b`), `${name} --help usage line`);
      assert.match(help.stdout.toString(), new RegExp(`\\nexamples:\\n  vhdx ${name}\\b`), `${name} --help examples`);
    }
    for (const name of ['create', 'read', 'write', 'convert']) assert.match(vhdx([name, '--help']).stdout.toString(), /-p, --\[no-\]progress/);
  });

  test('bad sizes and values exit 2 and create nothing', () => {
    const fresh = at('fresh.vhdx');
    const cases: [string[], RegExp][] = [
      [['create', fresh, '12Q'], /^vhdx: SIZE: "12Q" is not a size/],
      [['create', fresh, '1G', '--block-size', '1X'], /--block-size: "1X" is not a size/],
      [['create', fresh, '65T'], /larger than the 64 TiB maximum/],
      [['read', good, '--offset', 'ten', '--length', '1'], /--offset: "ten" is not a size/],
      [['read', good, '--offset', '0', '--length', '1.5.5'], /--length: "1\.5\.5" is not a size/],
      [['read', good, '--offset', '0'], /needs --offset and --length/],
      [['write', good, '--offset', '-1', '--pattern', '1', '--length', '1'], /option --offset needs a value \(for one starting with a dash, write --offset=VALUE\)/],
      [['write', good, '--offset=-1', '--pattern', '1', '--length', '1'], /--offset: "-1" is not a size/],
      [['write', good, '--offset', '0', '--pattern', '256', '--length', '1'], /--pattern must be a byte value/],
      [['write', good, '--offset', '0', '--from', plain, '--length', '1'], /--length goes with --pattern/],
      [['convert', '-', at('o.vhdx'), '--size', 'lots'], /--size: "lots" is not a size/],
      [['convert', good, at('o.vhdx'), '--size', '1M'], /--size applies to standard input only/],
      [['convert', good, at('o.vhdx'), '-O', 'qcow2'], /-O must be raw, vhdx or vhd/],
      [['convert', good, good], /IN and OUT are the same file/],
    ];
    const before = sha256File(good);
    for (const [args, pattern] of cases) assertError(vhdx(args), 2, pattern, args.join(' '));
    assert.equal(existsSync(fresh), false);
    assert.equal(existsSync(at('o.vhdx')), false);
    assert.equal(sha256File(good), before, 'the image is untouched');
  });

  test('a missing, non-VHDX or truncated file exits 1 naming it, and nothing is created or changed', () => {
    const missing = at('missing.vhdx');
    const out = at('out.vhdx');
    const plainHash = sha256File(plain);
    const cutHash = sha256File(cut);
    for (const name of ['info', 'map', 'read', 'write', 'convert']) {
      const extra = name === 'read' ? ['--offset', '0', '--length', '1'] : name === 'write' ? ['--offset', '0', '--pattern', '1', '--length', '1'] : name === 'convert' ? [out] : [];
      assertError(vhdx([name, missing, ...extra]), 1, /^vhdx: \S*missing\.vhdx: no such file$/m, `${name} missing`);
      if (name !== 'convert') assertError(vhdx([name, plain, ...extra]), 1, /^vhdx: \S*plain\.bin: not a VHDX file/, `${name} not a VHDX`);
      assertError(vhdx([name, cut, ...extra]), 1, /^vhdx: \S*cut\.vhdx: .*(past the end|truncated|shorter)/, `${name} truncated`);
      assert.equal(existsSync(out), false, `${name}: no output`);
    }
    assertError(vhdx(['write', good, '--offset', '0', '--from', at('nope.bin')]), 1, /^vhdx: \S*nope\.bin: no such file/, 'write --from missing');
    assertError(vhdx(['read', good, '--offset', '16M', '--length', '1']), 1, /good\.vhdx: range .* outside the 16777216-byte virtual disk/, 'read past the end');
    assert.equal(existsSync(missing), false, 'write does not create a missing image');
    assert.equal(sha256File(plain), plainHash);
    assert.equal(sha256File(cut), cutHash);
    for (const f of [missing, plain, cut, good]) assert.equal(existsSync(`${f}.lock`), false, `no lock left for ${f}`);
  });

  test('convert failing midway (standard input shorter than --size) leaves no output', () => {
    const out = at('short.vhdx');
    const r = vhdx(['convert', '-', out, '--size', '64M', '--block-size', '1M'], new Uint8Array(3 * MiB + 100).fill(1));
    assertError(r, 1, /^vhdx: standard input: ended after 3 MiB \(3145828 bytes\), before the 64 MiB given by --size; \S*short\.vhdx was removed$/m, 'short stdin');
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(`${out}.lock`), false);
    const raw = at('cut.raw');
    assertError(vhdx(['convert', cut, raw]), 1, /cut\.vhdx: /, 'truncated input to raw');
    assert.equal(existsSync(raw), false);
  });

  test('a file the user may not write: permission denied, the file untouched', () => {
    requireProgram('setpriv');
    chmodSync(dir.path, 0o755); // nobody may read in here, not create or write
    const ro = at('ro.vhdx');
    const roRaw = at('ro.raw');
    writeFileSync(ro, readFileSync(good));
    writeFileSync(roRaw, 'keep me');
    chmodSync(ro, 0o644);
    chmodSync(roRaw, 0o644);
    const asNobody = (args: string[]): RunResult => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', VHDX_BIN, ...args]);
    assert.equal(asNobody(['info', ro]).code, 0, 'nobody can run vhdx and read the image: the failures below are about writing');
    const hash = sha256File(ro);
    assertError(asNobody(['write', ro, '--offset', '0', '--pattern', '1', '--length', '1']), 1, /^vhdx: \S*ro\.vhdx: permission denied$/m, 'write');
    assertError(asNobody(['create', ro, '8M', '--force']), 1, /^vhdx: \S*ro\.vhdx: permission denied$/m, 'create --force');
    assertError(asNobody(['convert', good, roRaw]), 1, /^vhdx: \S*ro\.raw: permission denied$/m, 'convert onto a read-only OUT');
    assert.equal(sha256File(ro), hash);
    assert.equal(readFileSync(roRaw, 'utf8'), 'keep me');
  });

  test('an image already open for writing is refused (the lock), and left intact', async () => {
    const busy = at('busy.vhdx');
    writeFileSync(busy, readFileSync(good));
    // A real writer holding the image: `write --from -` waits on its standard input.
    const holder = spawn(VHDX_BIN, ['write', busy, '--offset', '0', '--from', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => holder.on('exit', (code) => resolve(code)));
    try {
      for (let i = 0; !existsSync(`${busy}.lock`); i++) {
        assert.ok(i < 200, 'the writer takes the lock');
        await new Promise((r) => setTimeout(r, 50));
      }
      const size = statSync(busy).size;
      const locked = new RegExp(`^vhdx: \\S*busy\\.vhdx: already open for writing by process ${holder.pid}$`, 'm');
      assertError(vhdx(['write', busy, '--offset', '0', '--pattern', '1', '--length', '1']), 1, locked, 'second writer');
      assertError(vhdx(['create', busy, '8M', '--force']), 1, locked, 'create --force over it');
      assertError(vhdx(['convert', good, busy]), 1, locked, 'convert onto it');
      assert.equal(statSync(busy).size, size, 'not truncated');
      holder.stdin.end();
      assert.equal(await exited, 0);
      assert.equal(existsSync(`${busy}.lock`), false);
      assert.equal(JSON.parse(vhdx(['info', busy, '--json']).stdout.toString()).logState, 'empty');
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
