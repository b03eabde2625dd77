/**
 * Compacting an image in place (what Hyper-V's Optimize-VHD does), crash-safe and without needing a
 * second copy of the image: the file never grows while blocks move (a block only ever moves into free
 * space below it), so the extra disk space needed is nil.
 *
 * Steps, each leaving an image that opens at any instant (docs/architecture.md, docs/compact.md):
 *  1. `full` only: every fully present block that reads as zeros becomes ZERO, through the log (data
 *     needs no sync: nothing new is written). ZERO reads as zeros in every image type, a differencing
 *     child's included, where it hides the parent as the block did. Its space is released, reusable
 *     once the flush that logs the change is durable. `quick` skips this and only uses space already
 *     free (blocks discarded or unmapped earlier, leaks).
 *  2. Blocks move from the end of the file into the lowest free space below them, one block at a
 *     time: the copy is written, then synced, before the log carries the BAT entry that points at it
 *     (`VhdxImage.relocateBlock` + `flush`); the old place is reused only after that flush. A crash
 *     before the log entry is durable leaves the old entry pointing at the old, intact copy; after it,
 *     the new entry points at a durable copy.
 *  3. With the image closed clean (log empty: no entry can name a larger file any more), the file is
 *     cut after the last byte still referenced.
 *
 * The BAT and metadata regions are not moved (this library's layout puts them first, so they never
 * stand between the blocks and the end). Sector bitmap blocks of differencing images stay where they
 * are. Fixed images are only measured, unless `toDynamic` first turns them dynamic in place: the File
 * Parameters item loses LeaveBlockAllocated through the log (one sector, one entry), which changes
 * nothing a reader sees.
 */
import { MiB, roundUp } from '../format/bytes.js';
import { PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_ZERO } from '../format/bat.js';
import { METADATA_FILE_PARAMETERS } from '../format/constants.js';
import { guidFromString } from '../format/guid.js';
import { encodeFileParameters } from '../format/metadata.js';
import type { Backend } from '../io/backend.js';
import { BlockAllocator } from '../image/allocator.js';
import type { Range } from '../image/bat-table.js';
import { fileRangeIsZero, VhdxImage } from '../image/image.js';
import { openLayout, type OpenedLayout } from '../image/open.js';
import { copyBuffer } from './buffers.js';
import { lastUsedEnd } from './findings.js';
import { LayoutEdit } from './layout-edit.js';

export type CompactMode = 'quick' | 'full';

export interface CompactOptions {
  /** `full` (default) also unmaps blocks that read as zeros; `quick` only reuses space already free. */
  mode?: CompactMode;
  /** Measure only: nothing is written (the image may be opened read-only). */
  dryRun?: boolean;
  /** Fixed images: convert to dynamic in place first (otherwise a fixed image is only measured). */
  toDynamic?: boolean;
  /** Bytes scanned (full mode) plus bytes moved, of the expected total. */
  onProgress?: (done: number, total: number) => void;
  /** Checked between blocks: the image is flushed and closed clean, then the call rejects with its reason. */
  signal?: AbortSignal;
}

export interface CompactReport {
  file: string;
  type: 'dynamic' | 'fixed' | 'differencing';
  mode: CompactMode;
  dryRun: boolean;
  /** Whether the image was changed (false for a dry run and for a fixed image left fixed). */
  changed: boolean;
  fileSizeBefore: number;
  fileSizeAfter: number;
  /** Bytes the file lost; for a dry run or a fixed image, what a compaction would reclaim. */
  bytesReclaimed: number;
  /** Fully present blocks found reading as zeros (full mode). */
  zeroBlocks: number;
  /** Blocks moved down (or that would be). */
  blocksMoved: number;
  convertedToDynamic: boolean;
  /** Whether the BAT or metadata region was moved (never, see the module comment). */
  regionsMoved: boolean;
  notes: string[];
}

/** Blocks moved between two flushes: bounds both the log entry and the work a crash can lose. */
const MOVE_BYTES_PER_FLUSH = 256 * MiB;

export async function compact(backend: Backend, options: CompactOptions = {}): Promise<CompactReport> {
  const mode = options.mode ?? 'full';
  const fileSizeBefore = await backend.size();
  const probe = await openLayout(backend, { readOnly: true, collectBatProblems: true });
  const type = probe.metadata.hasParent ? 'differencing' : probe.metadata.leaveBlockAllocated ? 'fixed' : 'dynamic';
  const report: CompactReport = {
    file: backend.name,
    type,
    mode,
    dryRun: options.dryRun ?? false,
    changed: false,
    fileSizeBefore,
    fileSizeAfter: fileSizeBefore,
    bytesReclaimed: 0,
    zeroBlocks: 0,
    blocksMoved: 0,
    convertedToDynamic: false,
    regionsMoved: false,
    notes: [],
  };
  if (type === 'differencing') report.notes.push('sector bitmap blocks are not moved');
  const plan = await planCompaction(backend, probe, mode, options);
  if (options.dryRun || (type === 'fixed' && !options.toDynamic)) {
    report.zeroBlocks = plan.zeroBlocks;
    report.blocksMoved = plan.moves;
    report.bytesReclaimed = Math.max(0, fileSizeBefore - plan.end);
    if (type === 'fixed' && !options.toDynamic) report.notes.push('a fixed image keeps every block: nothing was changed (--to-dynamic converts it in place first)');
    return report;
  }
  if (type === 'fixed') {
    await toDynamic(backend);
    report.convertedToDynamic = true;
  }
  const image = VhdxImage.overLayout(backend, await openLayout(backend, { readOnly: false }));
  // Moving blocks and unmapping zeros change nothing a reader sees: children keep their linkage.
  image.presetDataWriteGuid(guidFromString(image.info().dataWriteGuid));
  let stopped: unknown = null;
  try {
    const { blockSize } = image;
    const total = (mode === 'full' ? plan.scanBlocks : 0) * blockSize + plan.moves * blockSize;
    let done = 0;
    if (mode === 'full') {
      const buffer = copyBuffer(Math.min(blockSize, 4 * MiB));
      for (const b of await image.presentBlocks()) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (b.state !== PAYLOAD_BLOCK_FULLY_PRESENT && type !== 'differencing') continue;
        if (await image.reclaimZeroBlock(b.block, PAYLOAD_BLOCK_ZERO, buffer)) report.zeroBlocks++;
        options.onProgress?.((done += blockSize), total);
      }
      await image.flush(); // the freed space becomes usable for the moves
    }
    const blocks = (await image.presentBlocks()).sort((a, b) => b.offset - a.offset);
    let sinceFlush = 0;
    for (const b of blocks) {
      if (options.signal?.aborted) throw options.signal.reason;
      const free = image.lowestFreeBlock();
      if (free === null || free >= b.offset) break;
      await image.relocateBlock(b.block, true);
      report.blocksMoved++;
      options.onProgress?.((done += blockSize), Math.max(total, done));
      sinceFlush += blockSize;
      if (sinceFlush >= MOVE_BYTES_PER_FLUSH) {
        await image.flush();
        sinceFlush = 0;
      }
    }
  } catch (error) {
    stopped = error;
  }
  // Stopped or done: what was done is made durable and the log left empty before anything else.
  await image.close();
  await backend.flush();
  report.changed = true;
  if (stopped !== null) throw stopped;
  await cutTail(backend);
  report.fileSizeAfter = await backend.size();
  report.bytesReclaimed = fileSizeBefore - report.fileSizeAfter;
  return report;
}

/** Fixed to dynamic: LeaveBlockAllocated cleared through the log, in one entry. */
async function toDynamic(backend: Backend): Promise<void> {
  const edit = await LayoutEdit.open(backend, { visible: false });
  const { blockSize, hasParent } = edit.layout.metadata;
  const sectors = await edit.metadataItemSectors(METADATA_FILE_PARAMETERS, encodeFileParameters({ blockSize, leaveBlockAllocated: false, hasParent }));
  await edit.commit(sectors, { atomic: true });
  await edit.close();
}

/** Step 3: the file ends after the last referenced byte (only after the image closed clean). */
async function cutTail(backend: Backend): Promise<void> {
  const layout = await openLayout(backend, { readOnly: true, collectBatProblems: true });
  const end = roundUp(lastUsedEnd(layout.used ?? []), MiB);
  if ((await backend.size()) > end) {
    await backend.truncate(end);
    await backend.flush();
  }
}

/**
 * What a compaction would do, read only: in full mode which fully present blocks read as zeros, then
 * the same moves the real run makes (the lowest free space first, the last block first) on a copy of
 * the allocator's view. Also gives the progress total of a real run.
 */
async function planCompaction(backend: Backend, layout: OpenedLayout, mode: CompactMode, options: CompactOptions): Promise<{ zeroBlocks: number; scanBlocks: number; moves: number; end: number }> {
  const { blockSize } = layout.metadata;
  const used: Range[] = layout.used ?? [];
  const zero = new Set<number>();
  let scanBlocks = 0;
  if (mode === 'full') {
    const buffer = copyBuffer(Math.min(blockSize, 4 * MiB));
    for (const r of used) {
      if (r.block === undefined) continue;
      const block = r.block;
      const state = await layout.bat.withBlocks(block, block, () => layout.bat.blockState(block));
      if (state !== PAYLOAD_BLOCK_FULLY_PRESENT) continue;
      scanBlocks++;
      // A real run reads every block anyway: only a dry run (or a fixed image) reads them here.
      if ((options.dryRun || (layout.metadata.leaveBlockAllocated && !options.toDynamic)) && (await fileRangeIsZero(backend, r.start, blockSize, buffer))) zero.add(block);
    }
  }
  const kept = used.filter((r) => r.block === undefined || !zero.has(r.block));
  const allocator = new BlockAllocator(blockSize, kept);
  const blocks = kept.filter((r) => r.block !== undefined).sort((a, b) => b.start - a.start);
  const ends = kept.filter((r) => r.block === undefined).map((r) => r.end);
  let moves = 0;
  for (const r of blocks) {
    const free = allocator.lowestFree();
    if (free === null || free >= r.start) {
      ends.push(r.end);
      continue;
    }
    ends.push(allocator.allocate() + blockSize);
    moves++;
  }
  return { zeroBlocks: zero.size, scanBlocks, moves, end: roundUp(ends.reduce((m, e) => Math.max(m, e), 0), MiB) };
}
