import { rebaseImage } from '../../node/paths.js';
import { writeStdout } from '../output.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import type { Command } from '../command.js';

export const rebase: Command = {
  name: 'rebase',
  usage: 'vhdx rebase CHILD --parent NEW [--force] [--cache writeback|unsafe|none]',
  examples: `
vhdx rebase checkpoint.avhdx --parent /mnt/new/base.vhdx
vhdx rebase checkpoint.avhdx --parent restored.vhdx --force   # you vouch it is the same disk
`,
  options: {
    parent: { type: 'string', description: 'the new parent (required)' },
    force: { type: 'boolean', description: 'accept a parent whose DataWriteGuid does not match (rewrites the linkage)' },
    cache: CACHE_OPTION,
  },
  positionals: ['CHILD'],
  async run({ positionals: [child], values }) {
    if (values.parent === undefined) {
      const { usage } = await import('../args.js');
      throw usage('rebase needs --parent NEW');
    }
    await rebaseImage(child!, String(values.parent), { force: Boolean(values.force), ...cacheOption(values) });
    await writeStdout(`${child} now points at ${String(values.parent)}\n`);
  },
};
