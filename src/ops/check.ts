/**
 * Check and repair (format reference §3-§9). `check` reads only: it inspects each redundant copy on
 * its own (headers, region tables), then opens the image read-only the way readers do (the log applied
 * in memory) but with every bad BAT entry collected instead of fatal, and finally accounts for every
 * byte of the file (leaked space inside it, trailing space after the last structure).
 *
 * `check(backend, { repair: true })` then fixes what can be fixed without losing data a reader could
 * still reach (`repair.ts`), and the report is made again, so a repaired image is judged by the same
 * rules.
 */
import { bytesEqual } from '../format/bytes.js';
import {
  FILE_IDENTIFIER_OFFSET,
  HEADER_SECTION_SIZE,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
} from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { decodeFileIdentifier, FILE_IDENTIFIER_DECODED_SIZE } from '../format/file-identifier.js';
import { readFully, type Backend } from '../io/backend.js';
import { HEADER_OFFSETS, readHeaderCopies, type HeaderCopy } from '../image/headers.js';
import { judgeRegionTables, openLayout, type OpenedLayout, type RegionTableCopy } from '../image/open.js';
import { BAT_FINDING_CODES, lastUsedEnd, summarize, unreferenced, type CheckOptions, type CheckReport, type Finding } from './findings.js';
import { repair } from './repair.js';

export type { CheckOptions, CheckReport, Finding, FindingCode, Repair, Severity } from './findings.js';

export async function check(backend: Backend, options: CheckOptions = {}): Promise<CheckReport> {
  const before = await inspect(backend, options.onProgress);
  if (!options.repair) return before;
  if (backend.readOnly) throw new VhdxError('READ_ONLY', 'repair needs the image opened for writing', { file: backend.name });
  const wanted = before.findings.filter((f) => f.repairable);
  const fatal = before.findings.some((f) => f.severity === 'corruption' && !f.repairable);
  if (wanted.length === 0 || fatal) return { ...before, before: before.findings, repairs: [], lost: [] };
  const { repairs, lost } = await repair(backend, before);
  const after = await inspect(backend, options.onProgress);
  return { ...after, before: before.findings, repairs, lost };
}

// ---------------------------------------------------------------------------------------------- check

async function inspect(backend: Backend, onProgress?: (fraction: number) => void): Promise<CheckReport> {
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

  let layout: OpenedLayout;
  try {
    layout = await openLayout(backend, { readOnly: true, collectBatProblems: true, ...(onProgress ? { onBatProgress: onProgress } : {}) });
  } catch (error) {
    if (!(error instanceof VhdxError)) throw error;
    // Past this point the image cannot be read by anyone; a repair would be guesswork. Each redundant
    // copy is still judged on its own, for the report.
    if (fileSize >= HEADER_SECTION_SIZE) {
      const raws: Uint8Array[] = [];
      for (const offset of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET]) {
        const raw = new Uint8Array(REGION_TABLE_SIZE);
        await readFully(backend, raw, offset);
        raws.push(raw);
      }
      findings.push(...headerFindings(await readHeaderCopies(backend)), ...regionTableFindings(judgeRegionTables(raws)));
    }
    findings.push({ severity: 'corruption', code: error.code, message: error.message, ...(error.offset === undefined ? {} : { offset: error.offset }), repairable: false });
    return summarize(file, findings);
  }
  // The copies as the open read and judged them. A log not yet replayed may be rewriting the region
  // tables (a BAT region grown or moved): they are judged as every reader sees them, with the log
  // applied, not as a crash left them half written.
  findings.push(...headerFindings(layout.headerCopies), ...regionTableFindings(layout.regionTableCopies));
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
    const finding: Finding = { severity: 'corruption', code: BAT_FINDING_CODES[p.kind], message: p.message, offset: p.entryOffset, length: 8, repairable: true };
    if (p.block !== undefined) {
      finding.virtualOffset = p.block * blockSize;
      finding.virtualLength = Math.min(blockSize, virtualDiskSize - p.block * blockSize);
    }
    findings.push(finding);
  }
  // Space a bad entry points at is referenced (badly): it is reported with the entry, not as a leak.
  const used = layout.used ?? []; // collectBatProblems: the whole table was inspected
  const referenced: { start: number; end: number }[] = [...used];
  for (const p of layout.batProblems) {
    if (p.block === undefined) continue;
    const offset = await layout.bat.blockOffsetOf(p.block);
    if (offset >= HEADER_SECTION_SIZE && offset < fileSize) referenced.push({ start: offset, end: Math.min(offset + blockSize, fileSize) });
  }
  // Space below the first block is layout padding, not a leak: QEMU leaves a gap between its metadata
  // and its first block, and its fixed images preallocate the whole payload area but mark every block
  // ZERO (new blocks then go after it). Writers may still allocate there.
  const firstBlock = used.reduce((m, r) => (r.block !== undefined || r.chunk !== undefined ? Math.min(m, r.start) : m), Infinity);
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

function headerFindings(copies: HeaderCopy[]): Finding[] {
  return copies.flatMap((c, i) =>
    c.problem === null ? [] : [{ severity: 'corruption', code: 'HEADER_COPY_BAD', message: `header copy ${i + 1} is unusable: ${c.problem}`, offset: HEADER_OFFSETS[i], length: 4096, repairable: true } satisfies Finding],
  );
}

/** Each region table copy as judged on its own, then the two compared. */
function regionTableFindings(copies: RegionTableCopy[]): Finding[] {
  const findings: Finding[] = [];
  copies.forEach((c, i) => {
    if (c.problem !== null) {
      const offset = i === 0 ? REGION_TABLE1_OFFSET : REGION_TABLE2_OFFSET;
      findings.push({ severity: 'corruption', code: 'REGION_TABLE_COPY_BAD', message: `region table copy ${i + 1} is unusable: ${c.problem}`, offset, length: REGION_TABLE_SIZE, repairable: true });
    }
  });
  if (copies[0]?.table && copies[1]?.table && !bytesEqual(copies[0].raw, copies[1].raw)) {
    findings.push({ severity: 'corruption', code: 'REGION_TABLES_DIFFER', message: 'the two region table copies differ (copy 1 is used)', offset: REGION_TABLE2_OFFSET, length: REGION_TABLE_SIZE, repairable: true });
  }
  return findings;
}
