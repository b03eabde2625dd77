/**
 * Protocol fuzz for `vhdx serve`: random and truncated handshakes, bad client flags, bad and huge
 * option lengths, malformed option data, bad request magic, unknown commands and flags, lengths past
 * the export size, oversized and truncated writes. Each case gets the protocol's error reply or a clean
 * disconnect; the server never goes down, a client connected throughout keeps being served, and the
 * image stays consistent.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Socket } from 'node:net';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { CMD, FLAG, SocketReader, TestClient, openSocket, startServe, within, type ServedProcess } from './util.js';
import { rng } from '../model.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const EPERM = 1;
const EINVAL = 22;
const ENOSPC = 28;


/** Resolves when the server closes the socket (or after `ms`, to 'open'). */
function closedWithin(socket: Socket, ms: number): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve('closed');
    const timer = setTimeout(() => resolve('open'), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

function optionBytes(option: number, data: Uint8Array, declaredLength = data.length): Buffer {
  const header = Buffer.alloc(16);
  Buffer.from('IHAVEOPT').copy(header);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(declaredLength >>> 0, 12);
  return Buffer.concat([header, data]);
}

function requestBytes(type: number, flags: number, offset: bigint, length: number, magic = 0x25609513): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(magic >>> 0, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(7n, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length >>> 0, 24);
  return b;
}

describe('vhdx serve protocol fuzz', { timeout: 60_000 }, () => {
  let dir: { path: string; cleanup: () => void };
  let image: string;
  let server: ServedProcess;
  let witness: TestClient;
  const known = patternBytes(64 * 1024, 99);

  before(async () => {
    requireProgram('qemu-img');
    dir = tempDir('vhdx-nbd-fuzz-');
    image = join(dir.path, 'fuzz.vhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', image, String(SIZE), '--block-size', '1M']);
    server = await startServe(image, ['--shared', '4']);
    witness = await TestClient.connect(server.port);
    assert.equal((await witness.write(MiB, known)).error, 0);
  });
  after(async () => {
    await server?.stop('SIGKILL');
    dir?.cleanup();
  });

  /** The server is up and the witness connection still reads what it wrote. */
  async function healthy(): Promise<void> {
    assert.equal(server.child.exitCode, null, `server exited: ${server.stderr()}`);
    const reply = await within(witness.read(MiB, known.length), 5000, 'witness read');
    assert.equal(reply.error, 0);
    assert.ok(Buffer.from(reply.data!).equals(known));
  }

  it('random and truncated handshakes, bad flags, bad option lengths and data', async () => {
    const random = rng(4242);
    let cases = 0;
    for (let i = 0; i < 60; i++) {
      const socket = await openSocket(server.port);
      socket.on('error', () => undefined);
      const reader = new SocketReader(socket);
      const greeting = await reader.read(18);
      assert.equal(greeting.subarray(0, 8).toString(), 'NBDMAGIC');
      const kind = i % 6;
      if (kind === 0) {
        // Random bytes, then hang up.
        socket.end(Buffer.from(patternBytes(Math.floor(random() * 200), i)));
      } else if (kind === 1) {
        // Unknown client flags: the server must drop the connection.
        socket.write(Buffer.from([0x80, 0, 0, 1]));
        assert.equal(await closedWithin(socket, 3000), 'closed');
      } else if (kind === 2) {
        // Truncated option header.
        socket.write(Buffer.from([0, 0, 0, 1]));
        socket.end(optionBytes(7, new Uint8Array(0)).subarray(0, 1 + Math.floor(random() * 15)));
      } else if (kind === 3) {
        // An option length far beyond any option: a clean disconnect.
        socket.write(Buffer.from([0, 0, 0, 1]));
        socket.write(optionBytes(1 + Math.floor(random() * 12), new Uint8Array(0), 0xffffffff - Math.floor(random() * 1000)));
        assert.equal(await closedWithin(socket, 3000), 'closed');
      } else if (kind === 4) {
        // Malformed data for GO/INFO/meta context/list: an error reply, and the session goes on.
        socket.write(Buffer.from([0, 0, 0, 1]));
        const option = [3, 6, 7, 9, 10, 8][Math.floor(random() * 6)]!;
        const data = patternBytes(1 + Math.floor(random() * 40), i);
        socket.write(optionBytes(option, data));
        const reply = await within(reader.read(20), 3000, 'option reply');
        const type = reply.readUInt32BE(12);
        await reader.read(reply.readUInt32BE(16));
        assert.ok(type >= 0x80000000, `malformed option ${option} got reply type ${type}`);
        // Unknown option: NBD_REP.ERR_UNSUP.
        socket.write(optionBytes(0x7777, new Uint8Array(3)));
        const unsup = await within(reader.read(20), 3000, 'unsupported option reply');
        assert.equal(unsup.readUInt32BE(12), 0x80000001);
        await reader.read(unsup.readUInt32BE(16));
        socket.destroy();
      } else {
        // A declared option length longer than what is sent, then the client vanishes.
        socket.write(Buffer.from([0, 0, 0, 1]));
        socket.end(optionBytes(7, new Uint8Array(5), 100));
      }
      cases++;
      if (i % 10 === 9) await healthy();
    }
    await healthy();
    console.log(`${cases} malformed handshakes survived`);
  });

  it('bad requests get error replies or a clean disconnect', async () => {
    // Deterministic expectations first, with structured and with simple replies.
    for (const structured of [true, false]) {
      const c = await TestClient.connect(server.port, { structured });
      assert.equal((await c.read(SIZE - 512, 1024)).error, EINVAL, 'read past the end');
      assert.equal((await c.request(CMD.READ, 2 ** 62, 512)).error, EINVAL, 'read at a huge offset');
      assert.equal((await c.read(0, 0x7fffffff)).error, EINVAL, 'read longer than the maximum');
      assert.equal((await c.write(SIZE - 100, new Uint8Array(512))).error, ENOSPC, 'write past the end');
      assert.equal((await c.request(CMD.TRIM, SIZE, 512)).error, ENOSPC, 'trim past the end');
      assert.equal((await c.request(CMD.WRITE_ZEROES, SIZE - 512, 1024)).error, ENOSPC, 'zero past the end');
      assert.equal((await c.request(CMD.BLOCK_STATUS, SIZE - 512, 1024)).error, EINVAL, 'status past the end');
      assert.equal((await c.request(CMD.CACHE, SIZE, 1)).error, EINVAL, 'cache past the end');
      assert.equal((await c.request(99, 0, 512)).error, EINVAL, 'unknown command');
      assert.equal((await c.request(CMD.WRITE, 0, 512, { flags: 0x40, data: new Uint8Array(512) })).error, EINVAL, 'unknown flag');
      assert.equal((await c.request(CMD.READ, 0, 512, { flags: FLAG.NO_HOLE })).error, EINVAL, 'flag of another command');
      if (!structured) assert.equal((await c.request(CMD.BLOCK_STATUS, 0, 512)).error, EINVAL, 'status without a context');
      // The connection is still good.
      const r = await c.read(MiB, 512);
      assert.equal(r.error, 0);
      assert.ok(Buffer.from(r.data!).equals(known.subarray(0, 512)));
      await c.disconnect();
    }
    assert.equal(EPERM, 1);

    const random = rng(777);
    let cases = 0;
    for (let i = 0; i < 40; i++) {
      const c = await TestClient.connect(server.port, { structured: i % 2 === 0 });
      const kind = i % 4;
      if (kind === 0) {
        // Bad magic: a clean disconnect.
        c.socket.write(requestBytes(CMD.READ, 0, 0n, 512, Math.floor(random() * 2 ** 32)));
        assert.equal(await closedWithin(c.socket, 3000), 'closed');
      } else if (kind === 1) {
        // A write bigger than the maximum request: a clean disconnect (its payload cannot be taken in).
        c.socket.write(requestBytes(CMD.WRITE, 0, 0n, 64 * MiB + Math.floor(random() * 1000)));
        assert.equal(await closedWithin(c.socket, 3000), 'closed');
      } else if (kind === 2) {
        // A write whose payload never fully arrives: the client vanishes mid-request.
        c.socket.write(requestBytes(CMD.WRITE, 0, BigInt(2 * MiB), 65536));
        c.socket.end(Buffer.from(patternBytes(Math.floor(random() * 65536), i)));
        await closedWithin(c.socket, 3000);
      } else {
        // Random headers with the right magic: every one is answered (errors allowed), none crashes.
        for (let k = 0; k < 20; k++) {
          const type = Math.floor(random() * 10);
          if (type === CMD.WRITE || type === CMD.DISC) continue;
          const offset = random() < 0.5 ? Math.floor(random() * SIZE) : Math.floor(random() * 2 ** 40);
          const length = random() < 0.5 ? Math.floor(random() * 65536) : Math.floor(random() * 2 ** 32);
          // Offsets stay away from the witness's data: a random trim or zero must not touch it.
          const safe = offset + Math.min(length, SIZE) <= MiB || offset >= MiB + known.length;
          if (!safe && (type === CMD.TRIM || type === CMD.WRITE_ZEROES)) continue;
          const reply = await within(c.request(type, offset, length, { flags: Math.floor(random() * 64) & ~FLAG.DF }), 5000, `request ${type}`);
          assert.equal(typeof reply.error, 'number');
        }
        await c.disconnect();
      }
      c.socket.destroy();
      cases++;
      if (i % 8 === 7) await healthy();
    }
    await healthy();
    // New clients are still served by a real client.
    const info = JSON.parse(runOk('qemu-img', ['info', '--output=json', server.uri]).toString()) as { 'virtual-size': number };
    assert.equal(info['virtual-size'], SIZE);
    await witness.disconnect();
    const { code } = await server.stop('SIGTERM');
    assert.equal(code, 0, server.stderr());
    const check = run(process.execPath, [VHDX_BIN, 'check', image]);
    assert.ok(check.code === 0 || check.code === 3, check.stdout.toString());
    console.log(`${cases} malformed request sessions survived`);
  });
});
