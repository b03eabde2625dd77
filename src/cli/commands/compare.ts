import { VhdxError } from '../../format/errors.js';
import type { Command } from '../command.js';

export const compare: Command = {
  name: 'compare',
  summary: 'compare the virtual disks of two images (raw or VHDX); exit 0 equal, 1 different',
  usage: 'vhdx compare A B',
  examples: ['vhdx compare disk.vhdx disk.raw'],
  options: {},
  positionals: ['A', 'B'],
  async run() {
    throw new VhdxError('UNSUPPORTED', 'compare is not built yet');
  },
};
