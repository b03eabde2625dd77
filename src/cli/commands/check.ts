import { VhdxError } from '../../format/errors.js';
import type { Command } from '../command.js';

export const check: Command = {
  name: 'check',
  summary: 'check an image for corruption and leaked space',
  usage: 'vhdx check FILE',
  examples: ['vhdx check disk.vhdx'],
  options: {},
  positionals: ["FILE"],
  async run() {
    throw new VhdxError('UNSUPPORTED', 'check is not built yet');
  },
};
