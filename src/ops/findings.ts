/** What `check` reports and `repair` acts on: findings, their codes and the report, shared by both. */
import { MiB } from '../format/bytes.js';
import type { VhdxErrorCode } from '../format/errors.js';
import type { BatProblemKind } from '../image/bat-table.js';
import type { LogState } from '../image/open.js';

/** How bad a finding is. */
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
  /**
   * Told how far the check has come, as a fraction of the image's block table scanned (0 to 1): the
   * part of a check whose time grows with the disk's size. A repair scans again after fixing.
   */
  onProgress?: (fraction: number) => void;
}

export const BAT_FINDING_CODES: Record<BatProblemKind, FindingCode> = {
  'illegal-state': 'BAT_ILLEGAL_STATE',
  'in-header-section': 'BAT_IN_HEADER_SECTION',
  'past-eof': 'BAT_PAST_EOF',
  'cut-short': 'BAT_CUT_SHORT',
  'overlaps-structure': 'BAT_OVERLAPS_STRUCTURE',
  'overlaps-block': 'BAT_OVERLAPS_BLOCK',
  'bad-sector-bitmap': 'SECTOR_BITMAP_BAD',
};

export function lastUsedEnd(used: { end: number }[]): number {
  return used.reduce((m, r) => Math.max(m, r.end), 0);
}

export function summarize(file: string, findings: Finding[], logState?: LogState): CheckReport {
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

/**
 * Ranges nothing references below `limit`: whole MiBs between used ranges, and everything after the
 * last one. With `tail: false` the end is a boundary like any other (whole MiBs only): what follows
 * `limit` (a VHD's footer) is used.
 */
export function unreferenced(used: { start: number; end: number }[], limit: number, options: { tail?: boolean } = {}): { start: number; end: number }[] {
  const tail = options.tail ?? true;
  const out: { start: number; end: number }[] = [];
  const sorted = [...used].sort((a, b) => a.start - b.start);
  let cursor = 0;
  const gap = (start: number, end: number): void => {
    const s = Math.ceil(start / MiB) * MiB;
    const e = tail && end >= limit ? limit : Math.floor(end / MiB) * MiB;
    if (e > s) out.push({ start: s, end: e });
    else if (tail && end >= limit && limit > start) out.push({ start, end: limit }); // a partial MiB at the end
  };
  for (const r of sorted) {
    if (r.start >= limit) break;
    if (r.start > cursor) gap(cursor, r.start);
    cursor = Math.max(cursor, r.end);
  }
  if (limit > cursor) gap(cursor, limit);
  return out;
}
