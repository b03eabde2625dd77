import { VhdxError } from '../../format/errors.js';
import type { Command } from '../command.js';

export const commit: Command = {
  name: 'commit',
  summary: 'not built yet',
  usage: 'vhdx commit FILE',
  examples: ['vhdx commit disk.vhdx'],
  options: {},
  positionals: ['FILE'],
  async run() {
    throw new VhdxError('UNSUPPORTED', 'commit is not built yet');
  },
};
