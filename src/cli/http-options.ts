/** The options every command that reads a URL takes for its HTTP requests (`HttpBackendOptions`). */
import type { HttpBackendOptions } from '../io/http.js';
import { usage } from './args.js';
import type { OptionSpec } from './command.js';

export const HTTP_OPTIONS: Record<string, OptionSpec> = {
  'http-timeout': { type: 'string', description: 'URLs: seconds one request may take before it is abandoned and retried (default 30)' },
  'http-tries': { type: 'string', description: 'URLs: tries per request, the first included, 1 to 100 (default 6)' },
  'http-header': { type: 'string', multiple: true, description: "URLs: an extra request header, 'Name: value' (repeatable; an Authorization header, say)" },
};

/** `{ http }` for the open functions, when any HTTP option was given. */
export function httpOptions(values: Record<string, unknown>): { http?: HttpBackendOptions } {
  const http: HttpBackendOptions = {};
  const timeout = values['http-timeout'];
  if (timeout !== undefined) {
    const seconds = Number(timeout);
    if (!/^\d+(\.\d+)?$/.test(String(timeout)) || !(seconds > 0) || seconds > 3600) throw usage(`--http-timeout must be seconds from 0.001 to 3600, not ${JSON.stringify(timeout)}`);
    http.timeoutMs = Math.max(1, Math.round(seconds * 1000));
  }
  const tries = values['http-tries'];
  if (tries !== undefined) {
    const n = Number(tries);
    if (!/^\d+$/.test(String(tries)) || n < 1 || n > 100) throw usage(`--http-tries must be a whole number from 1 to 100, not ${JSON.stringify(tries)}`);
    http.maxAttempts = n;
  }
  const headers = values['http-header'] as string[] | undefined;
  if (headers !== undefined) {
    http.headers = {};
    for (const line of headers) {
      const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
      // The value may be a secret: the message names the header only.
      if (!m || /[\r\n\0]/.test(m[2]!)) throw usage(`--http-header must be 'Name: value' on one line${m ? ` (header ${m[1]})` : ''}`);
      if (/^(range|if-match|if-unmodified-since|host|content-length)$/i.test(m[1]!)) throw usage(`--http-header ${m[1]} is set by vhdx itself`);
      http.headers[m[1]!] = m[2]!;
    }
  }
  return Object.keys(http).length > 0 ? { http } : {};
}
