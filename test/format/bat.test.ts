/** BAT entries, chunk interleaving and geometry (format reference §7). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BAT_ENTRY_SIZE,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_UNDEFINED,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_UNMAPPED_V095,
  PAYLOAD_BLOCK_ZERO,
  SB_BLOCK_NOT_PRESENT,
  SB_BLOCK_PRESENT,
  batGeometry,
  decodeBatEntry,
  encodeBatEntry,
  isSectorBitmapEntryIndex,
  payloadEntryIndex,
  sectorBitmapEntryIndex,
} from '../../src/format/bat.js';
import { hex } from '../helpers.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

describe('BAT entry states (§7.2, §7.3)', () => {
  test('state values', () => {
    assert.equal(BAT_ENTRY_SIZE, 8);
    assert.equal(PAYLOAD_BLOCK_NOT_PRESENT, 0);
    assert.equal(PAYLOAD_BLOCK_UNDEFINED, 1);
    assert.equal(PAYLOAD_BLOCK_ZERO, 2);
    assert.equal(PAYLOAD_BLOCK_UNMAPPED, 3);
    assert.equal(PAYLOAD_BLOCK_UNMAPPED_V095, 5);
    assert.equal(PAYLOAD_BLOCK_FULLY_PRESENT, 6);
    assert.equal(PAYLOAD_BLOCK_PARTIALLY_PRESENT, 7);
    assert.equal(SB_BLOCK_NOT_PRESENT, 0);
    assert.equal(SB_BLOCK_PRESENT, 6);
  });
});

describe('BAT entry codec (§7.1)', () => {
  // [what, on-disk bytes, state, byte offset, reserved]
  const cases: [string, string, number, number, number][] = [
    ['all zero', '00 00 00 00 00 00 00 00', 0, 0, 0],
    ['FULLY_PRESENT at 3 MiB', '06 00 30 00 00 00 00 00', 6, 3 * MiB, 0],
    ['ZERO at offset 0', '02 00 00 00 00 00 00 00', 2, 0, 0],
    ['PARTIALLY_PRESENT at 1 MiB', '07 00 10 00 00 00 00 00', 7, MiB, 0],
    ['4095 MiB (top of the low word)', '06 00 F0 FF 00 00 00 00', 6, 4095 * MiB, 0],
    ['4 GiB (first MiB count in the high word)', '06 00 00 00 01 00 00 00', 6, 4 * GiB, 0],
    ['64 TiB = 2^46', '06 00 00 00 00 40 00 00', 6, 2 ** 46, 0],
    ['largest FileOffsetMB 2^44 - 1', '07 00 F0 FF FF FF FF FF', 7, (2 ** 44 - 1) * MiB, 0],
  ];
  for (const [what, bytes, state, fileOffset, reserved] of cases) {
    test(`decode: ${what}`, () => {
      assert.deepEqual(decodeBatEntry(hex(bytes), 0), { state, fileOffset, reserved });
    });
    test(`encode: ${what}`, () => {
      const out = new Uint8Array(8);
      encodeBatEntry(out, 0, state, fileOffset);
      assert.deepEqual(out, hex(bytes));
    });
  }

  test('reserved bits 3..19 are reported and do not leak into state or offset', () => {
    assert.deepEqual(decodeBatEntry(hex('F8 FF 0F 00 00 00 00 00'), 0), { state: 0, fileOffset: 0, reserved: 0x1ffff });
    assert.deepEqual(decodeBatEntry(hex('0E 00 30 00 00 00 00 00'), 0), { state: 6, fileOffset: 3 * MiB, reserved: 1 });
    assert.deepEqual(decodeBatEntry(hex('06 00 18 00 00 00 00 00'), 0), { state: 6, fileOffset: MiB, reserved: 0x10000 });
  });

  test('decodes the entry at index i from bytes 8i..8i+8', () => {
    const table = new Uint8Array(32).fill(0xff);
    table.set(hex('06 00 50 00 00 00 00 00'), 16);
    assert.deepEqual(decodeBatEntry(table, 2), { state: 6, fileOffset: 5 * MiB, reserved: 0 });
  });

  test('round trip for every state 0..7 and offsets up to 2^46 bytes in MiB units (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2 ** 26 }), fc.integer({ min: 0, max: 15 }), (state, mb, index) => {
        const table = new Uint8Array(16 * 8);
        encodeBatEntry(table, index, state, mb * MiB);
        assert.deepEqual(decodeBatEntry(table, index), { state, fileOffset: mb * MiB, reserved: 0 });
        const raw = new DataView(table.buffer).getBigUint64(index * 8, true);
        assert.equal(raw, (BigInt(mb) << 20n) | BigInt(state));
      }),
      { numRuns: 500 },
    );
  });

  test('round trip across the whole 44-bit FileOffsetMB range (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), fc.bigInt({ min: 0n, max: 2n ** 44n - 1n }), (state, mb) => {
        const table = new Uint8Array(8);
        encodeBatEntry(table, 0, state, Number(mb) * MiB);
        assert.equal(new DataView(table.buffer).getBigUint64(0, true), (mb << 20n) | BigInt(state));
        assert.deepEqual(decodeBatEntry(table, 0), { state, fileOffset: Number(mb) * MiB, reserved: 0 });
      }),
      { numRuns: 300 },
    );
  });

  test('encoding writes only its own 8 bytes (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2 ** 26 }), fc.integer({ min: 0, max: 7 }), (state, mb, index) => {
        const table = new Uint8Array(64).fill(0xa5);
        encodeBatEntry(table, index, state, mb * MiB);
        for (let i = 0; i < 64; i++) if (i < index * 8 || i >= index * 8 + 8) assert.equal(table[i], 0xa5, `byte ${i}`);
      }),
    );
  });

  for (const bad of [1, MiB + 1, MiB / 2, -MiB, 2 ** 64, 2 ** 65, Number.NaN]) {
    test(`encode refuses block offset ${bad}`, () => {
      assert.throws(() => encodeBatEntry(new Uint8Array(8), 0, 6, bad), RangeError);
    });
  }
});

describe('BAT geometry (§7.4, §7.5)', () => {
  test('reference example: 100 GiB, 32 MiB blocks, 512 B sectors', () => {
    assert.deepEqual(batGeometry(100 * GiB, 32 * MiB, 512, false), {
      blockSize: 32 * MiB,
      logicalSectorSize: 512,
      virtualDiskSize: 100 * GiB,
      chunkRatio: 128,
      payloadBlocks: 3200,
      sectorBitmapBlocks: 25,
      requiredEntries: 3224,
      regionSize: MiB,
    });
    const diff = batGeometry(100 * GiB, 32 * MiB, 512, true);
    assert.equal(diff.requiredEntries, 3225);
    assert.equal(diff.regionSize, MiB);
  });

  // [block size, logical sector size, ChunkRatio]
  const ratios: [number, number, number][] = [
    [1 * MiB, 512, 4096],
    [32 * MiB, 512, 128],
    [256 * MiB, 512, 16],
    [1 * MiB, 4096, 32768],
    [32 * MiB, 4096, 1024],
    [256 * MiB, 4096, 128],
  ];
  for (const [blockSize, sector, ratio] of ratios) {
    test(`ChunkRatio ${ratio} for ${blockSize / MiB} MiB blocks at ${sector} B sectors`, () => {
      assert.equal(batGeometry(GiB, blockSize, sector, false).chunkRatio, ratio);
    });
  }

  // [what, size, block, sector, PB, SB, dynamic entries, differencing entries, region bytes]
  const shapes: [string, number, number, number, number, number, number, number, number][] = [
    ['PB an exact multiple of ChunkRatio (4 GiB, 32 MiB)', 4 * GiB, 32 * MiB, 512, 128, 1, 128, 129, MiB],
    ['one block into the second chunk (4 GiB + 32 MiB)', 4 * GiB + 32 * MiB, 32 * MiB, 512, 129, 2, 130, 258, MiB],
    ['size not a multiple of the block (1 GiB + 512)', GiB + 512, 32 * MiB, 512, 33, 1, 33, 129, MiB],
    ['one block (1 MiB disk, 1 MiB block)', MiB, MiB, 512, 1, 1, 1, 4097, MiB],
    ['64 TiB with 1 MiB blocks at 512 B (region 513 MiB)', 64 * TiB, MiB, 512, 2 ** 26, 16384, 67125247, 67125248, 513 * MiB],
    ['64 TiB with 1 MiB blocks at 4 KiB (region 513 MiB)', 64 * TiB, MiB, 4096, 2 ** 26, 2048, 67110911, 67110912, 513 * MiB],
    ['10 GiB with 256 MiB blocks at 4 KiB', 10 * GiB, 256 * MiB, 4096, 40, 1, 40, 129, MiB],
  ];
  for (const [what, size, block, sector, pb, sb, dyn, diff, region] of shapes) {
    test(what, () => {
      const g = batGeometry(size, block, sector, false);
      assert.equal(g.payloadBlocks, pb);
      assert.equal(g.sectorBitmapBlocks, sb);
      assert.equal(g.requiredEntries, dyn);
      assert.equal(g.regionSize, region);
      const d = batGeometry(size, block, sector, true);
      assert.equal(d.requiredEntries, diff);
      assert.equal(d.regionSize, region);
    });
  }

  test('entry counts agree with the index functions: last payload entry (dynamic), last SB entry (differencing) (property)', () => {
    const arb = fc.record({
      blockLog: fc.integer({ min: 20, max: 28 }),
      sector: fc.constantFrom(512, 4096),
      sectors: fc.integer({ min: 1, max: 2 ** 37 }),
    }, { noNullPrototype: true });
    fc.assert(
      fc.property(arb, ({ blockLog, sector, sectors }) => {
        const size = sectors * sector;
        fc.pre(size <= 64 * TiB);
        const blockSize = 2 ** blockLog;
        const g = batGeometry(size, blockSize, sector, false);
        const d = batGeometry(size, blockSize, sector, true);
        assert.equal(g.chunkRatio, (2 ** 23 * sector) / blockSize);
        assert.equal(g.payloadBlocks, Math.ceil(size / blockSize));
        assert.equal(g.sectorBitmapBlocks, Math.ceil(g.payloadBlocks / g.chunkRatio));
        assert.equal(g.requiredEntries, payloadEntryIndex(g.payloadBlocks - 1, g.chunkRatio) + 1);
        assert.equal(d.requiredEntries, sectorBitmapEntryIndex(g.sectorBitmapBlocks - 1, g.chunkRatio) + 1);
        assert.ok(g.regionSize % MiB === 0 && g.regionSize >= 8 * d.requiredEntries && g.regionSize - 8 * d.requiredEntries < MiB);
      }),
      { numRuns: 300 },
    );
  });
});

describe('BAT interleaving (§7.4)', () => {
  test('index examples for ChunkRatio 128', () => {
    const payload: [number, number][] = [[0, 0], [1, 1], [127, 127], [128, 129], [255, 256], [256, 258], [3199, 3223]];
    for (const [block, index] of payload) assert.equal(payloadEntryIndex(block, 128), index, `block ${block}`);
    const sb: [number, number][] = [[0, 128], [1, 257], [24, 3224]];
    for (const [chunk, index] of sb) assert.equal(sectorBitmapEntryIndex(chunk, 128), index, `chunk ${chunk}`);
    for (const i of [128, 257, 386, 3224]) assert.equal(isSectorBitmapEntryIndex(i, 128), true, `index ${i}`);
    for (const i of [0, 1, 127, 129, 256, 258, 3223]) assert.equal(isSectorBitmapEntryIndex(i, 128), false, `index ${i}`);
  });

  test('index examples for ChunkRatio 4096 and 32768', () => {
    assert.equal(payloadEntryIndex(4095, 4096), 4095);
    assert.equal(payloadEntryIndex(4096, 4096), 4097);
    assert.equal(sectorBitmapEntryIndex(0, 4096), 4096);
    assert.equal(sectorBitmapEntryIndex(2, 4096), 2 * 4097 + 4096);
    assert.equal(isSectorBitmapEntryIndex(4096, 4096), true);
    assert.equal(isSectorBitmapEntryIndex(4097, 4096), false);
    assert.equal(payloadEntryIndex(32768, 32768), 32769);
    assert.equal(sectorBitmapEntryIndex(1, 32768), 65537);
    assert.equal(isSectorBitmapEntryIndex(65537, 32768), true);
  });

  test('the first 5 chunks at ChunkRatio 16 partition indices into payload and SB entries exactly once', () => {
    const cr = 16;
    const owner = new Map<number, string>();
    for (let b = 0; b < 5 * cr; b++) {
      const i = payloadEntryIndex(b, cr);
      assert.equal(owner.has(i), false, `index ${i} used twice`);
      owner.set(i, `payload ${b}`);
    }
    for (let c = 0; c < 5; c++) {
      const i = sectorBitmapEntryIndex(c, cr);
      assert.equal(owner.has(i), false, `index ${i} used twice`);
      owner.set(i, `sb ${c}`);
    }
    assert.equal(owner.size, 5 * (cr + 1));
    for (let i = 0; i < 5 * (cr + 1); i++) {
      const who = owner.get(i);
      assert.ok(who !== undefined, `index ${i} unused`);
      assert.equal(isSectorBitmapEntryIndex(i, cr), who.startsWith('sb'), `index ${i} (${who})`);
    }
  });

  test('payload, SB and predicate functions are consistent for any power-of-two ChunkRatio (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 2 ** 26 }), (log, block) => {
        const cr = 2 ** log;
        const i = payloadEntryIndex(block, cr);
        const chunk = Math.floor(block / cr);
        assert.equal(i, chunk * (cr + 1) + (block % cr));
        assert.equal(isSectorBitmapEntryIndex(i, cr), false);
        const next = payloadEntryIndex(block + 1, cr);
        if ((block + 1) % cr === 0) {
          assert.equal(next, i + 2);
          assert.equal(sectorBitmapEntryIndex(chunk, cr), i + 1);
          assert.equal(isSectorBitmapEntryIndex(i + 1, cr), true);
        } else {
          assert.equal(next, i + 1);
        }
        const sbi = sectorBitmapEntryIndex(chunk, cr);
        assert.equal(isSectorBitmapEntryIndex(sbi, cr), true);
        assert.equal(sbi, payloadEntryIndex(chunk * cr + cr - 1, cr) + 1);
      }),
      { numRuns: 500 },
    );
  });
});
