import { openDisk } from '../../node/paths.js';
import { VhdxError } from '../../format/errors.js';
import type { VhdImage } from '../../vhd/image.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { PARENT_OPTIONS, parentOptions } from '../parent-options.js';
import { humanSize } from '../args.js';
import { shownPath, writeStdout, JSON_OPTION } from '../output.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import type { Command } from '../command.js';

export const map: Command = {
  name: 'map',
  usage: 'vhdx map FILE [--json] [--parent PATH] [-p|--no-progress]   (FILE: a VHDX or a VHD)',
  examples: `
vhdx map disk.vhdx
vhdx map disk.vhdx --json | jq '.[] | select(.kind == "data")'
vhdx map old.vhd                 # a VHD's blocks: stored, unallocated, or (differencing) the parent's
`,
  options: {
    json: JSON_OPTION,
    ...PARENT_OPTIONS,
    ...HTTP_OPTIONS,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    const disk = await openDisk(file!, { ...parentOptions(values), ...httpOptions(values) });
    if (disk.kind === 'vhd') return mapVhd(disk.image, file!, values);
    if (disk.kind === 'raw') {
      await disk.close();
      throw new VhdxError('NOT_VHDX', 'not a VHDX file (no "vhdxfile" signature at offset 0) nor a VHD (no footer): a raw file has no block map', { file: shownPath(file!), offset: 0 });
    }
    const image = disk.image;
    // On stderr, and only on a terminal: the extents on stdout are untouched.
    const progress = await progressBar(values.progress as boolean | undefined, 'map');
    try {
      // A differencing disk: which layer of the chain serves each run.
      const chain = image.chain();
      const layered = chain.length > 1;
      // Streamed: the BAT is walked a page at a time and each extent printed as it is known, in
      // batches of output, so memory stays bounded whatever the disk's size.
      const out = batched();
      let count = 0;
      let data = 0;
      if (values.json) await out.add('[');
      else {
        await out.add(`${'offset'.padStart(16)} ${'length'.padStart(16)} ${'size'.padStart(10)}  ${'kind'.padEnd(11)} ${'state'.padEnd(17)} ${layered ? 'file offset'.padEnd(12) + ' layer' : 'file offset'}\n`);
      }
      for await (const e of image.walk(0, image.virtualSize, { resolved: layered })) {
        if (e.kind === 'data' && (e.layer ?? 0) === 0) data += e.length;
        if (values.json) {
          const shown = e.layer === undefined ? e : { ...e, file: chain[e.layer]!.backend.name };
          await out.add(`${count === 0 ? '' : ','}\n  ${JSON.stringify(shown)}`);
        } else {
          const at = e.fileOffset === undefined ? '-' : hex(e.fileOffset).trim();
          await out.add(`${hex(e.offset)} ${hex(e.length)} ${humanSize(e.length).padStart(10)}  ${e.kind.padEnd(11)} ${e.state.padEnd(17)} ${layered ? `${at.padEnd(12)} ${e.layer}: ${chain[e.layer!]!.backend.name}` : at}\n`);
        }
        count++;
        progress.update(e.offset + e.length, image.virtualSize);
      }
      if (values.json) await out.add(count === 0 ? ']\n' : '\n]\n');
      else await out.add(`${count} extents; ${humanSize(data)} of ${humanSize(image.virtualSize)} stored in the file${layered ? ` (${shownPath(file!)}), the rest from ${chain.length - 1} parent layer(s)` : ''}\n`);
      await out.flush();
    } finally {
      progress.stop();
      await image.close();
    }
  },
};

/** A VHD's runs: stored blocks (with their file offsets), unallocated ones, and a differencing disk's parent runs. */
async function mapVhd(image: VhdImage, file: string, values: Record<string, unknown>): Promise<void> {
  const progress = await progressBar(values.progress as boolean | undefined, 'map');
  try {
    const out = batched();
    let count = 0;
    let data = 0;
    if (values.json) await out.add('[');
    else await out.add(`${'offset'.padStart(16)} ${'length'.padStart(16)} ${'size'.padStart(10)}  ${'kind'.padEnd(11)} file offset\n`);
    for await (const e of image.walk(0, image.virtualSize)) {
      if (e.kind === 'data') data += e.length;
      if (values.json) await out.add(`${count === 0 ? '' : ','}\n  ${JSON.stringify(e)}`);
      else await out.add(`${hex(e.offset)} ${hex(e.length)} ${humanSize(e.length).padStart(10)}  ${e.kind.padEnd(11)} ${e.fileOffset === undefined ? '-' : hex(e.fileOffset).trim()}\n`);
      count++;
      progress.update(e.offset + e.length, image.virtualSize);
    }
    if (values.json) await out.add(count === 0 ? ']\n' : '\n]\n');
    else await out.add(`${count} extents; ${humanSize(data)} of ${humanSize(image.virtualSize)} stored in the file (a ${image.type} VHD${image.type === 'differencing' ? ', the rest from its parent' : ''})\n`);
    await out.flush();
  } finally {
    progress.stop();
    await image.close();
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`.padStart(16);
}

/** Text for standard output gathered into writes of about 64 KiB. */
function batched(): { add(text: string): Promise<void>; flush(): Promise<void> } {
  let parts: string[] = [];
  let size = 0;
  const flush = async (): Promise<void> => {
    if (parts.length === 0) return;
    const text = parts.join('');
    parts = [];
    size = 0;
    await writeStdout(text);
  };
  return {
    async add(text) {
      parts.push(text);
      size += text.length;
      if (size >= 64 * 1024) await flush();
    },
    flush,
  };
}
