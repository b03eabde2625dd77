/**
 * The image inspector page: a .vhdx/.avhdx file chosen or dropped here is read lazily in the browser
 * (Blob.slice through BlobBackend), or, when the page is opened as `?image=URL&name=NAME` (what
 * `vhdx web FILE` prints), through HTTP Range requests (`HttpBackend`, the library's HTTP reader). Nothing
 * is uploaded and nothing is written.
 */
import { BlobBackend } from '../src/io/blob.js';
import { HttpBackend } from '../src/io/http.js';
import { guidToString } from '../src/format/guid.js';
import type { Finding } from '../src/ops/check.js';
import { AllocationMap, blockRangeText } from './allocation-map.js';
import { byId, definitions, h, table } from './dom.js';
import { checksumText, hex, hexDump, humanSize, offsetText, sizeAndBytes } from './format.js';
import { blockStateName, inspect, problemOf, sectorsPresent, type Inspection, type Problem } from './model.js';

/** A backend that counts what it read from its source (a chosen file, or `vhdx web`'s HTTP server). */
type CountedBackend = BlobBackend | HttpBackend;

/** Reads of the source and their bytes, whichever the backend. */
function sourceReads(backend: CountedBackend): { reads: number; bytes: number } {
  return backend instanceof HttpBackend ? { reads: backend.stats.requests, bytes: backend.stats.bytes } : { reads: backend.stats.blobReads, bytes: backend.stats.blobBytes };
}

interface Loaded {
  backend: CountedBackend;
  inspection: Inspection;
  map: AllocationMap | null;
}

let loaded: Loaded | null = null;
/** Each load gets a number; a slower earlier load finishing late must not overwrite a newer one. */
let generation = 0;

const status = byId('status');
const errorBox = byId('error');
const report = byId('report');

function showError(problem: Problem | string): void {
  errorBox.textContent = typeof problem === 'string' ? problem : `${problem.message} (${problem.code})`;
  errorBox.hidden = false;
}

function section(id: string, title: string, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const heading = h('h2', { id: `${id}-heading` }, title);
  return h('section', { id, class: `card card-${id}`, 'aria-labelledby': `${id}-heading` }, heading, ...children);
}

function unavailable(problem: Problem | null, what: string): HTMLElement {
  return h('p', { class: 'problem' }, `${what} unavailable: ${problem ? `${problem.message} (${problem.code})` : 'the layout could not be read (see the summary)'}`);
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

// ------------------------------------------------------------------------------------------- loading

async function load(open: () => Promise<CountedBackend>, name: string): Promise<void> {
  const mine = ++generation;
  errorBox.hidden = true;
  status.textContent = `Reading ${name}…`;
  report.setAttribute('aria-busy', 'true');
  const previous = loaded;
  loaded = null;
  previous?.map?.dispose();
  await previous?.backend.close();
  const started = performance.now();
  let backend: CountedBackend;
  let inspection: Inspection;
  try {
    backend = await open();
    inspection = await inspect(backend);
  } catch (error) {
    if (mine !== generation) return;
    report.hidden = true;
    report.removeAttribute('aria-busy');
    status.textContent = '';
    showError(problemOf(error));
    return;
  }
  if (mine !== generation) return;
  const elapsed = Math.round(performance.now() - started);
  report.replaceChildren();
  report.removeAttribute('aria-busy');
  if (inspection.fatal) {
    report.hidden = true;
    status.textContent = '';
    showError(`${name} cannot be inspected: ${inspection.fatal.message} (${inspection.fatal.code})`);
    return;
  }
  loaded = { backend, inspection, map: null };
  render(loaded);
  report.hidden = false;
  report.dataset.file = name;
  report.dataset.loadMs = String(elapsed);
  status.textContent = `Inspected ${name} in ${elapsed} ms.`;
  updateBytesRead();
}

function updateBytesRead(): void {
  const field = document.querySelector<HTMLElement>('[data-field="bytes-read"]');
  if (!loaded || !field) return;
  const { bytes, reads } = sourceReads(loaded.backend);
  field.dataset.value = String(bytes);
  field.textContent = `${sizeAndBytes(bytes)} in ${reads} reads, of a ${humanSize(loaded.inspection.fileSize)} file`;
}

// ------------------------------------------------------------------------------------------ sections

function render(state: Loaded): void {
  const i = state.inspection;
  const parts = [summary(i), allocation(state), checkSection(i), headers(i), regions(i), metadata(i), log(i), parent(i), sectorViewer(i)];
  report.append(...parts);
  // The canvas is drawn once it has a width (now that it is in the page).
  const frame = report.querySelector<HTMLElement>('.canvas-frame');
  if (state.map && frame) state.map.draw(frame.clientWidth || 640);
}

function summary(i: Inspection): HTMLElement {
  const layout = i.layout;
  const m = layout?.metadata;
  const a = i.allocation;
  const allocated = a ? a.counts.F + a.counts.P : undefined;
  const header = i.headers.find((x) => x.current)?.header ?? null;
  const type = m ? (m.hasParent ? 'differencing' : m.leaveBlockAllocated ? 'fixed' : 'dynamic') : undefined;
  const rows: [string, Node | string, string?, (string | number)?][] = [
    ['File', i.name, 'file-name', i.name],
    ['File size', sizeAndBytes(i.fileSize), 'file-size', i.fileSize],
    ['Creator', i.creator || '(none)', 'creator', i.creator ?? ''],
  ];
  if (m && layout && a) {
    rows.push(
      ['Type', type!, 'type', type],
      ['Virtual size', sizeAndBytes(m.virtualDiskSize), 'virtual-size', m.virtualDiskSize],
      ['Block size', sizeAndBytes(m.blockSize), 'block-size', m.blockSize],
      ['Logical sector size', `${m.logicalSectorSize} bytes`, 'logical-sector-size', m.logicalSectorSize],
      ['Physical sector size', `${m.physicalSectorSize} bytes`, 'physical-sector-size', m.physicalSectorSize],
      ['Payload blocks', String(a.blocks), 'blocks', a.blocks],
      ['Allocated blocks', `${allocated} (${humanSize(allocated! * m.blockSize)})`, 'allocated-blocks', allocated],
      ['Virtual disk ID', guidToString(m.virtualDiskId), 'virtual-disk-id', guidToString(m.virtualDiskId)],
    );
  }
  if (header) {
    rows.push(['DataWriteGuid', guidToString(header.dataWriteGuid), 'data-write-guid', guidToString(header.dataWriteGuid)]);
    rows.push(['FileWriteGuid', guidToString(header.fileWriteGuid), 'file-write-guid', guidToString(header.fileWriteGuid)]);
  }
  if (layout) rows.push(['Log', logStateText(layout.logState), 'log-state', layout.logState]);
  if (i.check) {
    rows.push(['Check verdict', h('span', { class: `verdict verdict-${i.check.verdict}` }, i.check.verdict), 'verdict', i.check.verdict]);
  } else if (i.checkProblem) {
    rows.push(['Check verdict', `could not run: ${i.checkProblem.message}`, 'verdict', 'error']);
  }
  rows.push(['Read from the file', '', 'bytes-read', 0]);
  const warnings = layout?.warnings ?? [];
  return section(
    'summary',
    'Summary',
    definitions(rows),
    i.layoutProblem ? unavailable(i.layoutProblem, 'The layout is') : null,
    warnings.length ? h('div', { class: 'warnings' }, h('h3', {}, 'Warnings at open'), h('ul', {}, ...warnings.map((w) => h('li', {}, w)))) : null,
  );
}

function logStateText(state: string): string {
  switch (state) {
    case 'empty':
      return 'clean (the log is empty)';
    case 'replayed-in-memory':
      return 'dirty: replayed in memory for this page (the file is not changed)';
    case 'uncommitted':
      return 'marked in use, but nothing in it was committed (opened as clean)';
    default:
      return state;
  }
}

function allocation(state: Loaded): HTMLElement {
  const i = state.inspection;
  const layout = i.layout;
  const a = i.allocation;
  if (!layout || !a) return section('allocation', 'Allocation', unavailable(null, 'The allocation picture is'));
  const problems = new Map<number, string>();
  for (const p of layout.batProblems) if (p.block !== undefined) problems.set(p.block, p.message);
  const describe = (first: number, last: number): string => {
    const range = blockRangeText(first, last, a.blockSize, a.virtualSize);
    if (first !== last) {
      const counts = new Map<string, number>();
      for (let b = first; b <= last; b++) counts.set(blockStateName(layout, b), (counts.get(blockStateName(layout, b)) ?? 0) + 1);
      return `Blocks ${first}-${last}: ${range}; ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}`;
    }
    const name = blockStateName(layout, first);
    const parts = [`Block ${first}: ${range}; ${name}`];
    if (problems.has(first)) {
      parts.push(`bad entry: ${problems.get(first)}`);
    } else if (name === 'fully-present' || name === 'partially-present') {
      parts.push(`file offset ${offsetText(layout.bat.blockOffset(first))}`);
      if (name === 'partially-present') {
        const s = sectorsPresent(layout, first);
        if (s) parts.push(`${s.present} of ${s.total} sectors in this file, the rest from the parent`);
      }
    } else if (name === 'not-present') {
      parts.push(a.hasParent ? 'read from the parent' : 'reads as zeros, no file offset');
    } else {
      parts.push('reads as zeros, no file offset');
    }
    return parts.join('; ');
  };
  const map = new AllocationMap({
    allocation: a,
    describe,
    open: (block) => showSector(Math.floor((block * a.blockSize) / layout.metadata.logicalSectorSize), true),
  });
  state.map = map;
  return section('allocation', 'Allocation', h('p', { class: 'hint' }, `One cell per payload block of ${humanSize(a.blockSize)}${a.blocks > 1 ? ', left to right, top to bottom' : ''}.`), map.element);
}

function describeFinding(f: Finding): HTMLElement {
  const where: string[] = [];
  if (f.offset !== undefined) where.push(`file offset ${offsetText(f.offset)}${f.length !== undefined ? `, ${sizeAndBytes(f.length)}` : ''}`);
  if (f.virtualOffset !== undefined) where.push(`virtual ${hex(f.virtualOffset)}-${hex(f.virtualOffset + f.virtualLength! - 1)}`);
  return h(
    'li',
    { class: `finding finding-${f.severity}`, 'data-code': f.code, 'data-severity': f.severity },
    h('strong', {}, `${f.severity} ${f.code}`),
    `: ${f.message}`,
    where.length ? ` (${where.join('; ')})` : '',
    f.repairable ? ' [vhdx check --repair fixes it]' : '',
  );
}

function checkSection(i: Inspection): HTMLElement {
  if (!i.check) return section('check', 'Check', unavailable(i.checkProblem, 'The check is'));
  const r = i.check;
  const explain: Record<string, string> = {
    clean: 'no corruption and no leaked space',
    leaks: 'no corruption, but space in the file that nothing uses',
    corrupt: 'structures are damaged',
  };
  return section(
    'check',
    'Check',
    h('p', {}, 'The library\'s ', h('code', {}, 'check'), ' ran on this file, reading only (the same report as ', h('code', {}, 'vhdx check --json'), '). Repairs are not made here: run ', h('code', {}, 'vhdx check --repair FILE'), '.'),
    h('p', { class: 'verdict-line' }, h('span', { class: `verdict verdict-${r.verdict}`, 'data-field': 'check-verdict', 'data-value': r.verdict }, r.verdict), ` ${explain[r.verdict] ?? ''} (exit status ${r.exitCode})`),
    definitions([
      ['Corruptions', String(r.corruptions), 'corruptions', r.corruptions],
      ['Leaks', r.leaks ? `${r.leaks} (${sizeAndBytes(r.leakedBytes)})` : '0', 'leaks', r.leaks],
      ['Warnings', String(r.warnings), 'warnings', r.warnings],
    ]),
    r.findings.length ? h('ol', { class: 'findings', id: 'findings', 'aria-label': 'Findings' }, ...r.findings.map(describeFinding)) : h('p', { id: 'findings' }, 'No findings.'),
  );
}

function headers(i: Inspection): HTMLElement {
  const copies = i.headers;
  const cell = (f: (c: (typeof copies)[number]) => string): string[] => copies.map(f);
  const field = (f: (x: NonNullable<(typeof copies)[number]['header']>) => string): string[] => copies.map((c) => (c.header ? f(c.header) : '–'));
  const rows: string[][] = [
    ['Role', ...cell((c) => (c.current ? 'current' : c.header ? 'valid, older' : 'unusable'))],
    ['Signature "head"', ...cell((c) => (c.signatureOk ? 'present' : 'missing'))],
    ['Checksum stored', ...cell((c) => checksumText(c.storedChecksum))],
    ['Checksum computed', ...cell((c) => checksumText(c.computedChecksum))],
    ['Verdict', ...cell((c) => (c.problem === null ? 'valid (checksum matches)' : `invalid: ${c.problem}`))],
    ['Sequence number', ...field((x) => x.sequenceNumber.toString())],
    ['FileWriteGuid', ...field((x) => guidToString(x.fileWriteGuid))],
    ['DataWriteGuid', ...field((x) => guidToString(x.dataWriteGuid))],
    ['LogGuid', ...field((x) => guidToString(x.logGuid))],
    ['Log version', ...field((x) => String(x.logVersion))],
    ['Version', ...field((x) => String(x.version))],
    ['Log offset', ...field((x) => offsetText(x.logOffset))],
    ['Log length', ...field((x) => sizeAndBytes(x.logLength))],
  ];
  const current = copies.find((c) => c.current);
  return section(
    'headers',
    'Headers',
    h('p', { 'data-field': 'current-header', 'data-value': current ? current.slot + 1 : 0 }, current ? `Copy ${current.slot + 1} is current (the valid copy with the higher sequence number).` : `No current header: ${i.headerProblem?.message ?? 'neither copy is valid'}.`),
    table('Both header copies', ['Field', ...copies.map((c) => `Copy ${c.slot + 1} at ${humanSize(c.offset)}`)], rows, { className: 'compare' }),
  );
}

function regions(i: Inspection): HTMLElement {
  const [one, two] = i.regionTables;
  const same = one?.entries && two?.entries && JSON.stringify(one.entries) === JSON.stringify(two.entries) && one.storedChecksum === two.storedChecksum;
  const parts: HTMLElement[] = [];
  for (const t of i.regionTables) {
    const verdict = t.problem === null ? `valid (checksum ${checksumText(t.storedChecksum)} matches)` : `invalid: ${t.problem} (stored ${checksumText(t.storedChecksum)}, computed ${checksumText(t.computedChecksum)})`;
    parts.push(
      h('h3', {}, `Copy ${t.copy} at ${humanSize(t.offset)}`),
      h('p', { 'data-field': `region-table-${t.copy}`, 'data-value': t.problem === null ? 'valid' : 'invalid' }, verdict, t.rewrittenByLog ? ' The log rewrites this copy; readers see the replayed one.' : ''),
    );
    if (t.entries) {
      parts.push(table(`Region table copy ${t.copy}`, ['Region', 'GUID', 'File offset', 'Length', 'Required'], t.entries.map((e) => [e.name, e.guid, offsetText(e.fileOffset), sizeAndBytes(e.length), yesNo(e.required)])));
    }
  }
  return section('regions', 'Region tables', ...parts, h('p', {}, same ? 'The two copies are identical.' : 'The two copies differ; readers use copy 1 when it is valid.'));
}

function metadata(i: Inspection): HTMLElement {
  const layout = i.layout;
  if (!layout) return section('metadata', 'Metadata', unavailable(null, 'The metadata is'));
  const flags = (x: { isUser: boolean; isVirtualDisk: boolean; isRequired: boolean }): string =>
    [x.isUser ? 'user' : 'system', x.isVirtualDisk ? 'virtual disk' : '', x.isRequired ? 'required' : ''].filter(Boolean).join(', ');
  return section(
    'metadata',
    'Metadata',
    h('p', {}, `Metadata region at ${offsetText(layout.metadataRegion.fileOffset)}, ${sizeAndBytes(layout.metadataRegion.length)}; BAT region at ${offsetText(layout.batRegion.fileOffset)}, ${sizeAndBytes(layout.batRegion.length)} (${layout.geometry.requiredEntries} entries needed, chunk ratio ${layout.geometry.chunkRatio}).`),
    table('Metadata items', ['Item', 'GUID', 'Offset', 'Length', 'Flags', 'Value'], i.metadataItems.map((x) => [x.name, x.guid, hex(x.offset), `${x.length} bytes`, flags(x), x.value])),
  );
}

function log(i: Inspection): HTMLElement {
  const layout = i.layout;
  const l = i.log;
  if (!layout || !l) return section('log', 'Log', unavailable(null, 'The log is'));
  const dirty = l.state === 'replayed-in-memory';
  const parts: (HTMLElement | null)[] = [
    h('p', { class: dirty ? 'notice' : undefined, 'data-field': 'log-dirty', 'data-value': dirty ? 'dirty' : 'clean' }, dirty ? 'Dirty: the log holds committed changes, replayed in memory for this page (the file is not changed).' : `Not dirty: ${logStateText(l.state)}.`),
    definitions([
      ['LogGuid', l.guid],
      ['Log offset', offsetText(l.offset)],
      ['Log length', sizeAndBytes(l.length)],
      ['Active sequence', l.entries.length ? `${l.entries.length} ${l.entries.length === 1 ? 'entry' : 'entries'}` : 'none', 'log-entries', l.entries.length],
    ]),
  ];
  if (dirty) {
    parts.push(
      h('p', {}, 'These entries were committed but not yet written in place (the writer stopped before applying them). This page applies them in memory, as any read-only reader does: the region table, metadata, BAT and sectors shown are the replayed ones. Nothing is written to the file; ', h('code', {}, 'vhdx check --repair'), ' or any writable open replays them into it.'),
      l.changedBlocks !== null ? h('p', { 'data-field': 'log-changed-blocks', 'data-value': l.changedBlocks }, `Replaying changes the BAT entries of ${l.changedBlocks} payload block(s).`) : null,
    );
  }
  if (l.entries.length) {
    parts.push(
      table(
        'Log entries of the active sequence, oldest first',
        ['Sequence', 'Log offset', 'Length', 'Tail', 'Descriptors', 'FlushedFileOffset', 'LastFileOffset', 'Writes (file offsets)'],
        l.entries.map((e) => [
          e.sequenceNumber,
          hex(e.logOffset),
          sizeAndBytes(e.entryLength),
          hex(e.tail),
          `${e.dataDescriptors} data, ${e.zeroDescriptors} zero`,
          offsetText(e.flushedFileOffset),
          offsetText(e.lastFileOffset),
          e.targets.map((t) => `${hex(t.fileOffset)}${t.zero ? ` (${t.length} zero bytes)` : ''}`).join(', ') + (e.dataDescriptors + e.zeroDescriptors > e.targets.length ? ', …' : ''),
        ]),
      ),
    );
  }
  return section('log', 'Log', ...parts);
}

function parent(i: Inspection): HTMLElement {
  const m = i.layout?.metadata;
  if (!m) return section('parent', 'Parent and chain', unavailable(null, 'The parent locator is'));
  if (!m.hasParent || !m.parentLocator) {
    return section('parent', 'Parent and chain', h('p', { 'data-field': 'parent', 'data-value': 'none' }, 'This is not a differencing disk: it has no parent and no parent locator.'));
  }
  const entries = m.parentLocator.entries;
  const get = (key: string): string | undefined => entries.find((e) => e.key === key)?.value;
  const header = i.headers.find((x) => x.current)?.header;
  return section(
    'parent',
    'Parent and chain',
    h('p', { 'data-field': 'parent', 'data-value': 'differencing' }, 'This is a differencing disk. ', h('strong', {}, 'Its parent is not available in this page'), ': only this file was opened, so sectors this disk does not hold cannot be shown, and the linkage below cannot be checked against the parent\'s DataWriteGuid. ', h('code', {}, 'vhdx info --chain FILE'), ' follows and checks the chain.'),
    definitions([
      ['Locator type', guidToString(m.parentLocator.locatorType)],
      ['parent_linkage', get('parent_linkage') ?? '(missing)', 'parent-linkage', get('parent_linkage') ?? ''],
      ['parent_linkage2', get('parent_linkage2') ?? '(none)', 'parent-linkage2', get('parent_linkage2') ?? ''],
      ['This disk\'s DataWriteGuid', header ? guidToString(header.dataWriteGuid) : '–'],
    ]),
    table('Parent locator entries', ['Key', 'Value'], entries.map((e) => [e.key, e.value]), { className: 'locator' }),
  );
}

// ------------------------------------------------------------------------------------- sector viewer

function sectorViewer(i: Inspection): HTMLElement {
  const image = i.image;
  if (!image) return section('sectors', 'Sector viewer', unavailable(i.imageProblem, 'Reading sectors is'));
  const sectors = Math.floor(image.virtualSize / image.logicalSectorSize);
  const input = h('input', { id: 'sector-input', type: 'number', min: 0, max: sectors - 1, step: 1, value: 0, inputmode: 'numeric', 'aria-describedby': 'sector-hint sector-error', required: true });
  const form = h(
    'form',
    { id: 'sector-form', class: 'sector-form', novalidate: true },
    h('label', { for: 'sector-input' }, 'Virtual sector'),
    input,
    h('button', { type: 'submit' }, 'Show'),
    h('button', { type: 'button', id: 'sector-prev', 'aria-label': 'Previous sector' }, '◀ Previous'),
    h('button', { type: 'button', id: 'sector-next', 'aria-label': 'Next sector' }, 'Next ▶'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void showSector(input.value.trim() === '' ? NaN : Number(input.value), false);
  });
  byIdIn(form, 'sector-prev').addEventListener('click', () => void showSector(Number(input.value) - 1, false));
  byIdIn(form, 'sector-next').addEventListener('click', () => void showSector(Number(input.value) + 1, false));
  const output = h('pre', { id: 'hex-output', class: 'hex', tabindex: 0, 'aria-label': 'Sector bytes: offset, 16 bytes in hex, then as ASCII' });
  const view = section(
    'sectors',
    'Sector viewer',
    form,
    h('p', { id: 'sector-hint', class: 'hint' }, `Sectors 0 to ${sectors - 1} of ${image.logicalSectorSize} bytes. Rows: virtual byte offset, 16 bytes in hex, the same bytes as ASCII.`),
    h('p', { id: 'sector-error', class: 'problem', role: 'alert', hidden: true }),
    h('p', { id: 'sector-source', 'aria-live': 'polite' }),
    output,
  );
  queueMicrotask(() => void showSector(0, false));
  return view;
}

function byIdIn(root: HTMLElement, id: string): HTMLElement {
  return root.querySelector<HTMLElement>(`#${id}`)!;
}

async function showSector(sector: number, scroll: boolean): Promise<void> {
  const image = loaded?.inspection.image;
  const input = document.getElementById('sector-input') as HTMLInputElement | null;
  const error = document.getElementById('sector-error');
  const source = document.getElementById('sector-source');
  const output = document.getElementById('hex-output');
  if (!image || !input || !error || !source || !output) return;
  const size = image.logicalSectorSize;
  const sectors = Math.floor(image.virtualSize / size);
  if (!Number.isSafeInteger(sector) || sector < 0 || sector >= sectors) {
    error.textContent = `Enter a whole sector number from 0 to ${sectors - 1}.`;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    return;
  }
  error.hidden = true;
  input.removeAttribute('aria-invalid');
  input.value = String(sector);
  const offset = sector * size;
  const extents = await image.extents(offset, size);
  const where = extents
    .map((e) => {
      switch (e.kind) {
        case 'data':
          return `stored in this file at ${offsetText(e.fileOffset!)}`;
        case 'zero':
          return 'in a zero block: reads as zeros';
        case 'unallocated':
          return `in a ${e.state} block: reads as zeros`;
        case 'parent':
          return 'not in this file: it comes from the parent disk, which is not available in this page';
      }
    })
    .join('; ');
  source.textContent = `Sector ${sector}, virtual bytes ${hex(offset)}-${hex(offset + size - 1)}: ${where}.`;
  output.dataset.sector = String(sector);
  if (extents.some((e) => e.kind === 'parent')) {
    output.textContent = '';
    output.dataset.bytes = '';
    output.hidden = true;
  } else {
    output.hidden = false;
    try {
      const bytes = await image.read(offset, size);
      if (output.dataset.sector !== String(sector)) return; // a later request won
      const digits = Math.max(8, (image.virtualSize - 1).toString(16).length);
      output.textContent = hexDump(bytes, offset, digits);
      output.dataset.bytes = String(bytes.length);
    } catch (e) {
      const p = problemOf(e);
      output.textContent = '';
      error.textContent = `Reading sector ${sector} failed: ${p.message} (${p.code})`;
      error.hidden = false;
    }
  }
  updateBytesRead();
  if (scroll) {
    byId('sectors').scrollIntoView({ block: 'start' });
    input.focus();
  }
}

// --------------------------------------------------------------------------------------------- wiring

const input = byId<HTMLInputElement>('file-input');
input.addEventListener('change', () => {
  const file = input.files?.[0];
  if (file) void load(async () => new BlobBackend(file, { name: file.name }), file.name);
});

const dropZone = byId('drop-zone');
let dragDepth = 0;
document.addEventListener('dragenter', (e) => {
  e.preventDefault();
  dragDepth++;
  dropZone.classList.add('dragging');
});
document.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    dropZone.classList.remove('dragging');
  }
});
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
});
document.addEventListener('drop', (e) => {
  e.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove('dragging');
  const file = e.dataTransfer?.files[0];
  if (file) void load(async () => new BlobBackend(file, { name: file.name }), file.name);
});

// Opened by `vhdx web FILE`: ?image=URL&name=NAME, read through HTTP Range requests.
const params = new URLSearchParams(location.search);
const imageUrl = params.get('image');
if (imageUrl) {
  const url = new URL(imageUrl, location.href).href;
  const name = params.get('name') ?? decodeURIComponent(url.split('/').pop() ?? 'image');
  void load(() => HttpBackend.open(url, { name }), name);
}
document.documentElement.dataset.ready = 'true';
