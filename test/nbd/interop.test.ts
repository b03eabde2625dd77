/**
 * `vhdx serve` against real NBD clients (qemu-img, qemu-io from qemu-utils; nbdinfo, nbdcopy from
 * libnbd-bin), each started by the test against a server the test started on loopback (a free port).
 * Read-only: qemu-img info/convert/compare, nbdcopy and nbdinfo --map agree with our own reading of the
 * file, and writes are refused with EPERM. Writable: qemu-io writes, zeroes, discards with and without
 * FUA over NBD; after SIGTERM (drain, flush, close) our reader sees exactly the model, and both checkers
 * are clean.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openImage } from '../../src/node/paths.js';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { MiB, compareFiles, modelBytes, sameBytes, writeModelRaw, type Write } from '../interop/util.js';
import { CMD, TestClient, startServe, type ServedProcess } from './util.js';

const SIZE = 40 * MiB + 512 * 3;

function vhdx(args: string[], input?: Uint8Array): void {
  runOk(process.execPath, [VHDX_BIN, ...args], input ? { input } : {});
}

/** nbdinfo --map --json as [offset, length, type] runs. */
function nbdMap(uri: string): [number, number, number][] {
  const json = JSON.parse(runOk('nbdinfo', ['--map', '--json', uri], { timeoutMs: 30_000 }).toString()) as { offset: number; length: number; type: number }[];
  return json.map((e) => [e.offset, e.length, e.type]);
}

/** Our allocation map in base:allocation terms: data 0, zero/unallocated 3, adjacent runs merged. */
async function ourMap(file: string): Promise<[number, number, number][]> {
  const image = await openImage(file);
  try {
    const out: [number, number, number][] = [];
    for (const e of (await image.extents())) {
      const type = e.kind === 'data' ? 0 : 3;
      const last = out[out.length - 1];
      if (last && last[2] === type) last[1] += e.length;
      else out.push([e.offset, e.length, type]);
    }
    return out;
  } finally {
    await image.close();
  }
}

describe('vhdx serve with real NBD clients', { timeout: 90_000 }, () => {
  let dir: { path: string; cleanup: () => void };
  let image: string;
  let reference: string;
  const writes: Write[] = [];

  before(() => {
    for (const p of ['qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy']) requireProgram(p);
    dir = tempDir('vhdx-nbd-interop-');
    image = join(dir.path, 'disk.vhdx');
    reference = join(dir.path, 'reference.raw');
    vhdx(['create', image, String(SIZE), '--block-size', '1M']);
    const a = patternBytes(3 * MiB + 1000, 1);
    const b = patternBytes(70_000, 2);
    const c = patternBytes(4096, 3);
    for (const [offset, data] of [[MiB - 500, a], [17 * MiB + 3, b], [SIZE - 4096, c]] as const) {
      vhdx(['write', image, '--offset', String(offset), '--from', '-'], data);
      writes.push({ offset, data });
    }
    vhdx(['convert', image, reference]);
  });
  after(() => dir?.cleanup());

  describe('read-only export', () => {
    let server: ServedProcess;
    before(async () => {
      server = await startServe(image, ['--read-only', '--shared', '4']);
    });
    after(async () => {
      const { code } = await server.stop();
      assert.equal(code, 0, server.stderr());
    });

    it('qemu-img info sees the size; qemu-img convert and compare agree with vhdx convert', () => {
      const info = JSON.parse(runOk('qemu-img', ['info', '--output=json', server.uri]).toString()) as { 'virtual-size': number };
      assert.equal(info['virtual-size'], SIZE);
      const out = join(dir.path, 'qemu.raw');
      runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri, out]);
      assert.equal(compareFiles(out, reference), null);
      const r = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', server.uri, reference]);
      assert.equal(r.code, 0, r.stdout.toString() + r.stderr);
    });

    it('nbdcopy copies the whole disk out, equal to vhdx convert', () => {
      const out = join(dir.path, 'nbdcopy.raw');
      runOk('nbdcopy', [server.uri, out], { timeoutMs: 30_000 });
      assert.equal(compareFiles(out, reference), null);
    });

    it('nbdinfo --map matches our allocation map; nbdinfo reports the sector sizes and flags', async () => {
      assert.deepEqual(nbdMap(server.uri), await ourMap(image));
      const info = JSON.parse(runOk('nbdinfo', ['--json', server.uri]).toString()) as { exports: Record<string, unknown>[] };
      const e = info.exports[0]!;
      assert.equal(e['export-size'], SIZE);
      assert.equal(e['block_size_minimum'], 512);
      assert.equal(e['block_size_preferred'], 4096);
      assert.equal(e['is_read_only'], true);
      assert.equal(e['can_multi_conn'], true);
      assert.equal(e['can_trim'], false);
    });

    it('refuses writes with EPERM', async () => {
      // qemu sees NBD_FLAG_READ_ONLY and will not even open the export for writing.
      const r = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4096', server.uri]);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout.toString() + r.stderr, /Permission denied|Operation not permitted|read-only/i);
      // On the wire, a client that writes anyway gets EPERM (1) for write, trim and write-zeroes.
      const client = await TestClient.connect(server.port);
      try {
        assert.equal((await client.write(0, new Uint8Array(4096).fill(7))).error, 1);
        assert.equal((await client.request(CMD.TRIM, 0, 4096)).error, 1);
        assert.equal((await client.request(CMD.WRITE_ZEROES, 0, 4096)).error, 1);
        assert.equal((await client.flush()).error, 0);
      } finally {
        await client.disconnect();
      }
      // The file is unchanged.
      const out = join(dir.path, 'after.raw');
      runOk('nbdcopy', [server.uri, out]);
      assert.equal(compareFiles(out, reference), null);
    });
  });

  it('a 4096-byte-sector image reports 4096 as the minimum block size', async () => {
    const file = join(dir.path, '4k.vhdx');
    vhdx(['create', file, '8M', '--block-size', '1M', '--logical-sector-size', '4096']);
    const server = await startServe(file, ['--read-only']);
    try {
      const info = JSON.parse(runOk('nbdinfo', ['--json', server.uri]).toString()) as { exports: Record<string, unknown>[] };
      assert.equal(info.exports[0]!['block_size_minimum'], 4096);
      assert.equal(info.exports[0]!['can_multi_conn'], false, 'one connection only: multi-conn is not advertised');
    } finally {
      await server.stop();
    }
  });

  it('qemu-io writes over NBD (plain, FUA, zeroes with and without NO_HOLE, discard) land in the file', async () => {
    const server = await startServe(image, ['--shared', '2']);
    const model: Write[] = [...writes];
    const zero = (offset: number, length: number): Write => ({ offset, data: new Uint8Array(length) });
    const fill = (offset: number, length: number, byte: number): Write => ({ offset, data: new Uint8Array(length).fill(byte) });
    try {
      runOk('qemu-io', [
        '-f', 'raw',
        '-c', `write -P 0x41 ${5 * MiB + 100} 9000`, // into a never-allocated block, unaligned
        '-c', `write -P 0x42 -f ${MiB - 4096} 8192`, // FUA, across a block boundary over our data
        '-c', `aio_write -P 0x43 ${30 * MiB} ${2 * MiB}`, // concurrent requests
        '-c', `aio_write -P 0x44 ${33 * MiB} 65536`,
        '-c', 'aio_flush',
        '-c', `write -z ${2 * MiB} ${MiB}`, // NO_HOLE: stays allocated
        '-c', `write -z -u ${3 * MiB} ${MiB}`, // may unmap: becomes a ZERO block
        '-c', `discard ${30 * MiB + MiB} ${MiB}`, // trim a whole block
        '-c', 'flush',
        server.uri,
      ]);
      model.push(fill(5 * MiB + 100, 9000, 0x41), fill(MiB - 4096, 8192, 0x42), fill(30 * MiB, 2 * MiB, 0x43), fill(33 * MiB, 65536, 0x44));
      model.push(zero(2 * MiB, MiB), zero(3 * MiB, MiB), zero(31 * MiB, MiB));
      // While still served: what qemu reads back over NBD is the model.
      const expected = join(dir.path, 'expected.raw');
      writeModelRaw(expected, SIZE, model);
      const viaNbd = join(dir.path, 'via-nbd.raw');
      runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri, viaNbd]);
      assert.equal(compareFiles(viaNbd, expected), null);
    } finally {
      const { code } = await server.stop('SIGTERM');
      assert.equal(code, 0, server.stderr());
    }
    assert.match(server.stderr(), /served; \d+ requests/);
    assert.match(server.stderr(), /closed .* cleanly/);
    // Our reader sees exactly the model; the written zero ranges: NO_HOLE stayed data, -u became a hole.
    const reopened = await openImage(image);
    try {
      assert.equal(reopened.info().logState, 'empty');
      const all = await reopened.read(0, SIZE);
      assert.ok(sameBytes(all, modelBytes(model, 0, SIZE)));
      assert.equal((await reopened.extents(2 * MiB, MiB))[0]!.kind, 'data');
      assert.notEqual((await reopened.extents(3 * MiB, MiB))[0]!.kind, 'data');
      assert.notEqual((await reopened.extents(31 * MiB, MiB))[0]!.kind, 'data');
    } finally {
      await reopened.close();
    }
    // No corruption. Blocks that were trimmed or zeroed leave free space inside the file, which `check`
    // reports as reclaimable leaks (exit 3) and the next allocation reuses.
    const check = run(process.execPath, [VHDX_BIN, 'check', image]);
    assert.ok(check.code === 0 || check.code === 3, check.stdout.toString() + check.stderr);
    assert.doesNotMatch(check.stdout.toString(), /^(error|corrupt)/m);
    const qcheck = run('qemu-img', ['check', '-f', 'vhdx', image]);
    assert.equal(qcheck.code, 0, qcheck.stdout.toString() + qcheck.stderr);
  });
});
