import { VhdxError } from '../../format/errors.js';
import type { Command } from '../command.js';

export const serve: Command = {
  name: 'serve',
  summary: 'not built yet',
  usage: 'vhdx serve FILE',
  examples: ['vhdx serve disk.vhdx'],
  options: {},
  positionals: ['FILE'],
  async run() {
    throw new VhdxError('UNSUPPORTED', 'serve is not built yet');
  },
};
