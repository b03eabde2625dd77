/**
 * Logs QEMU left unreplayed. qemu-io is killed (SIGKILL injected by strace) in the middle of an
 * allocating write, after it has written and flushed a log entry for the BAT change but before the
 * header update that clears LogGuid. QEMU's allocating write is: payload write, flush; header update
 * setting LogGuid (both copies); log entry; flush; BAT write in place; flush; header update clearing
 * LogGuid (both copies).
 *
 * Why io_uring: with QEMU's default thread-pool AIO the file syscalls (pwrite64, fdatasync) are spread
 * over several worker threads, and strace counts `when=N` per thread, so the crash point changed from
 * run to run. With `-i io_uring` every request (reads, writes, flushes) is one io_uring_enter from the
 * main thread, so "the Nth io_uring_enter" is the same I/O in every run. Killing on entry means that
 * request never reaches the kernel; every earlier one has completed (the vhdx driver waits for each).
 *
 * The crash point is found per scenario: a traced dry run counts the session's io_uring_enter calls
 * (T), then kills are tried at positions near the end of the session (where the last allocating
 * write's log transaction is) until the image is in the wanted state. The state is classified without
 * our reader: the current header (CRC-checked) has a non-zero LogGuid, qemu-img refuses the read-only
 * open because the log holds entries to replay, and the file's BAT entry for the block being allocated
 * is either still unallocated (QEMU creates dynamic BATs in the ZERO state) — "log only": the change
 * exists only in the log — or already FULLY_PRESENT — "BAT in place": LogGuid not yet cleared.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VhdxImage } from '../../src/image/image.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { VHDX_BIN, requireProgram, run, runOk, tempDir } from '../helpers.js';
import {
  MiB,
  batBlockState,
  compareFiles,
  currentHeader,
  fillWrite,
  logEntriesOfCurrentGuid,
  qemuIoWriteArgs,
  sha256OfFile,
  sparseCopy,
  vhdxInfo,
  writeModelRaw,
} from './util.js';

const SIZE = 41 * MiB + 7 * 512;
const FULLY_PRESENT = 6;
/** Payload block states that mean "no data in this file": NOT_PRESENT, UNDEFINED, ZERO (QEMU's initial state), UNMAPPED. */
const UNALLOCATED_STATES = [0, 1, 2, 3];
const REPLAY_REFUSAL = /opened read-only, but contains a log that needs to be replayed/;

type PatternWrite = { offset: number; length: number; pattern: number };
type Wanted = 'log-only' | 'bat-in-place';

interface Scenario {
  name: string;
  blockSize: number;
  /** A clean qemu-io session first, so the image already holds data. */
  prepare: PatternWrite[];
  /** The session that is killed; its last write allocates `crashBlock`, the transaction interrupted. */
  crash: PatternWrite[];
  crashBlock: number;
  want: Wanted;
  /** Blocks whose allocation completed earlier in the killed session (FULLY_PRESENT in the file). */
  committed?: number[];
  /** The active log entry is not the first in the ring (earlier transactions of the session precede it). */
  entryPastRingStart?: boolean;
  /** Kill positions to try first, counted back from the session's last io_uring_enter (default: PREFERRED). */
  tryFirst?: number[];
}

const scenarios: Scenario[] = [
  {
    name: '1 MiB blocks, log entry durable, BAT not yet written',
    blockSize: MiB,
    prepare: [
      { offset: 1000, length: 3001, pattern: 0x11 },
      { offset: 3 * MiB - 700, length: 1500, pattern: 0x12 },
    ],
    crash: [{ offset: 7 * MiB + 333, length: 4000, pattern: 0x71 }],
    crashBlock: 7,
    want: 'log-only',
  },
  {
    name: '8 MiB blocks, BAT written in place, LogGuid not yet cleared',
    blockSize: 8 * MiB,
    prepare: [{ offset: 512 + 7, length: 70000, pattern: 0x21 }],
    crash: [
      { offset: 100_001, length: 99, pattern: 0x22 }, // block 0 is already allocated: no log
      { offset: 3 * 8 * MiB + 4321, length: 12345, pattern: 0x72 },
    ],
    crashBlock: 3,
    want: 'bat-in-place',
  },
  {
    name: '32 MiB blocks, allocation of the last, partial block',
    blockSize: 32 * MiB,
    prepare: [{ offset: 77, length: 5000, pattern: 0x31 }],
    crash: [{ offset: SIZE - 3001, length: 3001, pattern: 0x73 }],
    crashBlock: 1,
    want: 'log-only',
    tryFirst: [12, 11], // the earliest log-only point: killed on the flush that follows the log entry write
  },
  {
    name: '1 MiB blocks, third allocation of a session (active entry past older ones in the ring)',
    blockSize: MiB,
    prepare: [],
    crash: [
      { offset: 3 * MiB + 1, length: 2000, pattern: 0x41 },
      { offset: 9 * MiB + 2, length: 2000, pattern: 0x42 },
      { offset: 15 * MiB + 3, length: 2000, pattern: 0x74 },
    ],
    crashBlock: 15,
    want: 'log-only',
    committed: [3, 9],
    entryPastRingStart: true,
  },
  {
    name: '1 MiB blocks, write crossing a block boundary, killed in the second block\'s transaction',
    blockSize: MiB,
    prepare: [{ offset: 0, length: 512, pattern: 0x51 }],
    crash: [{ offset: 20 * MiB - 100, length: 300, pattern: 0x75 }],
    crashBlock: 20,
    want: 'log-only',
    committed: [19],
  },
];

/** The io_uring_enter positions (1-based) to try first for each wanted state, as offsets back from T. */
const PREFERRED: Record<Wanted, number[]> = { 'log-only': [9, 10, 8, 11, 7, 12], 'bat-in-place': [5, 4, 6] };

function qemuIoSession(image: string, writes: PatternWrite[], inject?: number): { code: number | null; signal: string | null; stderr: string; calls: number } {
  const trace = `${image}.trace`;
  const args = ['-f', '-o', inject === undefined ? trace : '/dev/null', '-e', 'trace=io_uring_enter'];
  if (inject !== undefined) args.push('-e', `inject=io_uring_enter:signal=SIGKILL:when=${inject}`);
  args.push('qemu-io', '-i', 'io_uring', '-f', 'vhdx', ...qemuIoWriteArgs(writes), image);
  const r = run('strace', args);
  let calls = 0;
  if (inject === undefined) {
    calls = readFileSync(trace, 'utf8').split('\n').filter((line) => line.includes('io_uring_enter(')).length;
    rmSync(trace, { force: true });
  }
  return { code: r.code, signal: r.signal, stderr: r.stderr, calls };
}

type Outcome = Wanted | 'completed' | 'clean' | 'log-guid-without-valid-entry' | 'other';

function classify(image: string, blockSize: number, crashBlock: number, killed: boolean): Outcome {
  if (!killed) return 'completed';
  if (currentHeader(image).logGuidIsZero) return 'clean';
  const q = run('qemu-img', ['info', '-f', 'vhdx', image]);
  if (q.code === 0) return 'log-guid-without-valid-entry';
  if (!REPLAY_REFUSAL.test(q.stderr)) return 'other';
  const state = batBlockState(image, crashBlock, blockSize);
  return UNALLOCATED_STATES.includes(state) ? 'log-only' : state === FULLY_PRESENT ? 'bat-in-place' : 'other';
}

describe('logs left unreplayed by a killed qemu-io', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;

  before(() => {
    for (const program of ['qemu-img', 'qemu-io', 'strace']) requireProgram(program);
    tmp = tempDir('vhdx-interop-dirty-');
    const probe = join(tmp.path, 'probe.vhdx');
    runOk('qemu-img', ['create', '-q', '-f', 'vhdx', probe, '4M']);
    const r = run('qemu-io', ['-i', 'io_uring', '-f', 'vhdx', '-c', 'read 0 512', probe]);
    if (r.code !== 0) throw new Error(`qemu-io cannot use io_uring here, which these tests need for a reproducible crash point: ${r.stderr.trim()}`);
    const s = run('strace', ['-f', '-o', '/dev/null', 'true']);
    if (s.code !== 0) throw new Error(`strace cannot trace here (ptrace not permitted?): ${s.stderr.trim()}`);
    rmSync(probe);
  });
  after(() => tmp?.cleanup());

  for (const [index, sc] of scenarios.entries()) {
    describe(sc.name, () => {
      const base = (): string => join(tmp!.path, `s${index}`);
      let image = '';
      let model = '';
      let crashPoint = '';
      const files: string[] = [];
      let converted = '';
      /** `vhdx convert` of the dirty image, made once and shared by the tests below. */
      const convertOurs = (): string => {
        if (!converted) {
          const out = `${base()}.ours.raw`;
          files.push(out);
          runOk(VHDX_BIN, ['convert', image, out]);
          converted = out;
        }
        return converted;
      };

      before(() => {
        image = `${base()}.vhdx`;
        model = `${base()}.model.raw`;
        const prepared = `${base()}.prepared.vhdx`;
        files.push(image, model, prepared);
        runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `subformat=dynamic,block_size=${sc.blockSize}`, prepared, String(SIZE)]);
        if (sc.prepare.length > 0) runOk('qemu-io', ['-f', 'vhdx', ...qemuIoWriteArgs(sc.prepare), prepared]);
        writeModelRaw(model, SIZE, [...sc.prepare, ...sc.crash].map((w) => fillWrite(w.offset, w.length, w.pattern)));
        assert.ok(UNALLOCATED_STATES.includes(batBlockState(prepared, sc.crashBlock, sc.blockSize)), 'the crash block starts unallocated');

        // Dry run on a copy: how many io_uring_enter calls the whole session makes.
        const dry = `${base()}.dry.vhdx`;
        sparseCopy(prepared, dry);
        const full = qemuIoSession(dry, sc.crash);
        rmSync(dry);
        assert.equal(full.code, 0, `uninterrupted session failed: ${full.stderr}`);
        const total = full.calls;
        assert.ok(total > 12, `only ${total} io_uring_enter calls in the session`);

        const tried: string[] = [];
        const candidates = [...new Set([...(sc.tryFirst ?? []), ...PREFERRED[sc.want]])].map((k) => total - k);
        for (let n = total - 1; n >= Math.max(1, total - 24); n--) if (!candidates.includes(n)) candidates.push(n);
        for (const n of candidates) {
          sparseCopy(prepared, image);
          const r = qemuIoSession(image, sc.crash, n);
          const killed = r.signal === 'SIGKILL' || r.code === 128 + 9;
          const outcome = classify(image, sc.blockSize, sc.crashBlock, killed);
          tried.push(`#${n}: ${outcome}`);
          if (outcome === sc.want) {
            crashPoint = `SIGKILL on io_uring_enter #${n} of ${total} (${tried.join(', ')})`;
            return;
          }
        }
        throw new Error(`could not make QEMU leave a '${sc.want}' dirty log; kill points tried: ${tried.join(', ')}`);
      });
      after(() => {
        for (const f of files) rmSync(f, { force: true });
      });

      it(`QEMU left a dirty log (${sc.want})`, (t) => {
        t.diagnostic(crashPoint);
        const header = currentHeader(image);
        assert.equal(header.logGuidIsZero, false);
        const state = batBlockState(image, sc.crashBlock, sc.blockSize);
        if (sc.want === 'log-only') assert.ok(UNALLOCATED_STATES.includes(state), `BAT state ${state} in the file`);
        else assert.equal(state, FULLY_PRESENT);
        for (const b of sc.committed ?? []) assert.equal(batBlockState(image, b, sc.blockSize), FULLY_PRESENT, `block ${b} committed before the kill`);
        const entries = logEntriesOfCurrentGuid(image);
        assert.ok(entries.length >= 1, 'the log holds an entry under the current LogGuid');
        if (sc.entryPastRingStart) assert.ok(entries.every((e) => e.logOffset > 0), `active entries at ${entries.map((e) => e.logOffset).join(', ')}`);
      });

      it('qemu-img refuses to open the dirty original read-only (why we replay in memory)', () => {
        const info = run('qemu-img', ['info', '-f', 'vhdx', image]);
        assert.notEqual(info.code, 0);
        assert.match(info.stderr, REPLAY_REFUSAL);
        const out = `${base()}.refused.raw`;
        files.push(out);
        const convert = run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', image, out]);
        assert.notEqual(convert.code, 0);
        assert.match(convert.stderr, REPLAY_REFUSAL);
      });

      it('our read-only open replays in memory, converts, and leaves the file byte-identical', () => {
        const before = sha256OfFile(image);
        const info = vhdxInfo(image);
        assert.equal(info.logState, 'replayed-in-memory');
        assert.notEqual(info.logGuid, '00000000-0000-0000-0000-000000000000');
        convertOurs();
        assert.equal(sha256OfFile(image), before, 'the dirty image was modified by a read-only open');
      });

      it('our conversion equals qemu-img convert after qemu-img check -r all', () => {
        const repaired = `${base()}.qemu-repaired.vhdx`;
        const reference = `${base()}.qemu.raw`;
        files.push(repaired, reference);
        sparseCopy(image, repaired);
        runOk('qemu-img', ['check', '-r', 'all', '-f', 'vhdx', repaired]);
        assert.equal(currentHeader(repaired).logGuidIsZero, true, 'qemu-img check -r all cleared the log');
        runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', repaired, reference]);
        // The interrupted write's data was durable before its log entry, so QEMU's repaired image holds every write.
        assert.equal(compareFiles(reference, model), null, 'qemu-img convert after repair vs the written data');
        assert.equal(compareFiles(convertOurs(), reference), null, 'vhdx convert of the dirty image vs qemu-img convert after repair');
      });

      it('a writable open with our library replays into the file; QEMU then opens it cleanly', async () => {
        const replayed = `${base()}.ours-replayed.vhdx`;
        const reference = `${base()}.ours-replayed.raw`;
        files.push(replayed, reference);
        sparseCopy(image, replayed);
        const backend = await NodeFileBackend.open(replayed, { readOnly: false });
        const img = await VhdxImage.open(backend, { readOnly: false });
        try {
          assert.equal(img.info().logState, 'replayed');
        } finally {
          await img.close();
        }
        assert.equal(currentHeader(replayed).logGuidIsZero, true, 'LogGuid cleared in the file after our replay');
        assert.equal(vhdxInfo(replayed).logState, 'empty');
        const check = run('qemu-img', ['check', '-f', 'vhdx', replayed]);
        assert.equal(check.code, 0, `qemu-img check: ${check.stdout.toString()}${check.stderr}`);
        assert.match(check.stdout.toString(), /No errors were found on the image/);
        runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', replayed, reference]);
        assert.equal(compareFiles(reference, model), null, 'qemu-img convert of our replayed image vs the written data');
      });
    });
  }
});
