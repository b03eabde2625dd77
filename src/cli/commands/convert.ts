import { unlinkSync } from 'node:fs';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { stat } from 'node:fs/promises';
import { NodeFileBackend } from '../../node/file-backend.js';
import { openDisk } from '../../node/paths.js';
import { PARENT_OPTIONS, parentOptions } from '../parent-options.js';
import type { VhdxImage } from '../../image/image.js';
import type { Backend } from '../../io/backend.js';
import type { VhdImage } from '../../vhd/image.js';
import { convertToRaw } from '../../ops/convert.js';
import type { DiskSource } from '../../ops/source.js';
import { VhdxError } from '../../format/errors.js';
import { isHttpUrl } from '../../io/http.js';
import { humanSize, parseSize, usage } from '../args.js';
import { IMAGE_OPTIONS, imageOptions } from '../image-options.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { discardOutput, interruptible, interruptibleChunks, type Interrupt } from '../interrupt.js';
import { stdoutSink } from '../output.js';
import type { Command } from '../command.js';

export const convert: Command = {
  name: 'convert',
  usage: 'vhdx convert IN OUT [-O raw|vhdx|vhd] [--azure] [--type dynamic|fixed] [--block-size N] [--logical-sector-size N] [--physical-sector-size N] [--size N] [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx convert disk.vhdx disk.raw            # VHDX to raw, sparse where unallocated
vhdx convert disk.raw disk.vhdx            # raw to dynamic VHDX, zero blocks skipped
vhdx convert disk.vhdx - | gzip > disk.gz  # raw to standard output
dd if=/dev/sdb | vhdx convert - disk.vhdx --size 64G --type fixed
vhdx convert disk.raw scratch.vhdx -t unsafe  # no syncs: fast, for scratch images only
vhdx convert disk.vhdx disk.vhd            # fixed VHD (v1), sparse where the source is zero
vhdx convert disk.vhdx disk.vhd --type dynamic  # dynamic VHD, 2 MiB blocks (--block-size N)
vhdx convert disk.raw disk.vhd --azure     # fixed VHD, size rounded up to a whole MiB for Azure
vhdx convert old.vhd disk.vhdx             # VHD (fixed, dynamic or differencing) to VHDX
SOURCE_DATE_EPOCH=0 vhdx convert disk.raw disk.vhd  # reproducible footer timestamp
`,
  options: {
    ...PARENT_OPTIONS,
    ...HTTP_OPTIONS,
    'output-format': { type: 'string', short: 'O', description: 'raw, vhdx or vhd (default by OUT: .vhdx or .avhdx is vhdx, .vhd is a VHD, fixed unless --type dynamic, else raw); IN is sniffed' },
    azure: { type: 'boolean', description: 'VHD output: round the size up to a whole MiB, as Azure requires' },
    ...IMAGE_OPTIONS,
    size: { type: 'string', description: 'size of the disk on standard input (IN is -); input ending early is an error' },
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['IN', 'OUT'],
  async run({ positionals: [input, out], values }) {
    const format = values['output-format'] === undefined ? (/\.a?vhdx$/i.test(out!) ? 'vhdx' : /\.vhd$/i.test(out!) ? 'vhd' : 'raw') : String(values['output-format']);
    if (format !== 'raw' && format !== 'vhdx' && format !== 'vhd') throw usage(`-O must be raw, vhdx or vhd, not ${JSON.stringify(format)}${format === 'vpc' ? ' (a VHD, as qemu-img calls it, is -O vhd here)' : ''}`);
    if (out === '-' && format !== 'raw') throw usage('only raw output can go to standard output');
    const shape = imageOptions(values);
    const vhdShape: { type?: 'fixed' | 'dynamic'; blockSize?: number } = {};
    if (format === 'vhd') {
      // A VHD takes a type (fixed by default) and, dynamic, a block size; its sectors are 512 bytes.
      const { type, blockSize, ...rest } = shape;
      if (Object.keys(rest).length > 0) throw usage('sector-size and log-size options apply to VHDX output only (a VHD has 512-byte sectors)');
      if (type) vhdShape.type = type;
      if (blockSize !== undefined) {
        if (type !== 'dynamic') throw usage('--block-size applies to a dynamic VHD only (--type dynamic)');
        vhdShape.blockSize = blockSize;
      }
    } else if (format !== 'vhdx' && Object.keys(shape).length > 0) {
      throw usage('--type, --block-size and sector-size options apply to VHDX and VHD output only');
    }
    const azure = Boolean(values.azure);
    if (azure && format !== 'vhd') throw usage('--azure applies to VHD output only (-O vhd)');
    if (azure && vhdShape.type === 'dynamic') throw usage('--azure needs a fixed VHD: Azure does not take dynamic ones');
    const time = format === 'vhd' ? sourceDateEpoch() : undefined;
    if (isHttpUrl(out!)) throw usage('OUT must be a local file or - (a URL can only be read)');
    if (input === '-' && values.size === undefined) throw usage('reading standard input needs --size');
    if (input !== '-' && values.size !== undefined) throw usage('--size applies to standard input only (IN is -)');
    const cache = cacheOption(values);
    if (cache.cache && out === '-') throw usage('--cache applies to an output file, not standard output');
    const stdinSize = values.size === undefined ? 0 : parseSize(String(values.size), '--size');
    // Where OUT already exists: never the input itself, and never removed on failure unless a regular file.
    const outStat = out === '-' ? null : await stat(out!).catch(() => null);
    if (outStat && input !== '-') {
      const inStat = await stat(input!).catch(() => null);
      if (inStat && inStat.dev === outStat.dev && inStat.ino === outStat.ino) throw usage(`IN and OUT are the same file (${out})`);
    }
    const removable = outStat === null || outStat.isFile();

    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'convert');
    let inputBackend: Backend | null = null;
    let image: VhdxImage | null = null;
    let vhd: VhdImage | null = null;
    try {
      // The VHDX writing modules load only when the output is VHDX (start-up time of a raw conversion).
      let source: DiskSource | null = null;
      let onProgress = (done: number, total: number): void => progress.update(done, total);
      if (input === '-') {
        // Progress counts the bytes received, which advances smoothly even with large blocks.
        onProgress = () => undefined;
        const { streamSource } = await import('../../ops/source.js');
        source = streamSource(stdinOfSize(stdinSize, stop, (n) => progress.update(n, stdinSize)), stdinSize);
      } else {
        const disk = await openDisk(input!, { ...parentOptions(values), ...httpOptions(values) }); // a differencing disk is flattened with its chain
        if (disk.kind === 'vhdx') {
          image = disk.image;
        } else if (disk.kind === 'vhd') {
          vhd = disk.image;
          source = (await import('../../ops/source.js')).vhdSource(vhd);
        } else {
          inputBackend = disk.backend;
          const { rawSource } = await import('../../ops/source.js');
          source = rawSource(disk.backend, disk.size);
        }
      }
      // Over HTTP each chunk is split into parallel requests (HttpBackend): larger chunks keep more of
      // them in flight, where a 2 MiB chunk waits on two round trips at a time.
      const chunkSize = isHttpUrl(input!) ? HTTP_CHUNK : undefined;
      if (out === '-') {
        if (!image && !vhd) throw usage('raw to raw conversion is a copy: use cp');
        const sink = stdoutSink();
        const write = (data: Uint8Array): Promise<void> => stop.race(sink.write(data));
        const stream = { kind: 'stream', write, writeZeros: (n: number) => stop.race(sink.writeZeros(n)) } as const;
        const options = { onProgress, signal: stop.signal, ...(chunkSize ? { chunkSize } : {}) };
        if (image) await convertToRaw(image, stream, options);
        else await (await import('../../ops/convert-source.js')).convertSourceToRaw(source!, stream, options);
        stop.check();
        return;
      }
      if (format === 'raw' && !image && !vhd) throw usage('raw to raw conversion is a copy: use cp');
      stop.check();
      const output = await NodeFileBackend.open(out!, { readOnly: false, create: true, ...cache });
      if (removable) stop.onForcedExit(() => unlinkSync(out!));
      try {
        if (format === 'raw') {
          const options = { onProgress, signal: stop.signal, ...(chunkSize ? { chunkSize } : {}) };
          if (image) await convertToRaw(image, { kind: 'file', backend: output }, options);
          else await (await import('../../ops/convert-source.js')).convertSourceToRaw(source!, { kind: 'file', backend: output }, options);
          // Durable when the command returns, as qemu-img convert -t writeback (a no-op with --cache unsafe).
          await output.flush();
        } else if (format === 'vhd') {
          const { convertToVhd } = await import('../../ops/convert-to-vhd.js');
          source ??= (await import('../../ops/source.js')).vhdxSource(image!);
          await convertToVhd(source, output, { azure, ...vhdShape, ...(time ? { time } : {}), onProgress, signal: stop.signal }); // footers last, after a flush
        } else {
          const { convertToVhdx } = await import('../../ops/convert-to-vhdx.js');
          source ??= (await import('../../ops/source.js')).vhdxSource(image!);
          await convertToVhdx(source, output, { ...shape, onProgress, signal: stop.signal }); // closes the image it made, durably
        }
        // A signal that arrives once the copy is done still means the user did not want the output.
        stop.check();
        await output.close();
      } catch (error) {
        throw await discardOutput(error, out!, output, { removable });
      }
    } finally {
      progress.stop();
      stop.dispose();
      if (input === '-') process.stdin.destroy(); // bytes past --size are not waited for
      if (image) await image.close();
      else if (vhd) await vhd.close();
      else await inputBackend?.close();
    }
  },
};

/** Bytes `convert` reads at a time from an image given by URL: 8 requests of 1 MiB. */
const HTTP_CHUNK = 8 * 1024 * 1024;

/**
 * The VHD footer's timestamp: `SOURCE_DATE_EPOCH` (whole seconds since 1970) when set, so the same
 * input gives the same bytes (reproducible builds); else now.
 */
function sourceDateEpoch(): Date | undefined {
  const text = process.env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text)) throw usage(`SOURCE_DATE_EPOCH must be whole seconds since 1970, not ${JSON.stringify(text)}`);
  return new Date(Number(text) * 1000);
}

/**
 * Standard input as the chunks of a disk of `size` bytes: each wait is cut short by a signal, and an
 * input that ends before `size` bytes is an error (a zero-padded image would hide the loss).
 */
async function* stdinOfSize(size: number, stop: Interrupt, onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
  let received = 0;
  for await (const chunk of interruptibleChunks(process.stdin, stop)) {
    received += chunk.length;
    onBytes(Math.min(received, size));
    yield chunk;
  }
  if (received < size) {
    throw new VhdxError('TRUNCATED', `ended after ${humanSize(received)} (${received} bytes), before the ${humanSize(size)} given by --size`, { file: 'standard input' });
  }
}
