/**
 * What the upload and download commands take as the blob: a URL (a SAS URL, whose token is never
 * printed), or CONTAINER/BLOB in the account of the connection string in the environment. Also the
 * footer time rule the commands share: SOURCE_DATE_EPOCH when set, so rebuilt images are identical.
 */
import { VhdxError } from '../format/errors.js';
import { guidToString } from '../format/guid.js';
import type { AzureTarget } from '../node/azure.js';
import type { VhdFooter } from '../vhd/footer.js';
import { usage } from './args.js';

export function azureTarget(text: string): AzureTarget {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return text;
  const slash = text.indexOf('/');
  if (slash <= 0 || slash === text.length - 1) throw usage(`${JSON.stringify(text)} is neither a blob URL (https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS) nor CONTAINER/BLOB`);
  return { container: text.slice(0, slash), blob: text.slice(slash + 1) };
}

/** The target as messages show it: a URL without its query string (the SAS token). */
export function targetName(text: string): string {
  const query = text.indexOf('?');
  return query === -1 ? text : text.slice(0, query);
}

/** The footer's timestamp: SOURCE_DATE_EPOCH (seconds) when set, else now. */
export function footerTime(env: NodeJS.ProcessEnv = process.env): Date {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === '') return new Date();
  if (!/^\d+$/.test(epoch.trim())) throw new VhdxError('INVALID_ARGUMENT', `SOURCE_DATE_EPOCH must be a number of seconds, not ${JSON.stringify(epoch)}`);
  return new Date(Number(epoch.trim()) * 1000);
}

/** `--parallel N` (1 to 64). */
export function parallelOption(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw usage(`--parallel must be a whole number from 1 to 64, not ${JSON.stringify(value)}`);
  return n;
}

/** Errors with the blob named (never by the raw argument, which may hold a SAS token). */
export function nameRemoteErrors(error: unknown, name: string): unknown {
  if (error instanceof VhdxError && error.file === undefined) error.file = name;
  return error;
}

/** The footer fields worth printing (`--json`). */
export function footerSummary(footer: VhdFooter): Record<string, unknown> {
  return { diskType: footer.diskType, currentSize: footer.currentSize, uniqueId: guidToString(footer.uniqueId), timestamp: footer.timestamp, creator: footer.creatorApplication };
}
