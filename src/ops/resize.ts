/**
 * Resizing an image in place (what Hyper-V's Resize-VHD does), crash-safe: a power cut at any instant
 * leaves either the image as it was or the resized one, never a third disk (docs/compact.md). Each
 * step is its own session (`LayoutEdit`), closed clean before the next:
 *
 * Growing
 *  1. When the BAT region is too small for the new size: the new region's bytes are written where
 *     nothing is referenced (in place after the old region when that space is free, else at the end of
 *     the file: a copy of the old table, then zeros) and synced; then ONE log entry carries the changed
 *     sectors of both region table copies. Until that entry is durable the old table is what every
 *     reader finds (the new bytes are unreferenced space); once it is, replay installs both copies.
 *     The virtual disk is the same either way.
 *  2. A fixed image gets the payload of its new blocks (zeros, allocated) past everything in use, and
 *     the old last block, when the old size ended inside it, has its tail zeroed (those bytes were
 *     outside the disk and are about to be inside it); all synced.
 *  3. Through the log: the BAT entries of the new blocks first (outside the current geometry, so no
 *     reader sees them yet), the Virtual Disk Size item last. A prefix of that sequence is the old
 *     disk; all of it is the new one.
 *
 * Shrinking
 *  1. The cut range is read first; data there refuses the shrink unless `shrink` says to drop it
 *     (the lost ranges are reported). Nothing is written before that decision.
 *  2. Through the log: the Virtual Disk Size item first, then the entries of the cut blocks cleared. A
 *     prefix is the new disk with a few unreferenced blocks (leaked space), never a third disk.
 *  3. With the log closed clean (nothing can replay a larger file), the freed tail of the file is cut.
 *
 * Differencing images are refused: a child and its parents describe one disk together.
 */
import { MiB, roundUp } from '../format/bytes.js';
import { batGeometry, isSectorBitmapEntryIndex, PAYLOAD_BLOCK_FULLY_PRESENT, payloadEntryIndex } from '../format/bat.js';
import { MAX_VIRTUAL_DISK_SIZE, METADATA_VIRTUAL_DISK_SIZE, REGION_BAT } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { guidEquals } from '../format/guid.js';
import { encodeVirtualDiskSize } from '../format/metadata.js';
import { readFully, type Backend } from '../io/backend.js';
import { fileRangeIsZero } from '../image/image.js';
import { openLayout } from '../image/open.js';
import { lastUsedEnd } from './findings.js';
import { LayoutEdit } from './layout-edit.js';

export interface ResizeOptions {
  /** Allow a shrink to drop data in the cut range (reported in `lost`); without it such a shrink is refused. */
  shrink?: boolean;
  /** Fixed images growing: bytes of new payload allocated so far, of the total. */
  onProgress?: (done: number, total: number) => void;
  /** Checked between steps and while new payload is allocated; the image stays at its old size. */
  signal?: AbortSignal;
}

export interface ResizeReport {
  file: string;
  type: 'dynamic' | 'fixed';
  virtualSizeBefore: number;
  virtualSizeAfter: number;
  fileSizeBefore: number;
  fileSizeAfter: number;
  /** What happened to the BAT region: grown where it was, moved to the end of the file, or left. */
  bat: 'unchanged' | 'grown-in-place' | 'relocated';
  /** Virtual ranges whose data a shrink dropped (only with `shrink`). */
  lost: { offset: number; length: number }[];
}

export async function resize(backend: Backend, virtualSize: number, options: ResizeOptions = {}): Promise<ResizeReport> {
  const file = backend.name;
  const fileSizeBefore = await backend.size();
  let edit = await LayoutEdit.open(backend);
  const { metadata } = edit.layout;
  if (metadata.hasParent) {
    throw new VhdxError('UNSUPPORTED', 'a differencing image cannot be resized on its own: its parent chain describes the same disk', { file });
  }
  const { logicalSectorSize } = metadata;
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize > MAX_VIRTUAL_DISK_SIZE || virtualSize % logicalSectorSize !== 0) {
    throw new VhdxError('INVALID_ARGUMENT', `new size ${virtualSize} is not a non-zero multiple of the ${logicalSectorSize}-byte logical sector up to 64 TiB`, { file });
  }
  const before = metadata.virtualDiskSize;
  const report: ResizeReport = {
    file,
    type: metadata.leaveBlockAllocated ? 'fixed' : 'dynamic',
    virtualSizeBefore: before,
    virtualSizeAfter: virtualSize,
    fileSizeBefore,
    fileSizeAfter: fileSizeBefore,
    bat: 'unchanged',
    lost: [],
  };
  if (virtualSize > before) {
    if (edit.layout.batRegion.length < batGeometry(virtualSize, metadata.blockSize, logicalSectorSize, false).requiredEntries * 8) {
      report.bat = await growBatRegion(edit, batGeometry(virtualSize, metadata.blockSize, logicalSectorSize, false).regionSize);
      await edit.close();
      options.signal?.throwIfAborted();
      edit = await LayoutEdit.open(backend);
    }
    await grow(edit, virtualSize, options);
  } else if (virtualSize < before) {
    report.lost = await shrink(edit, virtualSize, options.shrink ?? false);
  }
  await edit.close();
  if (virtualSize < before) await cutFreedTail(backend, edit);
  report.fileSizeAfter = await backend.size();
  return report;
}

/** Step 1 of growing: a BAT region of `length` bytes, in place or at the end, installed by one log entry. */
async function growBatRegion(edit: LayoutEdit, length: number): Promise<'grown-in-place' | 'relocated'> {
  const region = edit.layout.batRegion;
  const others = edit.used.filter((r) => !(r.start === region.fileOffset && r.end === region.fileOffset + region.length));
  const end = region.fileOffset + length;
  const inPlace = !others.some((r) => r.start < end && region.fileOffset < r.end);
  let target = region.fileOffset;
  if (inPlace) {
    await edit.writeZeros(region.fileOffset + region.length, length - region.length);
  } else {
    target = edit.spaceEnd;
    const table = new Uint8Array(region.length);
    await readFully(edit.backend, table, region.fileOffset);
    await edit.writeData(table, target);
    await edit.writeZeros(target + region.length, length - region.length);
  }
  const entries = edit.layout.regionTable.entries.map((e) => (guidEquals(e.guid, REGION_BAT) ? { ...e, fileOffset: target, length } : e));
  await edit.commit(await edit.regionTableSectors({ entries }), { atomic: true, requiredSize: target + length });
  return inPlace ? 'grown-in-place' : 'relocated';
}

/** Steps 2 and 3 of growing (see the module comment). */
async function grow(edit: LayoutEdit, virtualSize: number, options: ResizeOptions): Promise<void> {
  const { metadata, geometry: old, bat, batRegion } = edit.layout;
  const { blockSize } = metadata;
  const fixed = metadata.leaveBlockAllocated;
  const next = batGeometry(virtualSize, blockSize, metadata.logicalSectorSize, false);
  const newBlocks = next.payloadBlocks - old.payloadBlocks;
  const base = edit.spaceEnd;
  if (fixed && newBlocks > 0) {
    const total = newBlocks * blockSize;
    let done = 0;
    await edit.writeZeros(base, total, options.signal, (n) => options.onProgress?.((done += n), total));
  }
  const tail = metadata.virtualDiskSize % blockSize;
  if (tail !== 0) {
    const last = old.payloadBlocks - 1;
    const { state, offset } = await bat.withBlocks(last, last, () => ({ state: bat.blockState(last), offset: bat.blockOffset(last) }));
    if (state === PAYLOAD_BLOCK_FULLY_PRESENT) await edit.writeZeros(offset + tail, blockSize - tail);
  }
  options.signal?.throwIfAborted();
  const first = payloadEntryIndex(old.payloadBlocks, old.chunkRatio);
  const count = newBlocks > 0 ? payloadEntryIndex(next.payloadBlocks - 1, next.chunkRatio) + 1 - first : 0;
  const entry = (index: number): { state: number; offset: number } => {
    if (!fixed || isSectorBitmapEntryIndex(index, old.chunkRatio)) return { state: 0, offset: 0 };
    const block = index - Math.floor(index / (old.chunkRatio + 1));
    return { state: PAYLOAD_BLOCK_FULLY_PRESENT, offset: base + (block - old.payloadBlocks) * blockSize };
  };
  const batSectors = await edit.batSectors(batRegion.fileOffset, first, entry, count);
  const sizeSectors = await edit.metadataItemSectors(METADATA_VIRTUAL_DISK_SIZE, encodeVirtualDiskSize(virtualSize));
  await edit.commit([...batSectors, ...sizeSectors], { requiredSize: fixed ? base + newBlocks * blockSize : 0 });
}

/** Steps 1 and 2 of shrinking; returns the virtual ranges dropped. */
async function shrink(edit: LayoutEdit, virtualSize: number, allowLoss: boolean): Promise<{ offset: number; length: number }[]> {
  const { metadata, geometry: old, bat, batRegion } = edit.layout;
  const { blockSize } = metadata;
  const before = metadata.virtualDiskSize;
  const lost: { offset: number; length: number }[] = [];
  const buffer = new Uint8Array(Math.min(blockSize, 4 * MiB));
  for (let block = Math.floor(virtualSize / blockSize); block < old.payloadBlocks; block++) {
    const { state, offset } = await bat.withBlocks(block, block, () => ({ state: bat.blockState(block), offset: bat.blockOffset(block) }));
    if (state !== PAYLOAD_BLOCK_FULLY_PRESENT) continue;
    const from = Math.max(virtualSize, block * blockSize);
    const to = Math.min(before, (block + 1) * blockSize);
    if (await fileRangeIsZero(edit.backend, offset + (from - block * blockSize), to - from, buffer)) continue;
    const previous = lost[lost.length - 1];
    if (previous && previous.offset + previous.length === from) previous.length += to - from;
    else lost.push({ offset: from, length: to - from });
  }
  if (lost.length > 0 && !allowLoss) {
    const bytes = lost.reduce((n, r) => n + r.length, 0);
    throw new VhdxError('WOULD_LOSE_DATA', `shrinking to ${virtualSize} bytes would drop ${bytes} bytes of data from virtual offset ${lost[0]!.offset} on (allow it with --shrink)`, { file: edit.file });
  }
  const next = batGeometry(virtualSize, blockSize, metadata.logicalSectorSize, false);
  const sizeSectors = await edit.metadataItemSectors(METADATA_VIRTUAL_DISK_SIZE, encodeVirtualDiskSize(virtualSize));
  const first = payloadEntryIndex(next.payloadBlocks, old.chunkRatio);
  const count = next.payloadBlocks < old.payloadBlocks ? payloadEntryIndex(old.payloadBlocks - 1, old.chunkRatio) + 1 - first : 0;
  const batSectors = await edit.batSectors(batRegion.fileOffset, first, () => ({ state: 0, offset: 0 }), count);
  await edit.commit([...sizeSectors, ...batSectors]);
  return lost;
}

/** Step 3 of shrinking: the file ends after the last thing still referenced, when the shrink freed the end. */
async function cutFreedTail(backend: Backend, edit: LayoutEdit): Promise<void> {
  const oldEnd = roundUp(lastUsedEnd(edit.used), MiB);
  const after = await openLayout(backend, { readOnly: true, collectBatProblems: true });
  const end = roundUp(lastUsedEnd(after.used ?? []), MiB);
  const size = await backend.size();
  if (end < oldEnd && end < size) {
    await backend.truncate(end);
    await backend.flush();
  }
}
