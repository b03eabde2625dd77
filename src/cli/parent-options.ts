/** The options every reading command takes for differencing disks. */
import type { OpenImageOptions } from '../node/paths.js';
import type { OptionSpec } from './command.js';

export const PARENT_OPTIONS: Record<string, OptionSpec> = {
  parent: { type: 'string', description: 'differencing disks: the parent, instead of where the locator says' },
  'force-parent': { type: 'boolean', description: 'accept a parent that changed since the child was made (may read garbage)' },
};

export function parentOptions(values: Record<string, unknown>): Pick<OpenImageOptions, 'parentPath' | 'ignoreParentLinkage'> {
  const out: Pick<OpenImageOptions, 'parentPath' | 'ignoreParentLinkage'> = {};
  if (values.parent !== undefined) out.parentPath = String(values.parent);
  if (values['force-parent']) out.ignoreParentLinkage = true;
  return out;
}
