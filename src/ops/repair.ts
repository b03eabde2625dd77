/**
 * Repair (`check(backend, { repair: true })`): fixes what can be fixed without losing data a reader
 * could still reach, in crash-safe steps (each step leaves an image that opens; see
 * docs/architecture.md):
 *  1. A writable open replays a dirty log; one header update then rewrites both header copies.
 *  2. A bad region table copy is rewritten from the good one (the other copy stays valid meanwhile).
 *  3. A block cut short by the end of the file gets its missing tail as zeros (the file is extended).
 *  4. Through the log, as any BAT change: entries pointing past the file, into the header section or
 *     into a structure, or with an illegal state, become NOT_PRESENT (their virtual ranges are reported
 *     as lost); a block sharing space with another gets a copy of its own (nothing is lost); leaked
 *     space inside the file is reclaimed by moving the last blocks into it.
 *  5. After the log is closed clean, the unreferenced tail of the file is cut off.
 */
import { bytesEqual, MiB } from '../format/bytes.js';
import { REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET, REGION_TABLE_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { randomGuid } from '../format/guid.js';
import { decodeRegionTable } from '../format/region-table.js';
import { readFully, writeZeros, type Backend } from '../io/backend.js';
import type { BatProblem } from '../image/bat-table.js';
import { readHeaderCopies } from '../image/headers.js';
import { openLayout, type OpenedLayout } from '../image/open.js';
import { VhdxImage } from '../image/image.js';
import { BAT_FINDING_CODES, lastUsedEnd, type CheckReport, type FindingCode, type Repair } from './findings.js';

/**
 * The part of the write path repair needs: BAT entries cleared and blocks moved, both through the log,
 * where free space is, and the close that makes it durable.
 */
type BlockRepairs = Pick<VhdxImage, 'clearBatEntry' | 'relocateBlock' | 'lowestFreeBlock' | 'close'>;

function blockRepairs(backend: Backend, layout: OpenedLayout): BlockRepairs {
  return VhdxImage.overLayout(backend, layout);
}

export async function repair(backend: Backend, before: CheckReport): Promise<{ repairs: Repair[]; lost: { offset: number; length: number }[] }> {
  const repairs: Repair[] = [];
  const lost: { offset: number; length: number }[] = [];
  const has = (code: FindingCode): boolean => before.findings.some((f) => f.code === code);

  // Step 1: the writable open replays a dirty log (or clears an uncommitted one).
  let layout = await openLayout(backend, { readOnly: false, collectBatProblems: true });
  if (layout.logState === 'replayed') repairs.push({ code: 'LOG_REPLAY_NEEDED', message: 'replayed the log' });
  if (layout.logState === 'uncommitted') repairs.push({ code: 'LOG_UNCOMMITTED', message: 'cleared the log marker' });
  // One header update writes both copies (§3.3), so a bad copy is replaced by a good one. It also
  // installs fresh write GUIDs, as every session that changes the file must before changing it.
  await layout.headerWriter.update({ fileWriteGuid: randomGuid(), dataWriteGuid: randomGuid() });
  if ((await readHeaderCopies(backend)).some((c) => c.problem !== null)) {
    throw new VhdxError('IO', 'a header copy is still unreadable after it was rewritten', { file: backend.name });
  }
  if (has('HEADER_COPY_BAD')) repairs.push({ code: 'HEADER_COPY_BAD', message: 'rewrote both header copies from the current one' });

  // Step 2: region tables. The valid copy (copy 1 when both are valid) is written over the other.
  const raws = [new Uint8Array(REGION_TABLE_SIZE), new Uint8Array(REGION_TABLE_SIZE)];
  await readFully(backend, raws[0]!, REGION_TABLE1_OFFSET);
  await readFully(backend, raws[1]!, REGION_TABLE2_OFFSET);
  const valid = raws.map((raw) => {
    try {
      decodeRegionTable(raw);
      return true;
    } catch {
      return false;
    }
  });
  if (valid[0] && (!valid[1] || !bytesEqual(raws[0]!, raws[1]!))) {
    await backend.write(raws[0]!, REGION_TABLE2_OFFSET);
    await backend.flush();
    repairs.push({ code: valid[1] ? 'REGION_TABLES_DIFFER' : 'REGION_TABLE_COPY_BAD', message: 'rewrote region table copy 2 from copy 1' });
  } else if (!valid[0] && valid[1]) {
    await backend.write(raws[1]!, REGION_TABLE1_OFFSET);
    await backend.flush();
    repairs.push({ code: 'REGION_TABLE_COPY_BAD', message: 'rewrote region table copy 1 from copy 2' });
  }

  // Step 3: blocks cut short by the end of the file keep what they hold; the rest becomes zeros.
  const { blockSize, virtualDiskSize } = layout.metadata;
  const cutShort = layout.batProblems.filter((p) => p.kind === 'cut-short');
  if (cutShort.length > 0) {
    const fileSize = await backend.size();
    let end = fileSize;
    for (const p of cutShort) {
      const offset = await layout.bat.blockOffsetOf(p.block!);
      end = Math.max(end, offset + blockSize);
      const missingFrom = p.block! * blockSize + (fileSize - offset);
      const blockEnd = Math.min((p.block! + 1) * blockSize, virtualDiskSize);
      lost.push({ offset: missingFrom, length: blockEnd - missingFrom });
    }
    await writeZeros(backend, fileSize, end - fileSize);
    await backend.flush();
    repairs.push({ code: 'BAT_CUT_SHORT', message: `extended the file from ${fileSize} to ${end} bytes with zeros for ${cutShort.length} block(s) cut short` });
    layout = await openLayout(backend, { readOnly: false, collectBatProblems: true });
  }

  // Step 4: BAT entries, through the log.
  const problems: BatProblem[] = layout.batProblems;
  if (problems.length > 0) {
    const writer = blockRepairs(backend, layout);
    for (const p of problems) {
      if (p.kind === 'overlaps-block' && p.block !== undefined) {
        const moved = await writer.relocateBlock(p.block!, false);
        repairs.push({ code: 'BAT_OVERLAPS_BLOCK', message: `gave block ${p.block} its own copy at file offset ${moved.to} (it shared space with block ${p.sharedWith})` });
        continue;
      }
      await writer.clearBatEntry(p.entryIndex);
      const what = p.block !== undefined ? `block ${p.block}` : `sector bitmap ${p.chunk}`;
      repairs.push({ code: BAT_FINDING_CODES[p.kind], message: `marked ${what} not present (BAT entry ${p.entryIndex}): ${p.message}` });
      if (p.block !== undefined) {
        const offset = p.block * blockSize;
        lost.push({ offset, length: Math.min(blockSize, virtualDiskSize - offset) });
      }
    }
    await writer.close(); // data sync, one log entry, apply, then the log is left empty
  }

  // Step 4b: leaked space inside the file (found before, or left by entries cleared above) is
  // reclaimed by moving the last blocks down into it, while that is lower than where they are.
  if (has('LEAKED_SPACE') || problems.length > 0) await compact(backend, repairs);

  // Step 5: with the log closed clean, nothing refers past the last used byte: cut the tail off.
  await trimTail(backend, repairs);
  lost.sort((a, b) => a.offset - b.offset);
  return { repairs, lost };
}

async function compact(backend: Backend, repairs: Repair[]): Promise<void> {
  const layout = await openLayout(backend, { readOnly: false, collectBatProblems: true });
  const writer = blockRepairs(backend, layout);
  // Every present block, from the inspection of the whole table (bad entries are not among them).
  const present = (layout.used ?? []).filter((r) => r.block !== undefined).map((r) => ({ block: r.block!, offset: r.start }));
  present.sort((a, b) => b.offset - a.offset);
  let moved = 0;
  for (const { block, offset } of present) {
    const free = writer.lowestFreeBlock();
    if (free === null || free >= offset) break;
    await writer.relocateBlock(block, true);
    moved++;
  }
  await writer.close();
  if (moved > 0) repairs.push({ code: 'COMPACTED', message: `moved ${moved} block(s) down into unreferenced space inside the file` });
}

async function trimTail(backend: Backend, repairs: Repair[]): Promise<void> {
  const final = await openLayout(backend, { readOnly: true, collectBatProblems: true }); // every used range
  const unrepaired = final.batProblems[0];
  if (unrepaired) throw new VhdxError(unrepaired.code, unrepaired.message, { file: backend.name, offset: unrepaired.entryOffset });
  const used = final.used ?? [];
  // An image without blocks keeps its tail: it is preallocation (QEMU's fixed images), not a leak.
  if (!used.some((r) => r.block !== undefined)) return;
  const end = Math.ceil(lastUsedEnd(used) / MiB) * MiB;
  const size = await backend.size();
  if (size > end) {
    await backend.truncate(end);
    await backend.flush();
    repairs.push({ code: 'TRAILING_SPACE', message: `cut ${size - end} unused bytes off the end of the file` });
  }
}
