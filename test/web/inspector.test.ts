/**
 * The inspector page (web/, built into dist/web by scripts/build-web.js) in real headless Chromium
 * (Debian's `chromium`, driven by playwright-core; no browser is ever downloaded). Images are made with
 * our CLI (and, for states the CLI does not make, the library), loaded into the page from disk with the
 * file input, and everything the page shows is compared with `vhdx info --json`, `vhdx map --json` and
 * `vhdx check --json` on the same file: virtual size, block count, allocated blocks, log state, check
 * verdict and findings, the allocation canvas (its cell model and the pixel at every cell's centre),
 * hover and keyboard details, and a hex dump against `vhdx read`. A 16 GiB image must open in under
 * 2 s with a JS heap under 200 MB, reading only a few MiB of the file. `vhdx web FILE --port 0` is
 * started and its URL opened: the page reads the file through HTTP Range requests.
 *
 * Chromium is installed by the README's test command; when it is missing this test fails, never skips.
 * VHDX_INSPECTOR_SCREENSHOT=PATH also writes the 1280x900 screenshot used in the docs.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { buildImage } from '../build-image.js';
import { patternBytes, ROOT, runOk, sha256File, tempDir, VHDX_BIN } from '../helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CHROMIUM = '/usr/bin/chromium';
const PAGE = join(ROOT, 'dist', 'web', 'index.html');
const STATE_LETTERS: Record<string, string> = {
  'fully-present': 'F',
  'partially-present': 'P',
  zero: 'Z',
  unmapped: 'U',
  'not-present': 'N',
  undefined: 'D',
};

interface Info {
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: number;
  logState: string;
  allocatedBytes: number;
  type: string;
  creator: string;
  fileSize: number;
  dataWriteGuid: string;
  parentLocator: Record<string, string> | null;
}
interface MapExtent {
  offset: number;
  length: number;
  kind: string;
  state: string;
  fileOffset?: number;
  layer?: number;
}
interface CheckJson {
  verdict: string;
  corruptions: number;
  leaks: number;
  warnings: number;
  findings: { code: string; severity: string }[];
}

function vhdxJson<T>(args: string[]): T {
  return JSON.parse(runOk(VHDX_BIN, args).toString()) as T;
}

/** What the CLI says about a file: the expectations of every page test. */
function expectations(file: string): { info: Info; map: MapExtent[]; check: CheckJson; blocks: number; cells: string; allocatedBlocks: number } {
  const info = vhdxJson<Info>(['info', file, '--json']);
  const map = vhdxJson<MapExtent[]>(['map', file, '--json']);
  const r = checkJson(file);
  const blocks = Math.ceil(info.virtualSize / info.blockSize);
  // Each block's own BAT state from the extents this file serves (layer 0); none: served by the parent.
  const cells: string[] = new Array<string>(blocks).fill('N');
  const own = new Array<boolean>(blocks).fill(false);
  for (const e of map) {
    if ((e.layer ?? 0) !== 0) continue;
    for (let b = Math.floor(e.offset / info.blockSize); b * info.blockSize < e.offset + e.length; b++) {
      const letter = STATE_LETTERS[e.state];
      assert.ok(letter, `unknown state ${e.state} in map --json`);
      cells[b] = letter;
      if (e.kind === 'data') own[b] = true;
    }
  }
  const allocatedBlocks = own.filter(Boolean).length;
  assert.equal(allocatedBlocks * info.blockSize, info.allocatedBytes, 'map --json and info --json agree on the allocated blocks');
  return { info, map, check: r, blocks, cells: cells.join(''), allocatedBlocks };
}

/** `vhdx check --json` exits 0, 2 or 3 with a report; anything else is a failure. */
function checkJson(file: string): CheckJson {
  const r = spawnSync(VHDX_BIN, ['check', file, '--json'], { maxBuffer: 1 << 26 });
  assert.ok([0, 2, 3].includes(r.status ?? -1), `vhdx check ${file} --json exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as CheckJson;
}

function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is not installed (Debian package chromium); run the test set-up command from the README (it installs the peers)`);
  if (!existsSync(PAGE)) throw new Error(`${PAGE} is missing: the page is built by scripts/build-web.js (npm run build)`);
}

async function launch(profile: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
}

async function field(page: Page, name: string): Promise<string | null> {
  return page.locator(`[data-field="${name}"]`).first().getAttribute('data-value');
}

/** Loads `file` with the file input and waits for the report; returns the milliseconds it took. */
async function loadFile(page: Page, file: string): Promise<number> {
  const name = file.split('/').pop()!;
  const started = Date.now();
  await page.setInputFiles('#file-input', file);
  await page.waitForSelector(`#report[data-file="${name}"] [data-field="verdict"]`, { timeout: 20_000 });
  return Date.now() - started;
}

/** The canvas model and the colour at the centre of every cell, read from its pixels. */
async function canvasCells(page: Page): Promise<{ cells: string; columns: number; cellSize: number; blocksPerCell: number; colors: Record<string, string>; centres: string[] }> {
  return page.evaluate(`(() => {
    const canvas = document.getElementById('allocation-canvas');
    const d = canvas.dataset;
    const columns = Number(d.columns), cellSize = Number(d.cellSize), gap = Number(d.gap);
    const scale = canvas.width / canvas.getBoundingClientRect().width;
    const ctx = canvas.getContext('2d');
    const image = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const centres = [];
    for (let c = 0; c < d.cells.length; c++) {
      const x = Math.floor(((c % columns) * cellSize + (cellSize - gap) / 2) * scale);
      const y = Math.floor((Math.floor(c / columns) * cellSize + (cellSize - gap) / 2) * scale);
      const at = (y * canvas.width + x) * 4;
      centres.push('#' + [image[at], image[at + 1], image[at + 2]].map((v) => v.toString(16).padStart(2, '0')).join(''));
    }
    return { cells: d.cells, columns, cellSize, blocksPerCell: Number(d.blocksPerCell), colors: JSON.parse(d.colors), centres };
  })()`);
}

/** An independent hex dump of `bytes` in the page's format (offset, 16 bytes in two groups, ASCII). */
function expectedDump(bytes: Uint8Array, base: number, digits: number): string {
  const rows: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = [...bytes.subarray(at, at + 16)];
    const hexes = row.map((b) => b.toString(16).padStart(2, '0'));
    const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    rows.push(`${(base + at).toString(16).padStart(digits, '0')}  ${hexes.slice(0, 8).join(' ')}  ${hexes.slice(8).join(' ')}  |${ascii}|`);
  }
  return rows.join('\n');
}

/** Everything the page shows that the CLI can confirm. */
async function assertMatchesCli(page: Page, file: string): Promise<ReturnType<typeof expectations>> {
  const want = expectations(file);
  const { info, check } = want;
  assert.equal(Number(await field(page, 'virtual-size')), info.virtualSize, 'virtual size');
  assert.equal(Number(await field(page, 'block-size')), info.blockSize, 'block size');
  assert.equal(Number(await field(page, 'logical-sector-size')), info.logicalSectorSize, 'logical sector size');
  assert.equal(Number(await field(page, 'blocks')), want.blocks, 'block count');
  assert.equal(Number(await field(page, 'allocated-blocks')), want.allocatedBlocks, 'allocated block count');
  assert.equal(Number(await field(page, 'file-size')), statSync(file).size, 'file size');
  assert.equal(await field(page, 'type'), info.type, 'type');
  assert.equal(await field(page, 'creator'), info.creator, 'creator');
  assert.equal(await field(page, 'log-state'), info.logState, 'log state');
  assert.equal((await field(page, 'data-write-guid'))?.toLowerCase(), info.dataWriteGuid.toLowerCase(), 'DataWriteGuid');
  assert.equal(await field(page, 'verdict'), check.verdict, 'check verdict');
  assert.equal(Number(await field(page, 'corruptions')), check.corruptions, 'corruptions');
  assert.equal(Number(await field(page, 'leaks')), check.leaks, 'leaks');
  assert.equal(Number(await field(page, 'warnings')), check.warnings, 'warnings');
  const codes = await page.locator('#findings li').evaluateAll((items: any[]) => items.map((li) => li.dataset.code as string));
  assert.deepEqual(codes, check.findings.map((f) => f.code), 'findings');

  // The canvas: its cell model is exactly the CLI's map, and every cell's centre pixel has its colour.
  const canvas = await canvasCells(page);
  assert.equal(canvas.blocksPerCell, 1);
  assert.equal(canvas.cells, want.cells, 'one cell per block, in the state map --json gives it');
  canvas.centres.forEach((colour, c) => assert.equal(colour, canvas.colors[want.cells[c]!], `pixel at the centre of cell ${c} (${want.cells[c]})`));
  const counts = await page.locator('.legend li').evaluateAll((items: any[]) => Object.fromEntries(items.map((li) => [li.dataset.state as string, Number(li.dataset.count)])));
  for (const [letter, count] of Object.entries(counts as Record<string, number>)) assert.equal(count, [...want.cells].filter((c) => c === letter).length, `legend count of ${letter}`);
  return want;
}

/** Hover over block `block`'s cell: the tooltip names it with its virtual range and file offset. */
async function hoverBlock(page: Page, block: number, want: ReturnType<typeof expectations>): Promise<string> {
  const canvas = await canvasCells(page);
  const x = (block % canvas.columns) * canvas.cellSize + canvas.cellSize / 2 - 0.5;
  const y = Math.floor(block / canvas.columns) * canvas.cellSize + canvas.cellSize / 2 - 0.5;
  await page.locator('#allocation-canvas').hover({ position: { x, y } }); // scrolled into view first
  const tooltip = page.locator('#allocation-tooltip');
  await tooltip.waitFor({ state: 'visible' });
  const text = await tooltip.innerText();
  const { blockSize, virtualSize } = want.info;
  assert.match(text, new RegExp(`^Block ${block}: virtual 0x${(block * blockSize).toString(16)}-0x${(Math.min((block + 1) * blockSize, virtualSize) - 1).toString(16)} `));
  assert.equal(await page.locator('#cell-info').innerText(), text, 'the status line says the same');
  return text;
}

/** Shows `sector` in the hex view and compares it with `vhdx read` of the same bytes. */
async function assertSector(page: Page, file: string, sector: number, info: Info): Promise<void> {
  await page.fill('#sector-input', String(sector));
  await page.press('#sector-input', 'Enter');
  await page.waitForSelector(`#hex-output[data-sector="${sector}"][data-bytes="${info.logicalSectorSize}"]`);
  const offset = sector * info.logicalSectorSize;
  const bytes = new Uint8Array(runOk(VHDX_BIN, ['read', file, '--offset', String(offset), '--length', String(info.logicalSectorSize)]));
  const digits = Math.max(8, (info.virtualSize - 1).toString(16).length);
  assert.equal(await page.locator('#hex-output').textContent(), expectedDump(bytes, offset, digits), `hex dump of sector ${sector}`);
}

describe('inspector page in headless Chromium', () => {
  let dir: { path: string; cleanup: () => void };
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];
  /** Every URL the file:// page asked for: nothing may go to a network. */
  const requests: string[] = [];

  before(async () => {
    requireChromium();
    dir = tempDir('vhdx-web-');
    context = await launch(mkdtempSync(join(dir.path, 'profile-')));
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${PAGE}`);
    await page.waitForSelector('html[data-ready="true"]');
  });

  after(async () => {
    const started = context !== undefined;
    await context?.close();
    dir?.cleanup();
    if (!started) return; // before() failed, and said why
    assert.deepEqual(errors, [], 'no script errors in the page');
    assert.ok(requests.length > 0);
    assert.deepEqual(requests.filter((u) => !u.startsWith('file:')), [], 'the page opened from disk asks nothing of a network');
  });

  test('a dynamic image with data, zero and unmapped blocks', async () => {
    const file = join(dir.path, 'dynamic.vhdx');
    runOk(VHDX_BIN, ['create', file, '2G', '--block-size', '2M']);
    runOk(VHDX_BIN, ['write', file, '--offset', '0', '--pattern', '0x41', '--length', '64K']);
    runOk(VHDX_BIN, ['write', file, '--offset', '100M', '--pattern', '0x42', '--length', '10M']);
    runOk(VHDX_BIN, ['write', file, '--offset', '700M', '--pattern', '0x43', '--length', '3M']);
    runOk(VHDX_BIN, ['write', file, '--offset', String(2 * GiB - 4096), '--from', '-'], { input: patternBytes(4096, 7) });
    // States the CLI does not make: ZERO blocks and an UNMAPPED one.
    const image = await openImage(file, { readOnly: false });
    await image.writeZeroes(400 * MiB, 8 * MiB);
    await image.discard(108 * MiB, 2 * MiB);
    await image.close();

    await loadFile(page, file);
    const want = await assertMatchesCli(page, file);
    assert.ok(want.cells.includes('Z') && want.cells.includes('U') && want.cells.includes('F'), 'the image has data, zero and unmapped blocks');
    // Hover a data block, a zero block and an unallocated one.
    const data = want.map.find((e) => e.kind === 'data' && e.offset >= 100 * MiB)!;
    const block = Math.floor(data.offset / want.info.blockSize);
    const text = await hoverBlock(page, block, want);
    assert.match(text, new RegExp(`fully-present; file offset 0x${(data.fileOffset! - (data.offset - block * want.info.blockSize)).toString(16)} `));
    assert.match(await hoverBlock(page, 200, want), /zero; reads as zeros, no file offset/);
    assert.match(await hoverBlock(page, 3, want), /not-present; reads as zeros/);
    // Keyboard: focus the picture, move right from block 0.
    await page.focus('#allocation-canvas');
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowRight');
    assert.match(await page.locator('#cell-info').innerText(), /^Block 1: virtual 0x200000-0x3fffff /);
    // Hex view: written, unwritten and last sectors against `vhdx read`.
    await assertSector(page, file, (100 * MiB) / 512, want.info);
    await assertSector(page, file, 5, want.info);
    await assertSector(page, file, want.info.virtualSize / 512 - 1, want.info);
    assert.match(await page.locator('#sector-source').innerText(), /stored in this file at 0x/);
    // Enter on a block opens its first sector.
    await page.focus('#allocation-canvas');
    await page.keyboard.press('End');
    await page.keyboard.press('Enter');
    await page.waitForSelector(`#hex-output[data-sector="${(want.blocks - 1) * (want.info.blockSize / 512)}"]`);
    // Invalid sector numbers are refused with a message.
    await page.fill('#sector-input', '-1');
    await page.press('#sector-input', 'Enter');
    assert.match(await page.locator('#sector-error').innerText(), /Enter a whole sector number from 0 to 4194303/);
    assert.equal(await page.locator('#sector-input').getAttribute('aria-invalid'), 'true');

    // Headers: copy verdicts, the current one is the one with the larger sequence number.
    assert.equal(await page.locator('.card-headers tbody tr').first().innerText().then((t) => (t.match(/current/g) ?? []).length), 1);
    assert.match(await page.locator('.card-headers').innerText(), /valid \(checksum matches\)\s+valid \(checksum matches\)/);
    assert.match(await page.locator('#regions').innerText(), /The two copies are identical/);
    assert.match(await page.locator('#metadata').innerText(), /File Parameters[\s\S]*Virtual Disk Size[\s\S]*Logical Sector Size/);
    assert.equal(await field(page, 'parent'), 'none');
    assert.equal(await field(page, 'log-dirty'), 'clean');

    const bytesRead = Number(await field(page, 'bytes-read'));
    assert.ok(bytesRead > 0 && bytesRead <= statSync(file).size, `bytes read (${bytesRead})`);
    await page.screenshot({ path: join(dir.path, 'dynamic.png'), fullPage: true });
    const docs = process.env.VHDX_INSPECTOR_SCREENSHOT;
    if (docs) {
      await page.evaluate('window.scrollTo(0, 0)');
      await page.mouse.move(0, 0);
      await hoverBlock(page, 0, want);
      await page.screenshot({ path: docs });
    }
  });

  test('a 4096-byte logical sector image', async () => {
    const file = join(dir.path, 'sector4k.vhdx');
    runOk(VHDX_BIN, ['create', file, '256M', '--block-size', '1M', '--logical-sector-size', '4096']);
    runOk(VHDX_BIN, ['write', file, '--offset', String(3 * MiB + 4096), '--from', '-'], { input: patternBytes(3 * 4096 + 100, 3) });
    runOk(VHDX_BIN, ['write', file, '--offset', '200M', '--pattern', '0x5a', '--length', '2M']);
    await loadFile(page, file);
    const want = await assertMatchesCli(page, file);
    assert.equal(want.info.logicalSectorSize, 4096);
    await assertSector(page, file, (3 * MiB) / 4096 + 1, want.info);
    assert.equal((await page.locator('#hex-output').textContent())!.split('\n').length, 256, '4096 bytes: 256 rows');
    await assertSector(page, file, (3 * MiB) / 4096 + 4, want.info); // partly written: the tail of the write
    await page.screenshot({ path: join(dir.path, 'sector4k.png'), fullPage: true });
  });

  test('a dirty log is replayed in memory for display, and the file is not changed', async () => {
    const file = join(dir.path, 'dirty.vhdx');
    const writes = [
      { offset: 1000, data: patternBytes(3001, 11) },
      { offset: 7 * MiB - 10, data: patternBytes(20, 12) },
      { offset: 41 * MiB + 3 * 512 - 777, data: patternBytes(777, 13) },
    ];
    const backend = await NodeFileBackend.open(file, { readOnly: false, create: true });
    await buildImage(backend, { virtualSize: 41 * MiB + 3 * 512, blockSize: MiB, layout: 'windows', dirtyLog: { entries: 1 }, writes });
    await backend.close();
    const hash = sha256File(file);
    await loadFile(page, file);
    const want = await assertMatchesCli(page, file);
    assert.equal(want.info.logState, 'replayed-in-memory');
    assert.equal(await field(page, 'log-dirty'), 'dirty');
    assert.equal(Number(await field(page, 'log-entries')), 1);
    // The file's own BAT says nothing is present; the log makes the written blocks present.
    const written = new Set(writes.flatMap((w) => [Math.floor(w.offset / MiB), Math.floor((w.offset + w.data.length - 1) / MiB)]));
    assert.equal(Number(await field(page, 'log-changed-blocks')), written.size);
    assert.equal(want.allocatedBlocks, written.size);
    assert.ok(want.check.findings.some((f) => f.code === 'LOG_REPLAY_NEEDED'));
    await assertSector(page, file, 1, want.info); // bytes 512-1023 of the first write, through the replayed BAT
    assert.equal(sha256File(file), hash, 'the page (and the CLI reads) left the file as it was');
    await page.screenshot({ path: join(dir.path, 'dirty.png'), fullPage: true });
  });

  test('a differencing child: its own blocks, the parent locator and linkage, the parent not available', async () => {
    const base = join(dir.path, 'base.vhdx');
    const child = join(dir.path, 'child.avhdx');
    runOk(VHDX_BIN, ['create', base, '512M', '--block-size', '2M']);
    runOk(VHDX_BIN, ['write', base, '--offset', '0', '--pattern', '0x11', '--length', '8M']);
    runOk(VHDX_BIN, ['create', child, '--parent', base, '--block-size', '2M']);
    runOk(VHDX_BIN, ['write', child, '--offset', String(MiB + 512), '--pattern', '0x22', '--length', '1000']); // partial: sectors of block 0
    runOk(VHDX_BIN, ['write', child, '--offset', '100M', '--pattern', '0x33', '--length', '4M']); // whole blocks 50-51
    await loadFile(page, child);
    const want = await assertMatchesCli(page, child);
    assert.equal(want.info.type, 'differencing');
    assert.ok(want.cells.includes('P'), 'a partially present block');
    assert.equal(await field(page, 'parent'), 'differencing');
    assert.match(await page.locator('#parent').innerText(), /parent is not available in this page/);
    assert.equal(await field(page, 'parent-linkage'), want.info.parentLocator!.parent_linkage);
    const locator = await page.locator('.locator tbody tr').evaluateAll((rows: any[]) => rows.map((r) => [r.cells[0].textContent as string, r.cells[1].textContent as string]));
    assert.deepEqual(Object.fromEntries(locator as [string, string][]), want.info.parentLocator);
    // A block of the child, partially present: its sectors and file offset.
    assert.equal(want.info.blockSize, 2 * MiB);
    assert.match(await hoverBlock(page, 0, want), /partially-present; file offset 0x[0-9a-f]+ .*; 2 of 4096 sectors in this file, the rest from the parent/);
    assert.match(await hoverBlock(page, 10, want), /not-present; read from the parent/);
    // A sector the child holds reads; one it does not says it comes from the parent.
    await assertSector(page, child, (MiB + 512) / 512, want.info);
    await page.fill('#sector-input', '0');
    await page.press('#sector-input', 'Enter');
    await page.waitForFunction(`document.getElementById('sector-source').textContent.startsWith('Sector 0,')`);
    assert.match(await page.locator('#sector-source').innerText(), /comes from the parent disk, which is not available in this page/);
    await page.screenshot({ path: join(dir.path, 'child.png'), fullPage: true });
  });

  test('a 16 GiB image opens in under 2 s with a JS heap under 200 MB, reading a few MiB of it', async () => {
    const file = join(dir.path, 'big.vhdx');
    runOk(VHDX_BIN, ['create', file, '16G']);
    runOk(VHDX_BIN, ['write', file, '--offset', '8G', '--pattern', '0x77', '--length', '1M']);
    const ms = await loadFile(page, file);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')!.value;
    await cdp.detach();
    const want = await assertMatchesCli(page, file);
    assert.equal(want.blocks, 512);
    const bytesRead = Number(await field(page, 'bytes-read'));
    console.log(`16 GiB dynamic image: shown in ${ms} ms, JS heap ${(heap / MiB).toFixed(1)} MiB, ${(bytesRead / MiB).toFixed(1)} MiB of the ${(statSync(file).size / MiB).toFixed(0)} MiB file read`);
    assert.ok(ms < 2000, `opened in ${ms} ms`);
    assert.ok(heap < 200 * 1e6, `JS heap ${heap} bytes`);
    rmSync(file);

    // A 16 GiB file (fixed, sparse on disk): the page reads only what it needs.
    const fixed = join(dir.path, 'fixed.vhdx');
    runOk(VHDX_BIN, ['create', fixed, '16G', '--type', 'fixed', '--sparse']);
    const fixedMs = await loadFile(page, fixed);
    await assertMatchesCli(page, fixed);
    const fixedRead = Number(await field(page, 'bytes-read'));
    console.log(`16 GiB fixed image (a 16 GiB file): shown in ${fixedMs} ms, ${(fixedRead / MiB).toFixed(1)} MiB of it read`);
    assert.ok(fixedMs < 2000, `opened in ${fixedMs} ms`);
    assert.ok(fixedRead < 32 * MiB, `read ${fixedRead} bytes of a 16 GiB file`);
    rmSync(fixed);
  });

  test('a file dropped on the page is inspected', async () => {
    const file = join(dir.path, 'dropped.vhdx');
    runOk(VHDX_BIN, ['create', file, '64M', '--block-size', '1M']);
    runOk(VHDX_BIN, ['write', file, '--offset', '5M', '--pattern', '0x44', '--length', '3M']);
    // The file input gives the page a File; the test then drops that File on the page.
    await page.evaluate(`(() => {
      const probe = document.createElement('input');
      probe.type = 'file';
      probe.id = 'drop-probe';
      probe.hidden = true;
      document.body.append(probe);
    })()`);
    await page.setInputFiles('#drop-probe', file);
    await page.evaluate(`(() => {
      const probe = document.getElementById('drop-probe');
      const transfer = new DataTransfer();
      transfer.items.add(probe.files[0]);
      probe.remove();
      document.getElementById('summary').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    })()`);
    await page.waitForSelector('#report[data-file="dropped.vhdx"] [data-field="verdict"]');
    await assertMatchesCli(page, file);
  });

  test('not a VHDX: one clear error, no report', async () => {
    const file = join(dir.path, 'not.vhdx');
    runOk('truncate', ['-s', '2M', file]);
    await page.setInputFiles('#file-input', file);
    await page.waitForSelector('#error:not([hidden])');
    assert.match(await page.locator('#error').innerText(), /not.vhdx cannot be inspected: not a VHDX file .*\(NOT_VHDX\)/);
    assert.equal(await page.locator('#report').isHidden(), true);
  });

  test('vhdx web FILE --port 0 serves the page and the file, read lazily with Range requests', async () => {
    const file = join(dir.path, 'served.vhdx');
    runOk(VHDX_BIN, ['create', file, '1G', '--block-size', '4M']);
    runOk(VHDX_BIN, ['write', file, '--offset', '12M', '--pattern', '0x61', '--length', '5M']);
    const server = spawn(VHDX_BIN, ['web', file, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    server.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const url = await firstLine(server);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?image=%2Fimage&name=served\.vhdx$/);
      const origin = new URL(url).origin;
      const served = await context.newPage();
      served.on('pageerror', (e) => errors.push(e.message));
      await served.goto(url);
      await served.waitForSelector('#report[data-file="served.vhdx"] [data-field="verdict"]', { timeout: 20_000 });
      await assertMatchesCli(served, file);
      await assertSector(served, file, (12 * MiB) / 512, expectations(file).info);
      await served.close();

      // The server itself: ranges, refusals, only this machine's host names.
      const size = statSync(file).size;
      const bytes = readFileSync(file);
      let r = await get(`${origin}/image`, { Range: 'bytes=65536-65551' });
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-range'], `bytes 65536-65551/${size}`);
      assert.deepEqual(r.body, bytes.subarray(65536, 65552));
      r = await get(`${origin}/image`, { Range: `bytes=-10` });
      assert.deepEqual(r.body, bytes.subarray(size - 10));
      r = await get(`${origin}/image`, { Range: `bytes=${size}-` });
      assert.equal(r.status, 416);
      r = await get(`${origin}/../package.json`, {});
      assert.equal(r.status, 404);
      r = await get(`${origin}/`, { Host: 'example.com' });
      assert.equal(r.status, 403);
      r = await get(`${origin}/`, {});
      assert.equal(r.status, 200);
      assert.match(r.headers['content-security-policy'] as string, /connect-src 'self'/);
    } finally {
      server.kill('SIGINT');
    }
    const code = await new Promise<number | null>((resolve) => server.on('close', (c) => resolve(c)));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /vhdx web: SIGINT: stopped/);
  });
});

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no URL printed in 10 s (got ${JSON.stringify(out)})`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.on('close', (code) => reject(new Error(`vhdx web exited ${code} before printing a URL`)));
  });
}

function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: url.slice(u.origin.length), headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}
