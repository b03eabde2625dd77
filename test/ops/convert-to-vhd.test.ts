/**
 * VHD output. Fixed: payload then footer, holes where the source is zero, the footer written after a
 * flush. Dynamic: blocks only where data is, BAT and headers after the blocks are durable, footers last.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import type { Backend } from '../../src/io/backend.js';
import { convertToVhd } from '../../src/ops/convert-to-vhd.js';
import { convertSourceToRaw } from '../../src/ops/convert-source.js';
import { rawSource, vhdSource, vhdxSource } from '../../src/ops/source.js';
import { create } from '../../src/ops/create.js';
import { VhdxImage } from '../../src/image/image.js';
import { VhdImage } from '../../src/vhd/image.js';
import { guidFromString } from '../../src/format/guid.js';
import { patternBytes } from '../helpers.js';
import { buildVhd } from '../vhd/build-vhd.js';

const MiB = 1024 * 1024;

/** A memory backend recording the order of writes and flushes. */
function recording(): { backend: Backend; events: string[]; memory: MemoryBackend } {
  const memory = new MemoryBackend();
  const events: string[] = [];
  const backend: Backend = {
    name: 'out.vhd',
    readOnly: false,
    read: (t, p) => memory.read(t, p),
    write: (d, p) => (events.push(`write ${p} ${d.length}`), memory.write(d, p)),
    flush: () => (events.push('flush'), memory.flush()),
    size: () => memory.size(),
    truncate: (s) => (events.push(`truncate ${s}`), memory.truncate(s)),
    close: () => memory.close(),
  };
  return { backend, events, memory };
}

/** The footer fields read independently of the codec (big-endian offsets from the specification). */
function footerFields(file: Uint8Array): { cookie: string; size: bigint; type: number; id: number[]; timestamp: number } {
  const f = file.subarray(file.length - 512);
  const dv = new DataView(f.buffer, f.byteOffset, 512);
  return { cookie: Buffer.from(f.subarray(0, 8)).toString('latin1'), size: dv.getBigUint64(48), type: dv.getUint32(60), id: [...f.subarray(68, 84)], timestamp: dv.getUint32(24) };
}

describe('convertToVhd', () => {
  test('raw source: payload at 0, zero chunks never written, footer last after a flush', async () => {
    const size = 5 * MiB + 512;
    const raw = new Uint8Array(size);
    raw.set(patternBytes(1000, 1), 10);
    raw.set(patternBytes(512, 2), 5 * MiB);
    const { backend, events, memory } = recording();
    const time = new Date('2030-01-01T00:00:00Z');
    const footer = await convertToVhd(rawSource(new MemoryBackend(raw), size), backend, { time });
    const out = memory.contents();
    assert.equal(out.length, size + 512);
    assert.deepEqual(out.subarray(0, size), raw);
    const f = footerFields(out);
    assert.equal(f.cookie, 'conectix');
    assert.equal(f.size, BigInt(size));
    assert.equal(f.type, 2);
    assert.equal(f.timestamp, time.getTime() / 1000 - 946_684_800); // seconds since 2000-01-01
    assert.deepEqual(f.id, [...footer.uniqueId]);
    // Two data chunks written (the 2 MiB chunks at 0 and 4 MiB); the zero chunk at 2 MiB is a hole.
    assert.deepEqual(events, [`truncate ${size}`, `write 0 ${2 * MiB}`, `write ${4 * MiB} ${MiB + 512}`, 'flush', `write ${size} 512`, 'flush']);
  });

  test('slow writes: a buffer is never refilled while its write is in flight (data, read-as-zero, data chunks)', async () => {
    const size = 12 * MiB;
    const raw = new Uint8Array(size);
    for (const at of [0, 4 * MiB, 8 * MiB, 10 * MiB]) raw.set(patternBytes(MiB, at), at);
    const memory = new MemoryBackend();
    // Writes copy their data only after a delay, as a file write in flight would still read the buffer.
    const slow: Backend = {
      name: 'slow.vhd',
      readOnly: false,
      read: (t, p) => memory.read(t, p),
      write: (d, p) => new Promise((done) => setTimeout(() => void memory.write(d, p).then(done), 5)),
      flush: () => memory.flush(),
      size: () => memory.size(),
      truncate: (s) => memory.truncate(s),
      close: () => memory.close(),
    };
    await convertToVhd(rawSource(new MemoryBackend(raw), size), slow);
    assert.deepEqual(memory.contents().subarray(0, size), raw);
    // Dynamic: the next block is read while the one before is being written.
    await memory.truncate(0);
    await convertToVhd(rawSource(new MemoryBackend(raw), size), slow, { type: 'dynamic', blockSize: 512 * 1024 });
    const dynamic = await VhdImage.open(new MemoryBackend(memory.contents()));
    assert.deepEqual(await dynamic.read(0, size), raw);
  });

  test('dynamic: a failing write rejects the conversion once, after the write in flight is settled', async () => {
    const raw = patternBytes(4 * MiB, 8);
    const memory = new MemoryBackend();
    let writesSeen = 0;
    const failing: Backend = {
      name: 'failing.vhd',
      readOnly: false,
      read: (t, p) => memory.read(t, p),
      write: (d, p) => (++writesSeen === 3 ? Promise.reject(new Error('disk on fire')) : new Promise((done) => setTimeout(() => void memory.write(d, p).then(done), 2))),
      flush: () => memory.flush(),
      size: () => memory.size(),
      truncate: (s) => memory.truncate(s),
      close: () => memory.close(),
    };
    await assert.rejects(convertToVhd(rawSource(new MemoryBackend(raw), raw.length), failing, { type: 'dynamic', blockSize: 512 * 1024 }), /disk on fire/);
    const after = writesSeen;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(writesSeen, after, 'nothing is written after the conversion rejected');
  });

  test('azure: the size is rounded up to a whole MiB, the padding reads as zeros', async () => {
    const size = 3 * MiB + 1536;
    const raw = patternBytes(size, 3);
    const out = new MemoryBackend();
    await convertToVhd(rawSource(new MemoryBackend(raw), size), out, { azure: true });
    const bytes = out.contents();
    assert.equal(bytes.length, 4 * MiB + 512);
    assert.equal(footerFields(bytes).size, BigInt(4 * MiB));
    assert.deepEqual(bytes.subarray(0, size), raw);
    assert.ok(bytes.subarray(size, 4 * MiB).every((b) => b === 0));
  });

  test('VHDX source: Unique Id is its Virtual Disk ID; unallocated blocks are not read', async () => {
    const vhdx = new MemoryBackend();
    await create(vhdx, { virtualSize: 8 * MiB, blockSize: MiB });
    const image = await VhdxImage.open(vhdx, { readOnly: false });
    const data = patternBytes(3000, 4);
    await image.write(6 * MiB + 100, data);
    await image.flush();
    const out = new MemoryBackend();
    await convertToVhd(vhdxSource(image), out);
    const bytes = out.contents();
    assert.deepEqual(footerFields(bytes).id, [...guidFromString(image.info().virtualDiskId)]);
    assert.deepEqual(bytes.subarray(6 * MiB + 100, 6 * MiB + 3100), data);
    assert.ok(bytes.subarray(0, 6 * MiB + 100).every((b) => b === 0));
    await image.close();
  });

  test('VHD source: a dynamic VHD becomes a fixed one with the same Unique Id; read back the same', async () => {
    const id = Uint8Array.from({ length: 16 }, (_, i) => 200 - i);
    const block = patternBytes(MiB, 9);
    const dynamic = await VhdImage.open(new MemoryBackend(buildVhd({ type: 'dynamic', size: 4 * MiB, blockSize: MiB, blocks: new Map([[2, { data: block }]]), uniqueId: id })));
    const out = new MemoryBackend();
    await convertToVhd(vhdSource(dynamic), out);
    const fixed = await VhdImage.open(out);
    assert.equal(fixed.type, 'fixed');
    assert.deepEqual([...fixed.uniqueId], [...id]);
    assert.deepEqual(await fixed.read(2 * MiB, MiB), block);
    assert.ok((await fixed.read(0, 2 * MiB)).every((b) => b === 0));
  });

  test('dynamic: a block for each block holding data, data 4 KiB aligned; BAT and headers after the blocks are durable, footers last', async () => {
    const size = 9 * MiB + 1024; // five 2 MiB blocks, the last partial
    const raw = new Uint8Array(size);
    raw.set(patternBytes(3000, 1), MiB - 1000); // block 0
    raw.set(patternBytes(512, 2), 8 * MiB + 512); // block 4 (partial)
    raw.set(new Uint8Array(MiB), 4 * MiB); // block 2: zeros only, not stored
    const { backend, events, memory } = recording();
    const time = new Date('2030-01-01T00:00:00Z');
    const footer = await convertToVhd(rawSource(new MemoryBackend(raw), size), backend, { type: 'dynamic', time });
    assert.equal(footer.diskType, 'dynamic');
    const out = memory.contents();
    // Read back by our reader, and the layout checked from the bytes (big-endian fields of the specification).
    const image = await VhdImage.open(new MemoryBackend(out));
    assert.equal(image.type, 'dynamic');
    assert.equal(image.virtualSize, size);
    assert.deepEqual(await image.read(0, size), raw);
    const dv = new DataView(out.buffer, out.byteOffset, out.length);
    assert.equal(Buffer.from(out.subarray(0, 8)).toString('latin1'), 'conectix', 'footer copy at 0');
    assert.deepEqual(out.subarray(0, 512), out.subarray(out.length - 512), 'the two footers agree');
    assert.equal(dv.getUint32(60), 3, 'disk type dynamic');
    assert.equal(dv.getBigUint64(16), 512n, 'data offset: the dynamic header');
    assert.equal(Buffer.from(out.subarray(512, 520)).toString('latin1'), 'cxsparse');
    assert.equal(dv.getBigUint64(512 + 16), 1536n, 'table offset');
    assert.equal(dv.getUint32(512 + 28), 5, 'max table entries');
    assert.equal(dv.getUint32(512 + 32), 2 * MiB, 'block size');
    const entries = [0, 1, 2, 3, 4].map((b) => dv.getUint32(1536 + 4 * b));
    assert.deepEqual(entries.map((e) => e === 0xffffffff), [false, true, true, true, false], 'blocks 0 and 4 stored, the zero ones not');
    for (const e of entries.filter((x) => x !== 0xffffffff)) {
      const bitmapAt = e * 512;
      assert.equal((bitmapAt + 512) % 4096, 0, 'block data starts on a 4 KiB boundary');
      assert.ok(out.subarray(bitmapAt, bitmapAt + 512).every((b) => b === 0xff), 'every sector marked present');
    }
    assert.deepEqual(out.subarray(entries[0]! * 512 + 512, entries[0]! * 512 + 512 + 2 * MiB), raw.subarray(0, 2 * MiB));
    assert.equal(out.length, entries[4]! * 512 + 512 + 2 * MiB + 512, 'the footer follows the last whole block');
    // Order: the blocks, a flush, BAT and dynamic header, a flush, then the footers, a flush.
    const firstFlush = events.indexOf('flush');
    assert.ok(events.slice(0, firstFlush).every((e) => e.startsWith('write') ? Number(e.split(' ')[1]) >= 1536 + 512 : true), 'only blocks (past the BAT) before the first flush');
    assert.deepEqual(events.slice(firstFlush), ['flush', `write 1536 512`, 'write 512 1024', 'flush', 'write 0 512', `write ${out.length - 512} 512`, 'flush']);
  });

  test('dynamic: a large block is read and written in pieces; pieces of zeros inside a stored block are holes', async () => {
    const size = 16 * MiB; // two 8 MiB blocks, read in 1 MiB pieces
    const raw = new Uint8Array(size);
    raw.set(patternBytes(4096, 1), 5 * MiB + 8192); // block 0: only its sixth piece holds data
    raw.set(patternBytes(MiB + 10, 2), 15 * MiB - 10); // block 1: the end of its seventh piece and its whole eighth
    const { backend, events, memory } = recording();
    await convertToVhd(rawSource(new MemoryBackend(raw), size), backend, { type: 'dynamic', blockSize: 8 * MiB, chunkSize: MiB });
    const out = memory.contents();
    const image = await VhdImage.open(new MemoryBackend(out));
    assert.deepEqual(await image.read(0, size), raw);
    assert.equal(image.info().allocatedBytes, 16 * MiB, 'both blocks stored');
    const writes = events.filter((e) => e.startsWith('write')).map((e) => e.split(' ').map(Number).slice(1) as [number, number]);
    const dv = new DataView(out.buffer, out.byteOffset, out.length);
    const data0 = dv.getUint32(1536) * 512 + 2048; // 8 MiB blocks: a 2 KiB bitmap
    const data1 = dv.getUint32(1540) * 512 + 2048;
    const inBlock = (at: number): boolean => (at >= data0 && at < data0 + 8 * MiB) || (at >= data1 && at < data1 + 8 * MiB);
    const pieces = writes.filter(([at]) => inBlock(at));
    // Block 0: one piece (at 5 MiB into it); block 1: two pieces (6 and 7 MiB in). Nothing else of either.
    assert.deepEqual(pieces, [[data0 + 5 * MiB, MiB], [data1 + 6 * MiB, MiB], [data1 + 7 * MiB, MiB]]);
  });

  test('dynamic: block size option, limits, and Azure takes fixed only', async () => {
    const raw = patternBytes(3 * MiB, 5);
    const out = new MemoryBackend();
    await convertToVhd(rawSource(new MemoryBackend(raw), raw.length), out, { type: 'dynamic', blockSize: 512 * 1024 });
    const image = await VhdImage.open(out);
    assert.equal(image.info().blockSize, 512 * 1024);
    assert.deepEqual(await image.read(0, raw.length), raw);
    const huge = { size: 2041 * 1024 * MiB, read: async () => assert.fail('nothing is read'), knownZero: () => true };
    await assert.rejects(convertToVhd(huge, new MemoryBackend(), { type: 'dynamic' }), /a dynamic VHD holds at most 2040 GiB/);
    for (const blockSize of [256 * 1024, 3 * MiB, 512 * MiB]) {
      await assert.rejects(convertToVhd(rawSource(new MemoryBackend(raw), raw.length), new MemoryBackend(), { type: 'dynamic', blockSize }), /is not a power of two from 512 KiB to 256 MiB/);
    }
    await assert.rejects(convertToVhd(rawSource(new MemoryBackend(raw), raw.length), new MemoryBackend(), { type: 'dynamic', azure: true }), /Azure takes fixed VHDs only/);
    await assert.rejects(convertToVhd(rawSource(new MemoryBackend(raw), raw.length), new MemoryBackend(), { blockSize: MiB }), /a block size applies to dynamic VHDs only/);
  });

  test('raw output to a stream gets every byte, zeros included', async () => {
    const raw = new Uint8Array(3 * MiB);
    raw[3 * MiB - 1] = 7;
    const chunks: Uint8Array[] = [];
    await convertSourceToRaw(rawSource(new MemoryBackend(raw), raw.length), { kind: 'stream', write: async (d) => void chunks.push(d.slice()) });
    assert.deepEqual(Buffer.concat(chunks), Buffer.from(raw));
  });
});
