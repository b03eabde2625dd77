/** `--cache MODE` (`-t`), shared by every command that writes an image: qemu-img's cache modes. */
import { CACHE_MODES, type CacheMode } from '../io/backend.js';
import { usage } from './args.js';
import type { OptionSpec } from './command.js';

export const CACHE_OPTION: OptionSpec = {
  type: 'string',
  short: 't',
  description:
    'writeback (default: data made durable before the metadata that points at it, synced at the end), ' +
    'unsafe (no syncs at all, for scratch images: a power loss may leave an image that opens but holds garbage), ' +
    'none (O_DIRECT, bypassing the page cache, with the syncs of writeback)',
};

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The `--cache` value as an option object to spread into an open (empty when not given). */
export function cacheOption(values: Values): { cache?: CacheMode } {
  const text = values.cache;
  if (text === undefined) return {};
  if (!CACHE_MODES.includes(text as CacheMode)) throw usage(`--cache must be ${CACHE_MODES.join(', ')}, not ${JSON.stringify(text)}`);
  return { cache: text as CacheMode };
}
