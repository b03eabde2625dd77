import { openImage } from '../../node/paths.js';
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
`,
  options: {
    json: JSON_OPTION,
    chain: { type: 'boolean', description: 'differencing disks: describe every image of the chain, child first' },
    ...PARENT_OPTIONS,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    // The file alone unless the chain is asked for: a missing parent does not stop `info`.
    const image = await openImage(file!, { readOnly: true, ...(values.chain ? parentOptions(values) : { parentPath: false }) });
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
