/**
 * `checkVhd`: VHD files built field by field (build-vhd.ts), clean and damaged, judged as `check`
 * judges a VHDX: corruptions (exit status 2), leaks (3), warnings (0), nothing ever written.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { checkVhd } from '../../src/ops/check-vhd.js';
import { patternBytes } from '../helpers.js';
import { buildFixed, buildVhd, HEADER_OFFSET, TABLE_OFFSET } from './build-vhd.js';

const MiB = 1024 * 1024;

async function checked(bytes: Uint8Array): Promise<Awaited<ReturnType<typeof checkVhd>>> {
  const backend = new MemoryBackend(bytes.slice(), { readOnly: true });
  const report = await checkVhd(backend);
  assert.deepEqual(backend.contents(), bytes, 'a check writes nothing');
  return report;
}

/** A dynamic VHD of 8 MiB with 1 MiB blocks, blocks 1, 3 and 6 stored (in that order in the file). */
function dynamic(): Uint8Array {
  return buildVhd({ type: 'dynamic', size: 8 * MiB, blockSize: MiB, blocks: new Map([1, 3, 6].map((b) => [b, { data: patternBytes(MiB, b) }])) });
}

function setEntry(bytes: Uint8Array, block: number, sector: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(TABLE_OFFSET + 4 * block, sector);
}

function entry(bytes: Uint8Array, block: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(TABLE_OFFSET + 4 * block);
}

describe('checkVhd', () => {
  test('clean dynamic and fixed disks', async () => {
    for (const bytes of [dynamic(), buildFixed(patternBytes(3 * MiB, 9))]) {
      const r = await checked(bytes);
      assert.deepEqual([r.verdict, r.exitCode, r.findings], ['clean', 0, []]);
    }
  });

  test('two entries for one block: corrupt, naming the block and its virtual range', async () => {
    const bytes = dynamic();
    setEntry(bytes, 6, entry(bytes, 3)); // block 6 now points where block 3 lies
    const r = await checked(bytes);
    assert.equal(r.verdict, 'corrupt');
    assert.equal(r.exitCode, 2);
    const f = r.findings.filter((x) => x.code === 'BAT_OVERLAPS_BLOCK');
    assert.equal(f.length, 1);
    assert.match(f[0]!.message, /^block (3|6) \(file offset \d+\) overlaps block (3|6)/);
    assert.ok([3, 6].map((b) => b * MiB).includes(f[0]!.virtualOffset!));
    assert.equal(f[0]!.virtualLength, MiB);
    // Block 6's old place is now referenced by nothing, but holds no whole aligned MiB: no leak claimed.
    assert.equal(r.leaks, 0);
  });

  test('a block running into the end footer: the file was cut short', async () => {
    const full = dynamic();
    const footer = full.subarray(full.length - 512);
    const cut = new Uint8Array(full.length - 512);
    cut.set(full.subarray(0, full.length - 1024));
    cut.set(footer, cut.length - 512);
    const r = await checked(cut);
    assert.equal(r.exitCode, 2);
    const f = r.findings.find((x) => x.code === 'BAT_PAST_EOF');
    assert.ok(f, JSON.stringify(r.findings));
    assert.equal(f.virtualOffset, 6 * MiB);
  });

  test('unreferenced whole MiBs are leaks (exit 3); a damaged end footer is a warning', async () => {
    const full = dynamic();
    const grown = new Uint8Array(full.length + 3 * MiB);
    grown.set(full.subarray(0, full.length - 512));
    grown.set(full.subarray(full.length - 512), grown.length - 512);
    const r = await checked(grown);
    assert.deepEqual([r.verdict, r.exitCode, r.leaks], ['leaks', 3, 1]);
    assert.ok(r.leakedBytes >= 2 * MiB && r.leakedBytes <= 3 * MiB, `${r.leakedBytes}`);
    assert.equal(r.findings[0]!.repairable, false, 'no repair for VHD');

    const damaged = dynamic();
    damaged[damaged.length - 512 + 70] = damaged[damaged.length - 512 + 70]! ^ 0xff; // the end footer's checksum no longer matches
    const w = await checked(damaged);
    assert.deepEqual([w.verdict, w.exitCode, w.warnings], ['clean', 0, 1]);
    assert.equal(w.findings[0]!.code, 'TOLERATED');
    assert.match(w.findings[0]!.message, /footer at the end of the file is damaged/);
  });

  test('a damaged dynamic header: corrupt with the open\'s code; extra bytes in a fixed disk are a leak', async () => {
    const bytes = dynamic();
    bytes[HEADER_OFFSET + 40] = bytes[HEADER_OFFSET + 40]! ^ 0x01; // inside the checksummed header
    const r = await checked(bytes);
    assert.deepEqual([r.verdict, r.exitCode], ['corrupt', 2]);
    assert.equal(r.findings[0]!.code, 'BAD_VHD');
    assert.match(r.findings[0]!.message, /dynamic header checksum/);

    const fixed = buildFixed(patternBytes(2 * MiB, 4));
    const padded = new Uint8Array(fixed.length + 2 * MiB);
    padded.set(fixed.subarray(0, 2 * MiB));
    padded.set(fixed.subarray(2 * MiB), padded.length - 512);
    // The footer says 2 MiB; the file holds 2 MiB more before it: not part of the disk.
    const p = await checked(padded);
    assert.deepEqual([p.verdict, p.exitCode], ['leaks', 3]);
    assert.equal(p.leakedBytes, 2 * MiB, 'the whole MiBs between the payload and the footer');
  });
});
