import { openDisk } from '../../node/paths.js';
import { VHD_MAX_GEOMETRY } from '../../vhd/footer.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import type { VhdImage } from '../../vhd/image.js';
import { VhdxError } from '../../format/errors.js';
import { PARENT_OPTIONS, parentOptions } from '../parent-options.js';
import { humanSize } from '../args.js';
import { printJson, shownPath, writeStdout, JSON_OPTION } from '../output.js';
import type { Command } from '../command.js';

export const info: Command = {
  name: 'info',
  usage: 'vhdx info FILE [--json] [--chain [--parent PATH]]',
  examples: `
vhdx info disk.vhdx
vhdx info disk.vhdx --json | jq .virtualSize
vhdx info checkpoint.avhdx --chain   # the child and every parent
vhdx info disk.vhd                   # a VHD (v1): type, size, geometry, creator
`,
  options: {
    json: JSON_OPTION,
    chain: { type: 'boolean', description: 'differencing disks: describe every image of the chain, child first' },
    ...PARENT_OPTIONS,
    ...HTTP_OPTIONS,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    // Opened once, as what it holds (one backend: a URL costs its requests once). The file alone unless
    // the chain is asked for: a missing parent does not stop `info`.
    const disk = await openDisk(file!, { ...(values.chain ? parentOptions(values) : { parentPath: false }), ...httpOptions(values) });
    if (disk.kind === 'vhd') return vhdInfo(disk.image, values);
    if (disk.kind === 'raw') {
      await disk.close();
      throw new VhdxError('NOT_VHDX', 'not a VHDX file (no "vhdxfile" signature at offset 0) nor a VHD (no footer)', { file: shownPath(file!), offset: 0 });
    }
    const image = disk.image;
    try {
      if (values.chain) {
        const chain = image.chain().map((layer) => ({ file: layer.backend.name, ...layer.info() }));
        if (values.json) return await printJson(chain);
        const lines = chain.map((l, depth) => {
          const linkage = l.parentLocator ? `, parent_linkage ${l.parentLocator.parent_linkage}` : '';
          return `${'  '.repeat(depth)}${depth === 0 ? '' : '└ '}${l.file}: ${l.type}, ${humanSize(l.virtualSize)}, ${l.allocatedBytes === null ? 'allocation not counted' : `${humanSize(l.allocatedBytes)} allocated`}, DataWriteGuid {${l.dataWriteGuid.toLowerCase()}}${linkage}`;
        });
        await writeStdout(lines.join('\n') + '\n');
        return;
      }
      const i = image.info();
      if (values.json) return await printJson({ file: shownPath(file!), ...i });
      const rows: [string, string][] = [
        ['file', shownPath(file!)],
        ['type', i.type],
        ['virtual size', `${humanSize(i.virtualSize)} (${i.virtualSize} bytes)`],
        ['file size', `${humanSize(i.fileSize)} (${i.fileSize} bytes)`],
        ['allocated', i.allocatedBytes === null ? 'not counted: the BAT is larger than its cache (vhdx map walks it)' : `${humanSize(i.allocatedBytes)} (${i.allocatedBytes} bytes)`],
        ['block size', humanSize(i.blockSize)],
        ['logical sector size', `${i.logicalSectorSize} bytes`],
        ['physical sector size', `${i.physicalSectorSize} bytes`],
        ['virtual disk id', i.virtualDiskId],
        ['data write guid', i.dataWriteGuid],
        ['file write guid', i.fileWriteGuid],
        ['log', `${i.logState} (${humanSize(i.logLength)} at file offset ${humanSize(i.logOffset)})`],
        ['header sequence', i.headerSequence],
        ['creator', i.creator || '(none)'],
      ];
      if (i.parentLocator) for (const [k, v] of Object.entries(i.parentLocator)) rows.push([`parent ${k}`, v]);
      for (const w of i.warnings) rows.push(['warning', w]);
      const width = Math.max(...rows.map((r) => r[0].length)) + 1;
      await writeStdout(rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n') + '\n');
    } finally {
      await image.close();
    }
  },
};

/** `info` of a VHD (v1): the footer and dynamic header, per layer with `--chain`. */
async function vhdInfo(image: VhdImage, values: Record<string, unknown>): Promise<void> {
  try {
    const layers: VhdImage[] = [];
    for (let layer: VhdImage | null = image; layer; layer = values.chain ? layer.parent : null) layers.push(layer);
    const infos = layers.map((layer) => ({ file: layer.backend.name, ...layer.info() }));
    if (values.json) return await printJson(values.chain ? infos : infos[0]);
    const blocks = infos.map((i) => {
      const g = i.geometry;
      const rows: [string, string][] = [
        ['file', i.file],
        ['format', 'VHD (v1)'],
        ['type', i.type],
        ['virtual size', `${humanSize(i.virtualSize)} (${i.virtualSize} bytes)`],
        ['file size', `${humanSize(i.fileSize)} (${i.fileSize} bytes)`],
        ['allocated', `${humanSize(i.allocatedBytes)} (${i.allocatedBytes} bytes)`],
      ];
      if (i.blockSize !== null) rows.push(['block size', humanSize(i.blockSize)]);
      rows.push(
        [
          'geometry',
          `${g.cylinders} cylinders, ${g.heads} heads, ${g.sectorsPerTrack} sectors per track ` +
            // The largest geometry says "use Current Size" (QEMU's force_size, and ours where no geometry is exact).
            (g.cylinders === VHD_MAX_GEOMETRY.cylinders && g.heads === VHD_MAX_GEOMETRY.heads && g.sectorsPerTrack === VHD_MAX_GEOMETRY.sectorsPerTrack ? '(the largest: the size is Current Size)' : `(${humanSize(g.cylinders * g.heads * g.sectorsPerTrack * 512)})`),
        ],
        ['unique id', i.uniqueId],
        ['created', i.created],
        ['creator', i.creator],
      );
      if (i.savedState) rows.push(['saved state', 'yes']);
      if (i.parentUniqueId) rows.push(['parent unique id', i.parentUniqueId]);
      if (i.parentName) rows.push(['parent name', i.parentName]);
      for (const w of i.warnings) rows.push(['warning', w]);
      const width = Math.max(...rows.map((r) => r[0].length)) + 1;
      return rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
    });
    await writeStdout(blocks.join('\n\n') + '\n');
  } finally {
    await image.close();
  }
}
