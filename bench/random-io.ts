/**
 * Benchmark: 4 KiB random reads and random writes on a fully allocated 4 GiB dynamic VHDX, at queue
 * depth 1 and 32, through this library and through `qemu-img bench`, with the same offsets.
 *
 *   node dist/bench/random-io.js [--quick] [--runs N] [--dir DIR] [--count N] [--no-trace]
 *
 * The image: `vhdx create IMG 4G` (dynamic, 32 MiB blocks, our defaults), then every one of its 128
 * blocks written through the library (so every block is allocated and the random writes below go in
 * place; allocation is measured by write-alloc). Every 8-byte word of the fill holds its own virtual
 * byte offset (little-endian), so any 4 KiB read can be checked. Not timed. Both contenders use this
 * one file, in turn.
 *
 * The access pattern. `qemu-img bench` has no random mode: request k (k = 0, 1, ...) is at
 *   offset(0) = OFFSET,  offset(k + 1) = (offset(k) + STEP) mod SIZE
 * (qemu-img.c bench_cb; QEMU 7.2 wraps modulo the image size, newer releases modulo SIZE - 4096,
 * which is the same sequence here since every offset is 4 KiB aligned and so never above SIZE - 4096)
 * and offsets are handed out in submission order whatever the queue depth. With SIZE = 4 GiB = 2^20
 * pages of 4 KiB and STEP an odd number of pages, the sequence visits every page once before any
 * repeats, jumping about the disk: STEP = 400,521 pages (1,640,534,016 bytes, about 0.382 of the disk,
 * the golden section, under bench's 2^31 - 1 limit on -S). Reads start at OFFSET 0, writes at 2 GiB.
 * Our side computes the offsets the same way and hands them out in the same order: at depth 1 each
 * request is awaited; at depth 32, 32 requests are in flight (32 async workers, each taking the next
 * offset when its previous request completes, as bench's callback does). Before the timed rounds the
 * bench checks this under strace: it runs both contenders with a small count, maps every 4 KiB
 * pread64/preadv/pwrite64/pwritev of payload back to a virtual offset through the BAT, and compares
 * with the formula (in order at depth 1, as a set at depth 32, where QEMU's thread pool reorders).
 *
 * Contenders, each a whole process (start-up, open and close included), timed by the parent:
 *   vhdx library     a child Node process: openImage(IMG) (read-only) or openImage(IMG, {readOnly: false})
 *                    (writes), the requests, then close() (writes: flush = fdatasync, header update);
 *                    started without NODE_EXTRA_CA_CERTS, as bin/vhdx starts the CLI (Node 20 reads that
 *                    file at every start, about 0.1 s here; the library makes no TLS connection)
 *   qemu-img bench   qemu-img bench -c N -d D -s 4096 -S STEP -o OFFSET -t writeback -f vhdx [-w --pattern=165] IMG
 *                    (cache=writeback, bench's default: through the page cache, flushed at close)
 * Both write 4 KiB of the byte 0xa5. Before every run `sync` settles dirty pages, then the page cache
 * is set to the cell's state, the same for both contenders:
 *   cached   the whole image evicted, then read into the page cache (reads then measure no disk). Read
 *            sequentially, the file is cached in large folios (up to 2 MiB with this machine's 8 MiB
 *            readahead), and ext4 walks every 4 KiB buffer of a folio for each small write into it
 *            (ext4_block_write_begin and block_commit_write: 78% and 5% of a plain pwrite loop's
 *            profile here), so a 4 KiB write costs the kernel 30-70 us: the write cells measure that
 *            walk for both contenders.
 *   cold     none of the image cached (evicted with POSIX_FADV_DONTNEED through dd, checked with fincore;
 *            write cells only): a 4 KiB write makes a 4 KiB folio and costs the kernel about 4 us, as when
 *            a guest's disk is written without having been read whole first.
 * Rounds are interleaved (every cell and contender once, then again) so background load hits all
 * alike. The in-process loop times are printed too: ours measured around the request loop, QEMU's from
 * its "Run completed in" line (both exclude open and close).
 *
 * Floor (information, with the depth-1 cells): the same requests as plain pread/pwrite calls on the
 * image file at the file offsets the BAT gives, in a synchronous loop in the parent (writes then one
 * fdatasync): what the kernel alone costs a request (see the cache states above).
 *
 * Verification: every 1000th read of our side is compared with what the image must hold there (the
 * fill, or 0xa5 bytes where a write run went before); after every write run (floor included)
 * `qemu-img check` must pass and a sample of written and unwritten pages is read back through the
 * library.
 *
 * Target: our IOPS >= 1.5x QEMU's in each cell (whole processes, best against best).
 */
import { closeSync, fdatasyncSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../src/node/paths.js';

// The bench helpers are loaded only by the parent process (see main): the child, whose whole process
// is timed, loads the library and nothing else.
let h: typeof import('./write-lib.js') & Pick<typeof import('./lib.js'), 'warmPageCache'>;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const CHILD = '--child-random-io';
const SIZE = 4 * GiB;
const BLOCK_SIZE = 32 * MiB;
const IO = 4096;
/** An odd number of 4 KiB pages: the offsets visit every page of the disk once, scattered. */
const STEP = 400_521 * IO;
const READ_START = 0;
const WRITE_START = 2 * GiB;
const PATTERN = 0xa5;
const CHECK_EVERY = 1000;
const TARGET = 1.5;

type Mode = 'read' | 'write';
/** The page cache before a run: the whole image read into it (`cached`), or none of it (`cold`). */
type Cache = 'cached' | 'cold';
type Cell = `${Mode}${1 | 32}${'' | '-cold'}`;
type Who = 'vhdx' | 'qemu' | 'floor';
type Key = `${Cell}:${Who}`;

const CELLS: { cell: Cell; mode: Mode; depth: number; cache: Cache }[] = [
  { cell: 'read1', mode: 'read', depth: 1, cache: 'cached' },
  { cell: 'read32', mode: 'read', depth: 32, cache: 'cached' },
  { cell: 'write1', mode: 'write', depth: 1, cache: 'cached' },
  { cell: 'write32', mode: 'write', depth: 32, cache: 'cached' },
  { cell: 'write1-cold', mode: 'write', depth: 1, cache: 'cold' },
  { cell: 'write32-cold', mode: 'write', depth: 32, cache: 'cold' },
];

/** How a cell is printed: "write -d 32", "write -d 32 cold". */
function cellName(c: { mode: Mode; depth: number; cache: Cache }): string {
  return `${c.mode} -d ${c.depth}${c.cache === 'cold' ? ' cold' : ''}`;
}

/** The offset sequence of `qemu-img bench -o start -S STEP` on a SIZE-byte image. */
function* offsets(start: number, count: number): Generator<number> {
  let offset = start;
  for (let k = 0; k < count; k++) {
    yield offset;
    offset = (offset + STEP) % SIZE;
  }
}

const PAGES = SIZE / IO;
/** STEP / IO is odd, so it has an inverse modulo PAGES (a power of two): extended Euclid. */
const STEP_INVERSE = ((): number => {
  let [r0, r1, t0, t1] = [PAGES, STEP / IO, 0, 1];
  while (r1 !== 0) {
    const q = Math.floor(r0 / r1);
    [r0, r1, t0, t1] = [r1, r0 - q * r1, t1, t0 - q * t1];
  }
  return ((t0 % PAGES) + PAGES) % PAGES;
})();

/** Whether `offset` is among the first `count` offsets of the sequence from `start`: its index k solves start + k * STEP = offset (mod SIZE). */
function inSequence(offset: number, start: number, count: number): boolean {
  const pages = (((offset - start) / IO) % PAGES + PAGES) % PAGES;
  // pages * STEP_INVERSE < 2^40: exact in a double.
  return (pages * STEP_INVERSE) % PAGES < count;
}

/** The fill: every 8-byte word holds its own virtual offset, little-endian. `target` starts at `virtual`. */
function fill(target: Uint8Array, virtual: number): void {
  const words = new DataView(target.buffer, target.byteOffset, target.byteLength);
  for (let at = 0; at < target.length; at += 8) {
    const v = virtual + at;
    words.setUint32(at, v % 2 ** 32, true);
    words.setUint32(at + 4, Math.floor(v / 2 ** 32), true);
  }
}

/** Whether the 4 KiB `page` read at `virtual` holds the fill, or (`written`) all PATTERN bytes. */
function pageOk(page: Uint8Array, virtual: number, written: boolean, scratchPage: Uint8Array): boolean {
  if (written) return page.every((b) => b === PATTERN);
  fill(scratchPage, virtual);
  return Buffer.compare(page, scratchPage) === 0;
}

interface ChildReport {
  open: number;
  loop: number;
  close: number;
  checked: number;
  bad: string[];
}

/**
 * Child mode: the library side of one run. `written` is how many requests of the write sequence some
 * earlier run has written (their pages hold PATTERN), for checking reads.
 */
async function child(path: string, mode: Mode, depth: number, count: number, start: number, written: number): Promise<void> {
  const t0 = performance.now();
  const image = await openImage(path, mode === 'write' ? { readOnly: false } : {});
  const buffers = Array.from({ length: depth }, () => new Uint8Array(IO).fill(PATTERN));
  const expected = new Uint8Array(IO);
  const bad: string[] = [];
  let checked = 0;
  let issued = 0;
  let offset = start;
  const worker = async (buffer: Uint8Array): Promise<void> => {
    while (issued < count) {
      const k = issued++;
      const at = offset;
      offset = (offset + STEP) % SIZE;
      if (mode === 'write') {
        await image.write(at, buffer);
      } else {
        await image.readInto(buffer, at);
        if (k % CHECK_EVERY === 0) {
          checked++;
          if (!pageOk(buffer, at, inSequence(at, WRITE_START, written), expected) && bad.length < 5) bad.push(`read ${k} at ${at}: wrong bytes`);
        }
      }
    }
  };
  const t1 = performance.now();
  await Promise.all(buffers.map(worker));
  const t2 = performance.now();
  await image.close();
  const t3 = performance.now();
  const report: ChildReport = { open: (t1 - t0) / 1000, loop: (t2 - t1) / 1000, close: (t3 - t2) / 1000, checked, bad };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

/** `vhdx create`, then every block written with the fill through the library. */
async function makeImage(path: string): Promise<void> {
  h.run(h.VHDX_BIN, ['create', path, String(SIZE)]);
  const image = await openImage(path, { readOnly: false });
  const chunk = new Uint8Array(BLOCK_SIZE);
  for (let at = 0; at < SIZE; at += BLOCK_SIZE) {
    fill(chunk, at);
    await image.write(at, chunk);
  }
  await image.close();
}

/** Every block data, and a sample of pages (written or not) as they must be; returns the problems. */
async function verifyImage(path: string, written: number): Promise<string[]> {
  const problems: string[] = [];
  const image = await openImage(path);
  try {
    const notData = (await image.extents()).filter((e) => e.kind !== 'data');
    if (notData.length) problems.push(`not every block is allocated: ${JSON.stringify(notData[0])}`);
    const page = new Uint8Array(IO);
    const expected = new Uint8Array(IO);
    const writtenSet = new Set(offsets(WRITE_START, written));
    for (const [i, at] of [...offsets(WRITE_START, 2 * written + 8)].entries()) {
      if (inSequence(at, WRITE_START, written) !== i < written) problems.push(`inSequence is wrong at request ${i}`);
    }
    const sample = [...offsets(WRITE_START, written)].filter((_, i) => i % 997 === 0);
    for (let i = 0; i < 256; i++) sample.push(((i * 2_654_435_761) % (SIZE / IO)) * IO);
    for (const at of sample) {
      await image.readInto(page, at);
      if (!pageOk(page, at, writtenSet.has(at), expected)) problems.push(`page at ${at} holds wrong bytes`);
      if (problems.length > 5) break;
    }
  } finally {
    await image.close();
  }
  return problems;
}

function qemuArgs(path: string, mode: Mode, depth: number, count: number): string[] {
  const start = mode === 'write' ? WRITE_START : READ_START;
  return [
    'bench', '-c', String(count), '-d', String(depth), '-s', String(IO), '-S', String(STEP), '-o', String(start), '-t', 'writeback', '-f', 'vhdx',
    ...(mode === 'write' ? ['-w', `--pattern=${PATTERN}`] : []), path,
  ];
}

function childArgs(path: string, mode: Mode, depth: number, count: number, written: number): string[] {
  const start = mode === 'write' ? WRITE_START : READ_START;
  return [process.argv[1]!, CHILD, path, mode, String(depth), String(count), String(start), String(written)];
}

interface BlockMap {
  /** File offset of virtual `offset` (every block is allocated). */
  toFile(offset: number): number;
  /** Virtual offset of file offset `file`, or null outside payload blocks. */
  toVirtual(file: number): number | null;
}

/** Where each payload block lies in the file, from our BAT. */
async function blockMap(path: string): Promise<BlockMap> {
  const image = await openImage(path);
  const files: number[] = [];
  for (const e of (await image.extents())) {
    for (let at = 0; at < e.length; at += BLOCK_SIZE) files[(e.offset + at) / BLOCK_SIZE] = e.fileOffset! + at;
  }
  await image.close();
  return {
    toFile: (offset) => files[Math.floor(offset / BLOCK_SIZE)]! + (offset % BLOCK_SIZE),
    toVirtual: (file) => {
      const block = files.findIndex((f) => file >= f && file < f + BLOCK_SIZE);
      return block < 0 ? null : block * BLOCK_SIZE + file - files[block]!;
    },
  };
}

/**
 * The floor (information): the same requests as plain pread/pwrite system calls on the image file, at
 * the file offsets the BAT gives, in a synchronous loop in this process, then (writes) one fdatasync.
 * What the kernel alone costs per request; neither contender can go below it. Returns the loop's seconds.
 */
function floorLoop(path: string, mode: Mode, count: number, map: BlockMap): number {
  const fd = openSync(path, mode === 'write' ? 'r+' : 'r');
  try {
    const buffer = Buffer.alloc(IO, PATTERN);
    const files = Array.from(offsets(mode === 'write' ? WRITE_START : READ_START, count), (at) => map.toFile(at));
    const start = performance.now();
    if (mode === 'write') for (const at of files) writeSync(fd, buffer, 0, IO, at);
    else for (const at of files) readSync(fd, buffer, 0, IO, at);
    const loop = (performance.now() - start) / 1000;
    if (mode === 'write') fdatasyncSync(fd);
    return loop;
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs both contenders under strace with a small count and compares the virtual offsets of their
 * 4 KiB payload transfers with the formula. Returns the problems (none when everything agrees).
 */
async function checkOffsets(path: string, dir: string, count: number, written: number, map: BlockMap): Promise<string[]> {
  const problems: string[] = [];
  const traceFile = join(dir, 'offsets.strace');
  for (const { mode, depth } of CELLS.filter((c) => c.cache === 'cached')) {
    const expected = [...offsets(mode === 'write' ? WRITE_START : READ_START, count)];
    for (const who of ['vhdx', 'qemu'] as Who[]) {
      const [command, args] = who === 'vhdx' ? [process.execPath, childArgs(path, mode, depth, count, written)] : ['qemu-img', qemuArgs(path, mode, depth, count)];
      h.run('strace', ['-f', '-qq', '-s', '0', '-o', traceFile, '-e', `trace=${mode === 'write' ? 'pwrite64,pwritev' : 'pread64,preadv'}`, command, ...args]);
      const seen: number[] = [];
      for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
        // pread64(fd, ""..., 4096, OFFSET) = 4096, or preadv(fd, [{iov_base=""..., iov_len=4096}], 1, OFFSET) = 4096;
        // QEMU's pool threads make strace split calls into "pread64(fd, <unfinished ...>" and
        // "<... pread64 resumed>""..., 4096, OFFSET) = 4096" lines; the arguments are on one of the two.
        const m = /p(?:read|write)64[( ].*, (\d+), (\d+)(?:\)\s+=| <unfinished)/.exec(line) ?? /p(?:read|write)v[( ].*iov_len=(\d+)\}\], 1, (\d+)(?:\)\s+=| <unfinished)/.exec(line);
        if (!m || Number(m[1]) !== IO) continue;
        const v = map.toVirtual(Number(m[2]));
        if (v !== null) seen.push(v);
      }
      rmSync(traceFile, { force: true });
      const a = depth === 1 ? seen : [...seen].sort((x, y) => x - y);
      const b = depth === 1 ? expected : [...expected].sort((x, y) => x - y);
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
        problems.push(`${who} ${mode} -d ${depth}: offsets differ from the formula (saw ${seen.length}: ${seen.slice(0, 4).join(', ')}...; expected ${expected.slice(0, 4).join(', ')}...)`);
      }
    }
  }
  return problems;
}

interface Result {
  whole: number[];
  loop: number[];
  close: number[];
  problems: string[];
}

async function main(): Promise<number> {
  if (process.argv[2] === CHILD) {
    const [path, mode, depth, count, start, written] = process.argv.slice(3);
    await child(path!, mode as Mode, Number(depth), Number(count), Number(start), Number(written));
    return 0;
  }
  h = { ...(await import('./write-lib.js')), warmPageCache: (await import('./lib.js')).warmPageCache };
  const args = h.parseCommonArgs(process.argv.slice(2), ['count']);
  const count = Number(args.rest.get('count') ?? (args.quick ? 20_000 : 100_000));
  if (!Number.isSafeInteger(count) || count < 1 || count > SIZE / IO) {
    console.error(`--count must be from 1 to ${SIZE / IO}`);
    return 2;
  }
  if (!h.available('qemu-img')) {
    console.error('qemu-img is not installed: nothing to compare with');
    return 1;
  }
  // Our child is started as bin/vhdx starts the CLI, without NODE_EXTRA_CA_CERTS: Node 20 reads that
  // file at every start (about 0.1 s here), and this library makes no TLS connection.
  delete process.env.NODE_EXTRA_CA_CERTS;
  const dir = h.scratch('vhdx-random-io', args.dir);
  if (h.freeBytes(dir) < SIZE + 256 * MiB) {
    console.error(`not enough free space in ${dir}: need ${h.bytes(SIZE + 256 * MiB)}`);
    return 1;
  }
  const image = join(dir, 'random-io.vhdx');
  console.log(
    `random-io: ${count.toLocaleString('en')} requests of ${IO} bytes per run on a ${h.bytes(SIZE)} dynamic VHDX (${h.bytes(BLOCK_SIZE)} blocks, all allocated), ` +
      `offsets (k * ${STEP}) mod ${h.bytes(SIZE)} from ${READ_START} (reads) / ${WRITE_START} (writes); best and median of ${args.runs} interleaved rounds${args.quick ? ' (quick)' : ''}`,
  );
  console.log(h.environmentLine());
  const made = performance.now();
  await makeImage(image);
  console.log(`  image made and filled in ${h.seconds((performance.now() - made) / 1000)}`);
  const problems = await verifyImage(image, 0);
  const wrongImage = h.qemuCheck(image);
  if (wrongImage) problems.push(wrongImage);
  const map = await blockMap(image);
  let written = 0;
  if (args.trace && h.available('strace', ['-V'])) {
    const small = 64;
    const offsetProblems = await checkOffsets(image, dir, small, written, map);
    written = small;
    console.log(offsetProblems.length ? `  offsets: MISMATCH` : `  offsets: both contenders issue exactly the formula's ${small} offsets in every cell (strace)`);
    problems.push(...offsetProblems);
  } else {
    console.log('  offsets: not checked (strace missing or --no-trace)');
  }
  if (problems.length) {
    for (const p of problems) console.error(`PROBLEM: ${p}`);
    return 1;
  }

  const results = new Map<Key, Result>();
  // The floor is the same at every depth (one synchronous loop): measured with the depth-1 cells.
  const keys: Key[] = CELLS.flatMap(({ cell, depth }) => ((depth === 1 ? ['vhdx', 'qemu', 'floor'] : ['vhdx', 'qemu']) as Who[]).map((who) => `${cell}:${who}` as Key));
  for (const k of keys) results.set(k, { whole: [], loop: [], close: [], problems: [] });
  /** After a write run: `qemu-img check`, and sampled pages (written or not) read back through the library. */
  const afterWrite = async (round: number): Promise<string | null> => {
    written = Math.max(written, count);
    const wrong = [h.qemuCheck(image), ...(await verifyImage(image, written))].filter((p) => p !== null);
    return wrong.length ? `round ${round + 1}: ${wrong.join('; ')}` : null;
  };
  const order: [Key, number][] = [];
  h.rounds(keys, args.runs, (key, round) => order.push([key, round]));
  for (const [key, round] of order) {
    const [cell, who] = key.split(':') as [Cell, Who];
    const spec = CELLS.find((c) => c.cell === cell)!;
    const { mode, depth } = spec;
    const r = results.get(key)!;
    h.settle();
    // Both states start from nothing cached, so what earlier runs left (small folios where they wrote)
    // does not carry over: a cached run always finds the file read in whole by readahead.
    const left = evictPageCache(image);
    if (left > 16 * MiB) r.problems.push(`round ${round + 1}: ${h.bytes(left)} of the image stayed in the page cache`);
    if (spec.cache === 'cached') h.warmPageCache(image);
    if (who === 'floor') {
      const loop = floorLoop(image, mode, count, map);
      r.loop.push(loop);
      const wrong = mode === 'write' ? await afterWrite(round) : null;
      if (wrong) r.problems.push(wrong);
      console.log(
        `  round ${round + 1}: ${cellName(spec).padEnd(16)} ${'floor (info)'.padEnd(15)} loop ${h.seconds(loop)}  ${iops(count, loop).padStart(9)} IOPS  ` +
          `(${((loop / count) * 1e6).toFixed(1)} us a request)${wrong ? '  CHECK FAILED' : ''}`,
      );
      continue;
    }
    const [command, cmdArgs] = who === 'vhdx' ? [process.execPath, childArgs(image, mode, depth, count, written)] : ['qemu-img', qemuArgs(image, mode, depth, count)];
    const t = h.timed(command, cmdArgs);
    let loop = Number.NaN;
    let close = Number.NaN;
    let open = Number.NaN;
    if (who === 'vhdx') {
      const report = JSON.parse(t.stdout.trim().split('\n').pop()!) as ChildReport;
      loop = report.loop;
      close = report.close;
      open = report.open;
      for (const b of report.bad) r.problems.push(`round ${round + 1}: ${b}`);
    } else {
      const m = /Run completed in ([\d.]+) seconds/.exec(t.stdout);
      if (m) loop = Number(m[1]);
    }
    r.whole.push(t.seconds);
    r.loop.push(loop);
    r.close.push(close);
    const wrong = mode === 'write' ? await afterWrite(round) : null;
    if (wrong) r.problems.push(wrong);
    console.log(
      `  round ${round + 1}: ${cellName(spec).padEnd(16)} ${(who === 'vhdx' ? 'vhdx library' : 'qemu-img bench').padEnd(15)} ${h.seconds(t.seconds)}  ` +
        `${iops(count, t.seconds).padStart(9)} IOPS  (loop ${h.seconds(loop)}${who === 'vhdx' ? `; open ${h.seconds(open)}, close ${h.seconds(close)}` : ''})${wrong ? '  CHECK FAILED' : ''}`,
    );
  }

  const rows = [['cell', 'vhdx IOPS best', 'median', 'qemu-img IOPS best', 'median', 'ratio best', 'ratio median', 'loop us/req: vhdx', 'qemu-img', 'floor', 'vhdx close', 'verified']];
  const ratios: { cell: string; best: number; median: number; loop: number }[] = [];
  for (const spec of CELLS) {
    const { cell, mode } = spec;
    const ours = results.get(`${cell}:vhdx`)!;
    const qemu = results.get(`${cell}:qemu`)!;
    const floor = results.get(`${mode}1${spec.cache === 'cold' ? '-cold' : ''}:floor` as Key)!;
    const ratioBest = h.best(qemu.whole) / h.best(ours.whole);
    const ratioMedian = h.median(qemu.whole) / h.median(ours.whole);
    ratios.push({ cell: cellName(spec), best: ratioBest, median: ratioMedian, loop: h.best(qemu.loop) / h.best(ours.loop) });
    rows.push([
      cellName(spec),
      iops(count, h.best(ours.whole)),
      iops(count, h.median(ours.whole)),
      iops(count, h.best(qemu.whole)),
      iops(count, h.median(qemu.whole)),
      `${ratioBest.toFixed(2)}x`,
      `${ratioMedian.toFixed(2)}x`,
      perRequest(count, h.best(ours.loop)),
      perRequest(count, h.best(qemu.loop)),
      perRequest(count, h.best(floor.loop)),
      mode === 'write' ? h.seconds(h.best(ours.close)) : '-',
      ours.problems.length || qemu.problems.length ? 'WRONG' : 'ok',
    ]);
  }
  console.log('');
  console.log(h.table(rows));
  console.log(`  IOPS: ${count.toLocaleString('en')} requests / whole-process seconds (start-up, open and close included); ratio: our IOPS / QEMU's.`);
  console.log('  loop us/req: microseconds a request in the request loop alone (ours in-process; QEMU\'s "Run completed in"), best; floor: the same');
  console.log('  requests as plain pread/pwrite calls on the file in a synchronous loop (the kernel alone); vhdx close: our close (writes: fdatasync + header update), best.');
  console.log(`  ${h.environmentLine()}`);
  console.log('');
  for (const r of ratios) {
    console.log(h.verdict({ name: `vhdx/qemu-img IOPS, ${r.cell.padEnd(16)}`, ratio: r.best, op: '>=', limit: TARGET, note: `(median ${r.median.toFixed(2)}x; loop alone ${r.loop.toFixed(2)}x)` }));
  }
  let ok = true;
  for (const key of keys) {
    for (const p of results.get(key)!.problems) {
      console.error(`WRONG (${key}): ${p}`);
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

/**
 * Drops the image from the page cache (its dirty pages were written by the \`sync\` before): dd's
 * \`iflag=nocache count=0\` advises the kernel (POSIX_FADV_DONTNEED) for the whole file. Returns the
 * bytes still cached, from fincore (0 where fincore is missing).
 */
function evictPageCache(path: string): number {
  h.run('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (!h.available('fincore', ['--version'])) return 0;
  return Number(h.run('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]).trim());
}

function perRequest(count: number, s: number): string {
  return Number.isFinite(s) && s > 0 ? ((s / count) * 1e6).toFixed(1) : '-';
}

function iops(count: number, s: number): string {
  return Number.isFinite(s) && s > 0 ? Math.round(count / s).toLocaleString('en') : '-';
}

process.exitCode = await main();
