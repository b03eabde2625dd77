/** The image-shape options shared by `create` and `convert`. */
import type { OptionSpec } from './command.js';
import { parseSize, usage } from './args.js';
import type { CreateOptions } from '../ops/create.js';

export const IMAGE_OPTIONS: Record<string, OptionSpec> = {
  type: { type: 'string', description: 'dynamic (default) or fixed' },
  'block-size': { type: 'string', description: 'payload block size, a power of two from 1M to 256M (default 32M; 2M for a differencing disk, as Hyper-V)' },
  'logical-sector-size': { type: 'string', description: '512 (default) or 4096' },
  'physical-sector-size': { type: 'string', description: '512 or 4096 (default)' },
  'log-size': { type: 'string', description: 'metadata log size, whole MiB (default 1M)' },
};

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function imageOptions(values: Values): Omit<CreateOptions, 'virtualSize'> {
  const out: Omit<CreateOptions, 'virtualSize'> = {};
  const type = values.type;
  if (type !== undefined) {
    if (type !== 'dynamic' && type !== 'fixed') throw usage(`--type must be dynamic or fixed, not ${JSON.stringify(type)}`);
    out.type = type;
  }
  const size = (name: string): number | undefined => (values[name] === undefined ? undefined : parseSize(String(values[name]), `--${name}`));
  const blockSize = size('block-size');
  if (blockSize !== undefined) out.blockSize = blockSize;
  const logical = size('logical-sector-size');
  if (logical !== undefined) out.logicalSectorSize = logical;
  const physical = size('physical-sector-size');
  if (physical !== undefined) out.physicalSectorSize = physical;
  const log = size('log-size');
  if (log !== undefined) out.logLength = log;
  return out;
}
