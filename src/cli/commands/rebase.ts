import { VhdxError } from '../../format/errors.js';
import type { Command } from '../command.js';

export const rebase: Command = {
  name: 'rebase',
  summary: 'not built yet',
  usage: 'vhdx rebase FILE',
  examples: ['vhdx rebase disk.vhdx'],
  options: {},
  positionals: ['FILE'],
  async run() {
    throw new VhdxError('UNSUPPORTED', 'rebase is not built yet');
  },
};
