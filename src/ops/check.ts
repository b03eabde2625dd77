/**
 * Check and repair (format reference §3-§9). `check` reads only: it inspects each redundant copy on
 * its own (headers, region tables), then opens the image read-only the way readers do (the log applied
 * in memory) but with every bad BAT entry collected instead of fatal, and finally accounts for every
 * byte of the file (leaked space inside it, trailing space after the last structure).
 *
 * `check(backend, { repair: true })` then fixes what can be fixed without losing data a reader could
 * still reach, in crash-safe steps (each step leaves an image that opens; see docs/architecture.md):
 *  1. A writable open replays a dirty log; one header update then rewrites both header copies.
 *  2. A bad region table copy is rewritten from the good one (the other copy stays valid meanwhile).
 *  3. A block cut short by the end of the file gets its missing tail as zeros (the file is extended).
 *  4. Through the log, as any BAT change: entries pointing past the file, into the header section or
 *     into a structure, or with an illegal state, become NOT_PRESENT (their virtual ranges are reported
 *     as lost); a block sharing space with another gets a copy of its own (nothing is lost); leaked
 *     space inside the file is reclaimed by moving the last blocks into it.
 *  5. After the log is closed clean, the unreferenced tail of the file is cut off.
 * The report is then made again, so a repaired image is judged by the same rules.
 */
import {
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
} from '../format/bat.js';
import { MiB } from '../format/bytes.js';
import {
  FILE_IDENTIFIER_OFFSET,
  HEADER_SECTION_SIZE,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
} from '../format/constants.js';
import { VhdxError, type VhdxErrorCode } from '../format/errors.js';
import { decodeFileIdentifier, FILE_IDENTIFIER_DECODED_SIZE } from '../format/file-identifier.js';
import { randomGuid } from '../format/guid.js';
import { decodeRegionTable } from '../format/region-table.js';
import { readFully, writeZeros, type Backend } from '../io/backend.js';
import type { BatProblem, BatProblemKind } from '../image/bat-table.js';
import { HEADER_OFFSETS, readHeaderCopies } from '../image/headers.js';
import { openLayout, type LogState, type OpenedLayout } from '../image/open.js';
import { ImageWriter } from '../image/writer.js';

export type Severity = 'corruption' | 'leak' | 'warning';

/** Stable codes for what a check can find. */
export type FindingCode =
  | 'HEADER_COPY_BAD' // one header copy is unusable (the other is used)
  | 'REGION_TABLE_COPY_BAD' // one region table copy is unusable (the other is used)
  | 'REGION_TABLES_DIFFER' // both copies are valid but differ (copy 1 is used)
  | 'LOG_REPLAY_NEEDED' // the log holds committed changes not yet written to their places
  | 'LOG_UNCOMMITTED' // the log is marked in use but holds nothing committed
  | 'BAT_ILLEGAL_STATE'
  | 'BAT_IN_HEADER_SECTION'
  | 'BAT_PAST_EOF'
  | 'BAT_CUT_SHORT'
  | 'BAT_OVERLAPS_STRUCTURE'
  | 'BAT_OVERLAPS_BLOCK'
  | 'SECTOR_BITMAP_BAD'
  | 'LEAKED_SPACE' // whole MiBs inside the file that nothing references
  | 'TRAILING_SPACE' // bytes after the last structure or block
  | 'TOLERATED' // an oddity readers handle (a warning)
  | VhdxErrorCode; // the image cannot be opened at all: the open path's error code

export interface Finding {
  severity: Severity;
  code: FindingCode;
  message: string;
  /** Where in the file (the structure, the BAT entry, the leaked range). */
  offset?: number;
  length?: number;
  /** Virtual range the finding affects (a bad BAT entry's block). */
  virtualOffset?: number;
  virtualLength?: number;
  /** Whether `repair` fixes it. */
  repairable: boolean;
}

export interface Repair {
  code: FindingCode | 'COMPACTED';
  message: string;
}

export interface CheckReport {
  file: string;
  verdict: 'clean' | 'leaks' | 'corrupt';
  /** As `qemu-img check`: 0 clean, 2 corruption, 3 leaks only. */
  exitCode: 0 | 2 | 3;
  findings: Finding[];
  corruptions: number;
  leaks: number;
  leakedBytes: number;
  warnings: number;
  /** The image's log state as a reader finds it (absent when the image cannot be opened). */
  logState?: LogState;
  /** With `repair`: what the check found before repairing, what was done, and virtual ranges whose data was lost. */
  before?: Finding[];
  repairs?: Repair[];
  lost?: { offset: number; length: number }[];
}

export interface CheckOptions {
  /** Fix what can be fixed (the backend must be writable). The report then describes the repaired image. */
  repair?: boolean;
}

const KIND_CODES: Record<BatProblemKind, FindingCode> = {
  'illegal-state': 'BAT_ILLEGAL_STATE',
  'in-header-section': 'BAT_IN_HEADER_SECTION',
  'past-eof': 'BAT_PAST_EOF',
  'cut-short': 'BAT_CUT_SHORT',
  'overlaps-structure': 'BAT_OVERLAPS_STRUCTURE',
  'overlaps-block': 'BAT_OVERLAPS_BLOCK',
  'bad-sector-bitmap': 'SECTOR_BITMAP_BAD',
};

export async function check(backend: Backend, options: CheckOptions = {}): Promise<CheckReport> {
  const before = await inspect(backend);
  if (!options.repair) return before;
  if (backend.readOnly) throw new VhdxError('READ_ONLY', 'repair needs the image opened for writing', { file: backend.name });
  const wanted = before.findings.filter((f) => f.repairable);
  const fatal = before.findings.some((f) => f.severity === 'corruption' && !f.repairable);
  if (wanted.length === 0 || fatal) return { ...before, before: before.findings, repairs: [], lost: [] };
  const { repairs, lost } = await repair(backend, before);
  const after = await inspect(backend);
  return { ...after, before: before.findings, repairs, lost };
}

// ---------------------------------------------------------------------------------------------- check

async function inspect(backend: Backend): Promise<CheckReport> {
  const file = backend.name;
  const findings: Finding[] = [];
  const fileSize = await backend.size();
  const identifier = new Uint8Array(Math.min(fileSize, FILE_IDENTIFIER_DECODED_SIZE));
  await readFully(backend, identifier, FILE_IDENTIFIER_OFFSET);
  try {
    decodeFileIdentifier(identifier); // not a VHDX at all: there is nothing to check (NOT_VHDX)
  } catch (error) {
    if (error instanceof VhdxError && error.file === undefined) error.file = file;
    throw error;
  }

  if (fileSize >= HEADER_SECTION_SIZE) {
    const copies = await readHeaderCopies(backend);
    copies.forEach((c, i) => {
      if (c.problem !== null) {
        findings.push({ severity: 'corruption', code: 'HEADER_COPY_BAD', message: `header copy ${i + 1} is unusable: ${c.problem}`, offset: HEADER_OFFSETS[i], length: 4096, repairable: true });
      }
    });
    const tables: (Uint8Array | null)[] = [];
    for (const [i, offset] of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET].entries()) {
      const raw = new Uint8Array(REGION_TABLE_SIZE);
      await readFully(backend, raw, offset);
      try {
        decodeRegionTable(raw);
        tables.push(raw);
      } catch (error) {
        if (!(error instanceof VhdxError)) throw error;
        tables.push(null);
        findings.push({ severity: 'corruption', code: 'REGION_TABLE_COPY_BAD', message: `region table copy ${i + 1} is unusable: ${error.message}`, offset, length: REGION_TABLE_SIZE, repairable: true });
      }
    }
    if (tables[0] && tables[1] && !equalBytes(tables[0], tables[1])) {
      findings.push({ severity: 'corruption', code: 'REGION_TABLES_DIFFER', message: 'the two region table copies differ (copy 1 is used)', offset: REGION_TABLE2_OFFSET, length: REGION_TABLE_SIZE, repairable: true });
    }
  }

  let layout: OpenedLayout;
  try {
    layout = await openLayout(backend, { readOnly: true, collectBatProblems: true });
  } catch (error) {
    if (!(error instanceof VhdxError)) throw error;
    // Past this point the image cannot be read by anyone; a repair would be guesswork.
    findings.push({ severity: 'corruption', code: error.code, message: error.message, ...(error.offset === undefined ? {} : { offset: error.offset }), repairable: false });
    return summarize(file, findings);
  }

  if (layout.logState === 'replayed-in-memory') {
    findings.push({ severity: 'warning', code: 'LOG_REPLAY_NEEDED', message: 'the log holds committed changes not yet written in place (normal after a crash; any writable open replays them)', offset: layout.header.logOffset, repairable: true });
  } else if (layout.logState === 'uncommitted') {
    findings.push({ severity: 'warning', code: 'LOG_UNCOMMITTED', message: 'the log is marked in use but holds nothing committed (an interrupted first write); it can be cleared', offset: layout.header.logOffset, repairable: true });
  }
  for (const w of layout.warnings) {
    // Already reported above, with their own codes.
    if (/^(header copy|region table copy|the two region table copies|log .* is marked in use)/.test(w)) continue;
    findings.push({ severity: 'warning', code: 'TOLERATED', message: w, repairable: false });
  }
  const { blockSize, virtualDiskSize } = layout.metadata;
  for (const p of layout.batProblems) {
    const finding: Finding = { severity: 'corruption', code: KIND_CODES[p.kind], message: p.message, offset: p.entryOffset, length: 8, repairable: true };
    if (p.block !== undefined) {
      finding.virtualOffset = p.block * blockSize;
      finding.virtualLength = Math.min(blockSize, virtualDiskSize - p.block * blockSize);
    }
    findings.push(finding);
  }
  // Space a bad entry points at is referenced (badly): it is reported with the entry, not as a leak.
  const referenced: { start: number; end: number }[] = [...layout.used];
  for (const p of layout.batProblems) {
    if (p.block === undefined) continue;
    const offset = layout.bat.blockOffset(p.block);
    if (offset >= HEADER_SECTION_SIZE && offset < fileSize) referenced.push({ start: offset, end: Math.min(offset + blockSize, fileSize) });
  }
  // Space below the first block is layout padding, not a leak: QEMU leaves a gap between its metadata
  // and its first block, and its fixed images preallocate the whole payload area but mark every block
  // ZERO (new blocks then go after it). Writers may still allocate there.
  const firstBlock = layout.used.reduce((m, r) => (r.block !== undefined || r.chunk !== undefined ? Math.min(m, r.start) : m), Infinity);
  for (const leak of unreferenced(referenced, fileSize)) {
    if (leak.start < firstBlock) continue;
    const trailing = leak.end === fileSize && leak.start >= lastUsedEnd(referenced);
    findings.push({
      severity: 'leak',
      code: trailing ? 'TRAILING_SPACE' : 'LEAKED_SPACE',
      message: trailing
        ? `${leak.end - leak.start} bytes after the last structure or block are not used`
        : `${leak.end - leak.start} bytes are not referenced by anything`,
      offset: leak.start,
      length: leak.end - leak.start,
      repairable: true,
    });
  }
  return summarize(file, findings, layout.logState);
}

/** Ranges nothing references: whole MiBs between used ranges, and everything after the last one. */
function unreferenced(used: { start: number; end: number }[], fileSize: number): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  const sorted = [...used].sort((a, b) => a.start - b.start);
  let cursor = 0;
  const gap = (start: number, end: number): void => {
    const s = Math.ceil(start / MiB) * MiB;
    const e = end >= fileSize ? fileSize : Math.floor(end / MiB) * MiB;
    if (e > s) out.push({ start: s, end: e });
    else if (end >= fileSize && fileSize > start) out.push({ start, end: fileSize }); // a partial MiB at the end
  };
  for (const r of sorted) {
    if (r.start >= fileSize) break;
    if (r.start > cursor) gap(cursor, r.start);
    cursor = Math.max(cursor, r.end);
  }
  if (fileSize > cursor) gap(cursor, fileSize);
  return out;
}

function lastUsedEnd(used: { end: number }[]): number {
  return used.reduce((m, r) => Math.max(m, r.end), 0);
}

function summarize(file: string, findings: Finding[], logState?: LogState): CheckReport {
  const corruptions = findings.filter((f) => f.severity === 'corruption').length;
  const leakFindings = findings.filter((f) => f.severity === 'leak');
  const verdict = corruptions > 0 ? 'corrupt' : leakFindings.length > 0 ? 'leaks' : 'clean';
  return {
    file,
    verdict,
    exitCode: verdict === 'corrupt' ? 2 : verdict === 'leaks' ? 3 : 0,
    findings,
    corruptions,
    leaks: leakFindings.length,
    leakedBytes: leakFindings.reduce((n, f) => n + (f.length ?? 0), 0),
    warnings: findings.filter((f) => f.severity === 'warning').length,
    ...(logState === undefined ? {} : { logState }),
  };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// --------------------------------------------------------------------------------------------- repair

async function repair(backend: Backend, before: CheckReport): Promise<{ repairs: Repair[]; lost: { offset: number; length: number }[] }> {
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
  if (valid[0] && (!valid[1] || !equalBytes(raws[0]!, raws[1]!))) {
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
      const offset = layout.bat.blockOffset(p.block!);
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
    const writer = new ImageWriter(backend, layout);
    for (const p of problems) {
      if (p.kind === 'overlaps-block' && p.block !== undefined) {
        const moved = await writer.relocateBlock(p.block!, false);
        repairs.push({ code: 'BAT_OVERLAPS_BLOCK', message: `gave block ${p.block} its own copy at file offset ${moved.to} (it shared space with block ${p.sharedWith})` });
        continue;
      }
      await writer.clearEntry(p.entryIndex);
      const what = p.block !== undefined ? `block ${p.block}` : `sector bitmap ${p.chunk}`;
      repairs.push({ code: KIND_CODES[p.kind], message: `marked ${what} not present (BAT entry ${p.entryIndex}): ${p.message}` });
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
  const writer = new ImageWriter(backend, layout);
  const present: { block: number; offset: number }[] = [];
  for (let block = 0; block < layout.geometry.payloadBlocks; block++) {
    const state = layout.bat.blockState(block);
    if (state === PAYLOAD_BLOCK_FULLY_PRESENT || state === PAYLOAD_BLOCK_PARTIALLY_PRESENT) present.push({ block, offset: layout.bat.blockOffset(block) });
  }
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
  const final = await openLayout(backend, { readOnly: true });
  // An image without blocks keeps its tail: it is preallocation (QEMU's fixed images), not a leak.
  if (!final.used.some((r) => r.block !== undefined)) return;
  const end = Math.ceil(lastUsedEnd(final.used) / MiB) * MiB;
  const size = await backend.size();
  if (size > end) {
    await backend.truncate(end);
    await backend.flush();
    repairs.push({ code: 'TRAILING_SPACE', message: `cut ${size - end} unused bytes off the end of the file` });
  }
}

