/**
 * Checking a VHD (v1): read only, reported as `check` reports a VHDX (`CheckReport`, the same codes
 * and exit statuses). Opening it already judges every structure on its own (footer and dynamic header
 * checksums, a table inside the file, each block inside the file and clear of the header and table);
 * what only the whole file shows is judged here: blocks overlapping each other or running into the
 * footer at the end, and space nothing references (whole MiBs, as for VHDX). There is no repair.
 */
import { VhdxError } from '../format/errors.js';
import type { Backend } from '../io/backend.js';
import { vhdBatBytes, VHD_SECTOR_SIZE, VHD_UNALLOCATED } from '../vhd/bat.js';
import { VHD_DYNAMIC_HEADER_SIZE } from '../vhd/dynamic-header.js';
import { VHD_FOOTER_SIZE } from '../vhd/footer.js';
import { VhdImage } from '../vhd/image.js';
import { summarize, unreferenced, type CheckReport, type Finding } from './findings.js';

interface Used {
  start: number;
  end: number;
  block?: number;
}

export async function checkVhd(backend: Backend): Promise<CheckReport> {
  const file = backend.name;
  const findings: Finding[] = [];
  let image: VhdImage;
  try {
    image = await VhdImage.open(backend);
  } catch (error) {
    if (!(error instanceof VhdxError)) throw error;
    findings.push({ severity: 'corruption', code: error.code, message: error.message, ...(error.offset === undefined ? {} : { offset: error.offset }), repairable: false });
    return summarize(file, findings);
  }
  for (const w of image.warnings) findings.push({ severity: 'warning', code: 'TOLERATED', message: w, repairable: false });
  const fileSize = image.fileBytes;
  const footerAt = fileSize - VHD_FOOTER_SIZE;
  const used: Used[] = [{ start: footerAt, end: fileSize }];
  const layout = image.layout();
  if (!layout) {
    used.push({ start: 0, end: image.virtualSize });
  } else {
    const { header, bat, bitmapBytes, headerOffset } = layout;
    used.push({ start: 0, end: VHD_FOOTER_SIZE }, { start: headerOffset, end: headerOffset + VHD_DYNAMIC_HEADER_SIZE });
    used.push({ start: header.tableOffset, end: header.tableOffset + vhdBatBytes(header.maxTableEntries) });
    for (const l of header.parentLocators) {
      // Platform Data Space is bytes as Windows writes it (sectors in the specification's text).
      if (l.dataOffset > 0 && l.dataLength > 0) used.push({ start: l.dataOffset, end: l.dataOffset + Math.max(l.dataLength, l.dataSpace >= l.dataLength ? l.dataSpace : l.dataSpace * VHD_SECTOR_SIZE) });
    }
    const blocks: Used[] = [];
    bat.forEach((entry, block) => {
      if (entry === VHD_UNALLOCATED) return;
      const start = entry * VHD_SECTOR_SIZE;
      blocks.push({ start, end: start + bitmapBytes + Math.min(header.blockSize, image.virtualSize - block * header.blockSize), block });
    });
    blocks.sort((a, b) => a.start - b.start);
    let furthest: Used | null = null;
    for (const b of blocks) {
      const virtual = { virtualOffset: b.block! * header.blockSize, virtualLength: Math.min(header.blockSize, image.virtualSize - b.block! * header.blockSize) };
      if (furthest && b.start < furthest.end) {
        findings.push({ severity: 'corruption', code: 'BAT_OVERLAPS_BLOCK', message: `block ${b.block} (file offset ${b.start}) overlaps block ${furthest.block} (file offset ${furthest.start}): writing one changes the other`, offset: header.tableOffset + 4 * b.block!, length: 4, ...virtual, repairable: false });
      }
      if (b.end > footerAt) {
        findings.push({ severity: 'corruption', code: 'BAT_PAST_EOF', message: `block ${b.block} (file offset ${b.start}) runs into the footer at the end of the file: the file was cut short`, offset: header.tableOffset + 4 * b.block!, length: 4, ...virtual, repairable: false });
      }
      if (!furthest || b.end > furthest.end) furthest = b;
    }
    used.push(...blocks);
  }
  for (const gap of unreferenced(used, footerAt, { tail: false })) {
    findings.push({ severity: 'leak', code: 'LEAKED_SPACE', message: `${gap.end - gap.start} bytes are not referenced by anything`, offset: gap.start, length: gap.end - gap.start, repairable: false });
  }
  return summarize(file, findings);
}
