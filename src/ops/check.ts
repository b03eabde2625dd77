/**
 * Consistency check of an image: everything the open path validates (a failure there is corruption),
 * plus what it tolerates (warnings) and file space that nothing references (leaks, reclaimable).
 */
import { MiB } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import type { Backend } from '../io/backend.js';
import { VhdxImage } from '../image/image.js';

export type Severity = 'corruption' | 'leak' | 'warning';

export interface Finding {
  severity: Severity;
  code: string;
  message: string;
  offset?: number;
  length?: number;
}

export interface CheckReport {
  findings: Finding[];
  corruptions: number;
  leaks: number;
  leakedBytes: number;
}

export async function check(backend: Backend): Promise<CheckReport> {
  const findings: Finding[] = [];
  let image: VhdxImage;
  try {
    image = await VhdxImage.open(backend, { readOnly: true });
  } catch (error) {
    if (!(error instanceof VhdxError)) throw error;
    findings.push({ severity: 'corruption', code: error.code, message: error.message, ...(error.offset === undefined ? {} : { offset: error.offset }) });
    return summarize(findings);
  }
  for (const w of image.warnings) findings.push({ severity: 'warning', code: 'TOLERATED', message: w });
  // Leaks: whole MiBs between referenced ranges, or after the last one, that nothing points at.
  const fileSize = image.info().fileSize;
  let cursor = 0;
  const leak = (start: number, end: number): void => {
    const s = Math.ceil(start / MiB) * MiB;
    const e = end >= fileSize ? end : Math.floor(end / MiB) * MiB;
    if (e > s) findings.push({ severity: 'leak', code: 'LEAKED_SPACE', message: `${e - s} bytes at file offset ${s} are not referenced by anything`, offset: s, length: e - s });
  };
  for (const r of image.usedRanges()) {
    if (r.start > cursor) leak(cursor, r.start);
    cursor = Math.max(cursor, r.end);
  }
  if (fileSize > cursor) leak(cursor, fileSize);
  await image.close();
  return summarize(findings);
}

function summarize(findings: Finding[]): CheckReport {
  const leaks = findings.filter((f) => f.severity === 'leak');
  return {
    findings,
    corruptions: findings.filter((f) => f.severity === 'corruption').length,
    leaks: leaks.length,
    leakedBytes: leaks.reduce((n, f) => n + (f.length ?? 0), 0),
  };
}
