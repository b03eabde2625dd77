/**
 * Our own dirty-log fixtures (`buildImage` with `dirtyLog`): the file's BAT still says the written blocks
 * are absent and the log holds the change. A read-only open must show the written content without
 * touching the file; a writable open must replay into the file, after which a fresh open finds an empty
 * log and the peers (qemu-img check/convert for 512-byte sectors, libvhdi for 4096-byte sectors, which
 * QEMU refuses) read the written content. Expectations are the data given to the generator, and the
 * fixtures themselves are checked without our reader (header, log ring, BAT read straight from the file)
 * and by QEMU, which must see a log to replay.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VhdxImage } from '../../src/image/image.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { buildImage, type BuildSpec } from '../build-image.js';
import { patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import {
  MiB,
  batBlockState,
  compareFiles,
  currentHeader,
  describeDifference,
  libvhdiRead,
  logEntriesOfCurrentGuid,
  modelBytes,
  requirePyvhdi,
  sameBytes,
  sha256OfFile,
  vhdxInfo,
  writeModelRaw,
  type Write,
} from './util.js';

const FULLY_PRESENT = 6;
const REPLAY_REFUSAL = /opened read-only, but contains a log that needs to be replayed/;

interface Fixture {
  name: string;
  spec: Omit<BuildSpec, 'writes'>;
  writes: Write[];
  /** Log entries carrying the LogGuid the generator must have produced, and whether the sequence wraps the ring. */
  entries: number;
  wraps: boolean;
  /** QEMU reads only 512-byte logical sectors; 4096-byte images are checked with libvhdi instead. */
  peer: 'qemu' | 'libvhdi';
}

/** Blocks 0, 512 and 1024 have their BAT entries in three different 4 KiB BAT sectors (512 entries each). */
const THREE_SECTOR_SIZE = 1025 * MiB;

const fixtures: Fixture[] = [
  {
    name: 'one entry, 1 MiB blocks, windows layout',
    spec: { virtualSize: 41 * MiB + 3 * 512, blockSize: MiB, layout: 'windows', dirtyLog: { entries: 1 } },
    writes: [
      { offset: 1000, data: patternBytes(3001, 11) },
      { offset: 7 * MiB - 10, data: patternBytes(20, 12) },
      { offset: 41 * MiB + 3 * 512 - 777, data: patternBytes(777, 13) },
    ],
    entries: 1,
    wraps: false,
    peer: 'qemu',
  },
  {
    name: 'three entries wrapping the ring, 1 MiB blocks, qemu layout',
    spec: { virtualSize: THREE_SECTOR_SIZE + 3 * 512, blockSize: MiB, layout: 'qemu', dirtyLog: { entries: 3, wrap: true } },
    writes: [
      { offset: 5, data: patternBytes(5000, 21) },
      { offset: 512 * MiB + 99, data: patternBytes(4096, 22) },
      { offset: THREE_SECTOR_SIZE + 3 * 512 - 2000, data: patternBytes(2000, 23) },
    ],
    entries: 3,
    wraps: true,
    peer: 'qemu',
  },
  {
    name: 'one wrapping entry, 8 MiB blocks, windows layout, physical 512',
    spec: { virtualSize: 41 * MiB + 3 * 512, blockSize: 8 * MiB, layout: 'windows', physicalSectorSize: 512, dirtyLog: { entries: 1, wrap: true } },
    writes: [
      { offset: 8 * MiB - 3, data: patternBytes(10, 31) },
      { offset: 40 * MiB + 1, data: patternBytes(MiB, 32) },
    ],
    entries: 1,
    wraps: true,
    peer: 'qemu',
  },
  {
    name: 'two entries wrapping the ring, 4096-byte sectors, 1 MiB blocks, qemu layout',
    spec: { virtualSize: 513 * MiB + 3 * 4096, blockSize: MiB, logicalSectorSize: 4096, layout: 'qemu', dirtyLog: { entries: 2, wrap: true } },
    writes: [
      { offset: 4097, data: patternBytes(9000, 41) },
      { offset: 511 * MiB + 1, data: patternBytes(100, 42) },
      { offset: 512 * MiB + 3, data: patternBytes(MiB + 3 * 4096 - 3, 43) }, // block 512 (second BAT sector) to the end
    ],
    entries: 2,
    wraps: true,
    peer: 'libvhdi',
  },
];

/** Reads the whole virtual disk through our reader and compares it with the written data. */
async function assertContent(img: VhdxImage, writes: Write[], what: string): Promise<void> {
  const chunk = 8 * MiB;
  for (let offset = 0; offset < img.virtualSize; offset += chunk) {
    const got = await img.read(offset, Math.min(chunk, img.virtualSize - offset));
    const expected = modelBytes(writes, offset, got.length);
    if (!sameBytes(got, expected)) assert.fail(`${what}: ${describeDifference(got, expected, offset, 'ours', 'written')}`);
  }
}

function writtenBlocks(f: Fixture): number[] {
  const blockSize = f.spec.blockSize!;
  const blocks = new Set<number>();
  for (const w of f.writes) for (let b = Math.floor(w.offset / blockSize); b * blockSize < w.offset + w.data.length; b++) blocks.add(b);
  return [...blocks];
}

describe('dirty-log fixtures from our generator', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    requireProgram('qemu-img');
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-fixture-log-');
  });
  after(() => tmp?.cleanup());

  for (const [index, f] of fixtures.entries()) {
    describe(f.name, () => {
      const lss = f.spec.logicalSectorSize ?? 512;
      let image = '';
      let model = '';
      const files: string[] = [];

      before(async () => {
        image = join(tmp!.path, `f${index}.vhdx`);
        model = join(tmp!.path, `f${index}.model.raw`);
        files.push(image, model);
        const backend = await NodeFileBackend.open(image, { readOnly: false, create: true });
        try {
          await buildImage(backend, { ...f.spec, writes: f.writes });
        } finally {
          await backend.close();
        }
        writeModelRaw(model, f.spec.virtualSize, f.writes);
      });
      after(() => {
        for (const file of files) rmSync(file, { force: true });
      });

      it('the fixture is dirty: LogGuid set, the BAT change only in the log', () => {
        assert.equal(currentHeader(image).logGuidIsZero, false);
        const entries = logEntriesOfCurrentGuid(image);
        assert.equal(entries.length, f.entries, `log entries: ${JSON.stringify(entries, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
        // The sequence wraps when an entry runs past the end of the ring or a later entry starts before an earlier one.
        const bySequence = [...entries].sort((a, b) => (a.sequence < b.sequence ? -1 : 1));
        const wraps = bySequence.some((e, i) => e.wraps || (i > 0 && e.logOffset < bySequence[i - 1]!.logOffset));
        assert.equal(wraps, f.wraps, 'the sequence wraps around the end of the ring');
        for (const b of writtenBlocks(f)) assert.notEqual(batBlockState(image, b, f.spec.blockSize!, lss), FULLY_PRESENT, `block ${b} in the file's BAT`);
        if (f.peer === 'qemu') {
          const q = run('qemu-img', ['info', '-f', 'vhdx', image]);
          assert.notEqual(q.code, 0, 'qemu-img opened the dirty fixture read-only');
          assert.match(q.stderr, REPLAY_REFUSAL, 'QEMU must see a valid log to replay');
        }
      });

      it('a read-only open shows the written content and leaves the file unchanged', async () => {
        const before = sha256OfFile(image);
        assert.equal(vhdxInfo(image).logState, 'replayed-in-memory');
        const img = await openImage(image, { readOnly: true });
        try {
          assert.equal(img.info().logState, 'replayed-in-memory');
          await assertContent(img, f.writes, 'read-only open of the dirty fixture');
        } finally {
          await img.close();
        }
        assert.equal(sha256OfFile(image), before, 'a read-only open modified the file');
      });

      it('a writable open replays into the file; a fresh open then finds an empty log', async () => {
        const backend = await NodeFileBackend.open(image, { readOnly: false });
        const img = await VhdxImage.open(backend, { readOnly: false });
        try {
          assert.equal(img.info().logState, 'replayed');
          for (const w of f.writes) assert.ok(sameBytes(await img.read(w.offset, w.data.length), modelBytes(f.writes, w.offset, w.data.length)), `write at ${w.offset} after replay`);
        } finally {
          await img.close();
        }
        // Straight from the file: LogGuid cleared, the written blocks present in the BAT.
        assert.equal(currentHeader(image).logGuidIsZero, true, 'LogGuid still set after a writable open');
        for (const b of writtenBlocks(f)) assert.equal(batBlockState(image, b, f.spec.blockSize!, lss), FULLY_PRESENT, `block ${b} in the file's BAT`);
        assert.equal(vhdxInfo(image).logState, 'empty');
        const fresh = await openImage(image, { readOnly: true });
        try {
          assert.equal(fresh.info().logState, 'empty');
          await assertContent(fresh, f.writes, 'fresh open after replay');
        } finally {
          await fresh.close();
        }
      });

      if (f.peer === 'qemu') {
        it('after our replay qemu-img check finds no errors and qemu-img convert gives the written data', () => {
          const check = run('qemu-img', ['check', '-f', 'vhdx', image]);
          assert.equal(check.code, 0, `qemu-img check exited ${check.code}: ${check.stdout.toString()}${check.stderr}`);
          assert.match(check.stdout.toString(), /No errors were found on the image/);
          const reference = join(tmp!.path, `f${index}.qemu.raw`);
          files.push(reference);
          runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', image, reference]);
          assert.equal(compareFiles(reference, model), null);
        });
      } else {
        it('after our replay libvhdi reads the written data with 4096-byte sectors', () => {
          const view = libvhdiRead(image, model);
          assert.equal(view.bytesPerSector, 4096);
          assert.equal(view.mediaSize, f.spec.virtualSize);
          assert.equal(view.firstDifference, null, `libvhdi vs written data: ${JSON.stringify(view.firstDifference)}`);
        });
      }
    });
  }
});
