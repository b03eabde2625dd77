/**
 * Load and fault test for `vhdx serve` (bounded in operations and time, loopback only).
 *
 * Eight clients connect at once (`--shared 8`). Each owns four 1 MiB lanes (one payload block each) and
 * runs them concurrently, so every connection has several requests in flight and replies come back out
 * of order. A lane does random writes (self-verifying: seeded data), reads (checked against the lane's
 * model), trims and write-zeroes (partial and whole-block: BAT changes under load), and flushes, one at
 * a time, so its model is exact.
 *
 * Phase 1 runs a fixed number of operations, checks every byte over NBD, stops the server with SIGTERM
 * (drain, flush, close) and checks the file. Phase 2 kills the server with SIGKILL mid-load several
 * times. After each crash the image must open, `vhdx check` must find no corruption, and every sector
 * must hold what it held at the lane's last acknowledged flush, or what a later request (acknowledged
 * or in flight) put there: so every write acknowledged before an acknowledged flush reads back intact
 * unless a later request overwrote it. The server is restarted on the crashed file (log replay),
 * `qemu-img check` must be clean, and the load goes on.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openImage } from '../../src/node/paths.js';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { CMD, TestClient, startServe, within, type ServedProcess } from './util.js';
import { rng } from '../model.js';

const MiB = 1024 * 1024;
const CLIENTS = 8;
const LANES_PER_CLIENT = 4;
const LANE = MiB;
const SIZE = CLIENTS * LANES_PER_CLIENT * LANE;
const SECTOR = 512;
const PHASE1_OPS_PER_LANE = 40;
const CRASHES = 3;


interface Change {
  offset: number; // inside the lane
  data: Uint8Array; // zeros for trim / write-zeroes
}

class Lane {
  /** What the lane reads as now (every acknowledged change applied). */
  current = new Uint8Array(LANE);
  /** What it held when its last acknowledged flush was sent. */
  durable = new Uint8Array(LANE);
  /** Changes sent after that flush (acknowledged or not): any of them may or may not have landed. */
  later: Change[] = [];
  ops = 0;

  constructor(
    readonly base: number,
    readonly random: () => number,
  ) {}

  /** Adopts the bytes found on disk after a crash as the new truth (everything is durable now). */
  reset(found: Uint8Array): void {
    this.current = found.slice();
    this.durable = found.slice();
    this.later = [];
  }

  /** Checks a crashed lane: every sector is the durable one or one of the later changes'. */
  verifyAfterCrash(found: Uint8Array): string | null {
    for (let s = 0; s < LANE; s += SECTOR) {
      const got = found.subarray(s, s + SECTOR);
      if (Buffer.from(got).equals(this.durable.subarray(s, s + SECTOR))) continue;
      const ok = this.later.some((c) => c.offset <= s && s + SECTOR <= c.offset + c.data.length && Buffer.from(got).equals(c.data.subarray(s - c.offset, s - c.offset + SECTOR)));
      if (!ok) return `lane at ${this.base}: sector at +${s} matches neither the last flushed content nor any later request`;
    }
    return null;
  }

  /** One random operation; resolves false when the connection is gone. */
  async step(client: TestClient, seed: number): Promise<boolean> {
    const r = this.random();
    const sectors = LANE / SECTOR;
    const start = Math.floor(this.random() * sectors);
    const count = 1 + Math.floor(this.random() * Math.min(256, sectors - start));
    const offset = start * SECTOR;
    const length = count * SECTOR;
    try {
      if (r < 0.4) {
        const data = patternBytes(length, seed);
        this.later.push({ offset, data });
        const reply = await client.write(this.base + offset, data, this.random() < 0.1 ? 1 : 0);
        assert.equal(reply.error, 0, 'write failed');
        this.current.set(data, offset);
      } else if (r < 0.7) {
        const reply = await client.read(this.base + offset, length);
        assert.equal(reply.error, 0, 'read failed');
        assert.ok(Buffer.from(reply.data!).equals(this.current.subarray(offset, offset + length)), `read of lane ${this.base} +${offset} (${length} bytes) differs from what was written`);
      } else if (r < 0.85) {
        const whole = this.random() < 0.3;
        const [o, l] = whole ? [0, LANE] : [offset, length];
        this.later.push({ offset: o, data: new Uint8Array(l) });
        const type = this.random() < 0.5 ? CMD.TRIM : CMD.WRITE_ZEROES;
        const reply = await client.request(type, this.base + o, l);
        assert.equal(reply.error, 0, 'trim/zero failed');
        this.current.fill(0, o, o + l);
      } else {
        const snapshot = this.current.slice();
        const reply = await client.flush();
        assert.equal(reply.error, 0, 'flush failed');
        this.durable = snapshot;
        this.later = [];
      }
      this.ops++;
      return true;
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      return false; // the connection went away (the server was killed)
    }
  }
}

describe('vhdx serve under load and SIGKILL', { timeout: 100_000 }, () => {
  let dir: { path: string; cleanup: () => void };
  let image: string;
  let server: ServedProcess | null = null;
  const random = rng(Number(process.env['NBD_LOAD_SEED'] ?? 20261129));
  const lanes: Lane[] = [];
  let seed = 1;

  before(() => {
    requireProgram('qemu-img');
    dir = tempDir('vhdx-nbd-load-');
    image = join(dir.path, 'load.vhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', image, String(SIZE), '--block-size', '1M']);
    for (let i = 0; i < CLIENTS * LANES_PER_CLIENT; i++) lanes.push(new Lane(i * LANE, rng(Math.floor(random() * 2 ** 32))));
  });
  after(async () => {
    if (server) await server.stop('SIGKILL');
    dir?.cleanup();
  });

  async function connectAll(port: number): Promise<TestClient[]> {
    return Promise.all(Array.from({ length: CLIENTS }, () => TestClient.connect(port)));
  }

  it('8 clients, many requests in flight, self-verifying data; clean stop', async () => {
    server = await startServe(image, ['--shared', String(CLIENTS)]);
    const clients = await connectAll(server.port);
    await within(
      Promise.all(
        lanes.map(async (lane, i) => {
          const client = clients[Math.floor(i / LANES_PER_CLIENT)]!;
          for (let n = 0; n < PHASE1_OPS_PER_LANE; n++) assert.ok(await lane.step(client, seed++));
        }),
      ),
      60_000,
      'phase 1 load',
    );
    // Everything reads back over NBD.
    for (const lane of lanes) {
      const reply = await clients[0]!.read(lane.base, LANE);
      assert.ok(Buffer.from(reply.data!).equals(lane.current), `lane ${lane.base} differs over NBD`);
    }
    await Promise.all(clients.map((c) => c.disconnect()));
    const { code } = await server.stop('SIGTERM');
    server = null;
    assert.equal(code, 0);
    const ops = lanes.reduce((n, l) => n + l.ops, 0);
    console.log(`phase 1: ${ops} operations by ${CLIENTS} clients (${lanes.length} lanes) verified`);
    // The file holds exactly the model.
    const opened = await openImage(image);
    try {
      assert.equal(opened.info().logState, 'empty');
      for (const lane of lanes) assert.ok(Buffer.from(await opened.read(lane.base, LANE)).equals(lane.current));
    } finally {
      await opened.close();
    }
    const qcheck = run('qemu-img', ['check', '-f', 'vhdx', image]);
    assert.equal(qcheck.code, 0, qcheck.stdout.toString() + qcheck.stderr);
  });

  it(`SIGKILL mid-load ${CRASHES} times: the image opens, checks clean, flushed writes survive`, async () => {
    let survived = 0;
    let before = lanes.reduce((n, l) => n + l.ops, 0);
    for (let crash = 0; crash < CRASHES; crash++) {
      server = await startServe(image, ['--shared', String(CLIENTS)]);
      // The server replayed the crashed log at open and is idle: qemu-img check sees the image it serves.
      if (crash > 0) {
        const qcheck = run('qemu-img', ['check', '-f', 'vhdx', image]);
        assert.equal(qcheck.code, 0, `after crash ${crash}: ${qcheck.stdout.toString()}${qcheck.stderr}`);
      }
      const clients = await connectAll(server.port);
      let stop = false;
      const load = Promise.all(
        lanes.map(async (lane, i) => {
          const client = clients[Math.floor(i / LANES_PER_CLIENT)]!;
          while (!stop && (await lane.step(client, seed++)));
        }),
      );
      const victim = server;
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.floor(random() * 500)));
      const { signal } = await victim.stop('SIGKILL');
      server = null;
      assert.equal(signal, 'SIGKILL');
      stop = true;
      await within(load, 10_000, 'clients noticing the crash');
      for (const c of clients) c.socket.destroy();

      // The crashed file opens (read-only: its log is replayed in memory) and holds what it must.
      const opened = await openImage(image);
      try {
        for (const lane of lanes) {
          const found = await opened.read(lane.base, LANE);
          const problem = lane.verifyAfterCrash(found);
          assert.equal(problem, null, `after crash ${crash + 1}: ${problem}`);
          lane.reset(found);
        }
      } finally {
        await opened.close();
      }
      const check = run(process.execPath, [VHDX_BIN, 'check', image]);
      assert.ok(check.code === 0 || check.code === 3, `after crash ${crash + 1}: vhdx check: ${check.stdout.toString()}${check.stderr}`);
      survived++;
      const now = lanes.reduce((n, l) => n + l.ops, 0);
      console.log(`crash point ${crash + 1}: SIGKILL after ${now - before} more operations; image opened, checked, flushed data intact`);
      before = now;
    }
    // A last restart replays the last crash's log; then a clean stop, and both checkers agree.
    server = await startServe(image, ['--shared', String(CLIENTS)]);
    const { code } = await server.stop('SIGTERM');
    server = null;
    assert.equal(code, 0);
    const qcheck = run('qemu-img', ['check', '-f', 'vhdx', image]);
    assert.equal(qcheck.code, 0, qcheck.stdout.toString() + qcheck.stderr);
    const check = run(process.execPath, [VHDX_BIN, 'check', image]);
    assert.ok(check.code === 0 || check.code === 3, check.stdout.toString());
    const total = lanes.reduce((n, l) => n + l.ops, 0);
    console.log(`load and fault: ${total} operations done, ${survived} crash points survived`);
    assert.equal(survived, CRASHES);
  });
});
