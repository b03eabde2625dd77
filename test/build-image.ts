/**
 * The fixture generator: lays out a complete image from the codecs, byte by byte, in one pass. It
 * makes what other tools cannot (4096-byte logical sectors, either region order, legacy states, a log
 * left unreplayed) for tests and for the demo. It is not crash-safe; `create` is the writer for users.
 */
import { MiB, roundUp } from '../src/format/bytes.js';
import { PAYLOAD_BLOCK_FULLY_PRESENT, encodeBatEntry, payloadEntryIndex } from '../src/format/bat.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, LOG_SECTOR_SIZE, REGION_BAT, REGION_METADATA, REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET } from '../src/format/constants.js';
import { encodeFileIdentifier } from '../src/format/file-identifier.js';
import { randomGuid, ZERO_GUID } from '../src/format/guid.js';
import { encodeHeader } from '../src/format/header.js';
import { encodeLogEntry, type LogDescriptor } from '../src/format/log-entry.js';
import { encodeRegionTable } from '../src/format/region-table.js';
import type { Backend } from '../src/io/backend.js';
import { encodeMetadataRegion, planLayout, type ImageParameters } from '../src/ops/layout.js';

export interface BuildSpec {
  virtualSize: number;
  blockSize?: number;
  logicalSectorSize?: 512 | 4096;
  physicalSectorSize?: 512 | 4096;
  /** `fixed` allocates every block and sets LeaveBlockAllocated. */
  type?: 'dynamic' | 'fixed';
  /** `windows`: log, metadata, BAT (as Windows and DiscUtils); `qemu`: log, BAT, metadata. */
  layout?: 'windows' | 'qemu';
  logLength?: number;
  creator?: string;
  /** Virtual writes; every block they touch becomes FULLY_PRESENT (the rest of the block zero). */
  writes?: { offset: number; data: Uint8Array }[];
  /** Force payload block states after the writes (e.g. ZERO, UNMAPPED, the legacy 5). Offset 0. */
  blockStates?: { block: number; state: number }[];
  /**
   * Leave the BAT changes of `writes` in the log instead of in place, as a crash after the log flush
   * would: the file's BAT still says NOT_PRESENT, the log says FULLY_PRESENT. `entries` splits the BAT
   * sectors over that many log entries; `wrap` places the first entry near the end of the ring.
   */
  dirtyLog?: { entries?: number; wrap?: boolean };
}

export async function buildImage(backend: Backend, spec: BuildSpec): Promise<void> {
  const params: ImageParameters = {
    virtualSize: spec.virtualSize,
    blockSize: spec.blockSize ?? 32 * MiB,
    logicalSectorSize: spec.logicalSectorSize ?? 512,
    physicalSectorSize: spec.physicalSectorSize ?? 4096,
    logLength: spec.logLength ?? MiB,
    fixed: spec.type === 'fixed',
  };
  const { blockSize, logLength } = params;
  const fixed = params.fixed;
  const layout = planLayout(params);
  const { geometry, logOffset, batLength } = layout;
  let { metadataOffset, batOffset } = layout;
  if (spec.layout === 'qemu') {
    // QEMU's order: log, BAT, metadata.
    batOffset = logOffset + logLength;
    metadataOffset = batOffset + batLength;
  }
  const metadataLength = layout.metadataLength;
  let nextBlock = roundUp(Math.max(metadataOffset + metadataLength, batOffset + batLength), MiB);

  // BAT: fixed disks get every block in order; dynamic ones allocate on first write.
  const bat = new Uint8Array(batLength);
  const blockOffsets = new Map<number, number>();
  const allocate = (block: number): number => {
    let at = blockOffsets.get(block);
    if (at === undefined) {
      at = nextBlock;
      nextBlock += blockSize;
      blockOffsets.set(block, at);
      encodeBatEntry(bat, payloadEntryIndex(block, geometry.chunkRatio), PAYLOAD_BLOCK_FULLY_PRESENT, at);
    }
    return at;
  };
  if (fixed) for (let b = 0; b < geometry.payloadBlocks; b++) allocate(b);
  const cleanBat = bat.slice();
  for (const w of spec.writes ?? []) {
    for (let pos = w.offset; pos < w.offset + w.data.length; ) {
      const block = Math.floor(pos / blockSize);
      allocate(block);
      pos = (block + 1) * blockSize;
    }
  }
  for (const { block, state } of spec.blockStates ?? []) {
    encodeBatEntry(bat, payloadEntryIndex(block, geometry.chunkRatio), state, 0);
    blockOffsets.delete(block);
  }
  const fileEnd = nextBlock;

  await backend.truncate(0);
  await backend.write(encodeFileIdentifier({ creator: spec.creator ?? 'vhdx fixture generator' }), 0);

  await backend.write(encodeMetadataRegion(params, randomGuid(), metadataLength), metadataOffset);
  const regionTable = encodeRegionTable({
    entries: [
      { guid: REGION_BAT, fileOffset: batOffset, length: batLength, required: true },
      { guid: REGION_METADATA, fileOffset: metadataOffset, length: metadataLength, required: true },
    ],
  });
  await backend.write(regionTable, REGION_TABLE1_OFFSET);
  await backend.write(regionTable, REGION_TABLE2_OFFSET);

  // Payload: every allocated block written in full (zeros where no write lands).
  const blocks = [...blockOffsets.entries()].sort((a, b) => a[1] - b[1]);
  const zero = new Uint8Array(Math.min(blockSize, 8 * MiB));
  for (const [, at] of blocks) {
    for (let done = 0; done < blockSize; done += zero.length) await backend.write(zero, at + done);
  }
  for (const w of spec.writes ?? []) {
    for (let pos = w.offset; pos < w.offset + w.data.length; ) {
      const block = Math.floor(pos / blockSize);
      const blockEnd = Math.min((block + 1) * blockSize, w.offset + w.data.length);
      const at = blockOffsets.get(block);
      if (at !== undefined) await backend.write(w.data.subarray(pos - w.offset, blockEnd - w.offset), at + (pos - block * blockSize));
      pos = blockEnd;
    }
  }
  if ((await backend.size()) < fileEnd) await backend.truncate(fileEnd);

  // Log: all zero unless a dirty log is asked for.
  await backend.write(new Uint8Array(logLength), logOffset);
  let logGuid = ZERO_GUID;
  if (spec.dirtyLog) {
    logGuid = randomGuid();
    await backend.write(cleanBat, batOffset);
    const changed: LogDescriptor[] = [];
    for (let s = 0; s < batLength; s += LOG_SECTOR_SIZE) {
      const sector = bat.subarray(s, s + LOG_SECTOR_SIZE);
      if (!sameBytes(sector, cleanBat.subarray(s, s + LOG_SECTOR_SIZE))) changed.push({ fileOffset: batOffset + s, data: sector.slice() });
    }
    const count = Math.max(1, Math.min(spec.dirtyLog.entries ?? 1, changed.length || 1));
    const per = Math.ceil(changed.length / count);
    const parts = Array.from({ length: count }, (_, i) => changed.slice(i * per, (i + 1) * per));
    const entryBytes = (i: number, tail: number): Uint8Array =>
      encodeLogEntry({ sequenceNumber: 1000n + BigInt(i), tail, logGuid, flushedFileOffset: fileEnd, lastFileOffset: fileEnd, descriptors: parts[i]! });
    const total = parts.reduce((sum, _, i) => sum + entryBytes(i, 0).length, 0);
    // Wrapping: start half the sequence's length before the end of the ring.
    const start = spec.dirtyLog.wrap ? logLength - Math.max(LOG_SECTOR_SIZE, Math.floor(total / 2 / LOG_SECTOR_SIZE) * LOG_SECTOR_SIZE) : 0;
    const encoded = parts.map((_, i) => entryBytes(i, start));
    let at = start;
    for (const entry of encoded) {
      const first = Math.min(entry.length, logLength - at);
      await backend.write(entry.subarray(0, first), logOffset + at);
      if (first < entry.length) await backend.write(entry.subarray(first), logOffset);
      at = (at + entry.length) % logLength;
    }
  } else {
    await backend.write(bat, batOffset);
  }

  const header = { sequenceNumber: 1n, fileWriteGuid: randomGuid(), dataWriteGuid: randomGuid(), logGuid, logVersion: 0, version: 1, logLength, logOffset };
  await backend.write(encodeHeader(header), HEADER1_OFFSET);
  await backend.write(encodeHeader({ ...header, sequenceNumber: 2n }), HEADER2_OFFSET);
  await backend.flush();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
