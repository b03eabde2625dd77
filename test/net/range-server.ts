/**
 * A real HTTP server on 127.0.0.1 serving files with single byte ranges (206 with Content-Range, 416
 * when unsatisfiable), a strong ETag and If-Match (412 when it does not match), as S3, Azure Blob
 * storage and common web servers do; for the HTTP backend's tests. Switches make it misbehave the
 * ways a store can: ignore Range (200 with the whole body), answer a fixed status (403, 404...), or
 * change the object (its ETag) after some requests. It counts requests and the body bytes it sent.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOnLoopback } from './loopback.js';
import { pipeline } from 'node:stream/promises';

export interface RangeServerSwitches {
  /** Answer every GET 200 with the whole file, as a server without Range support does. */
  ignoreRange?: boolean;
  /** Answer every request with this status and a short text body. */
  status?: number;
  /** After this many requests (counted from `set`), the object changes: a new ETag (the old one no longer matches). */
  changeAfter?: number;
  /** Do not honour If-Match (serve whatever is there, with its current ETag), as some servers do not. */
  ignoreIfMatch?: boolean;
  /** Send no ETag at all. */
  noEtag?: boolean;
  /** Answer 401 unless the request carries this header with this value (header name in lower case). */
  requireHeader?: { name: string; value: string };
  /** Wait this long before answering each request. */
  delayMs?: number;
}

export interface RangeServerStats {
  requests: number;
  /** Body bytes sent (206 and 200 bodies). */
  bytes: number;
  /** Requests answered 206. */
  ranges: number;
  /** Most requests being answered at once. */
  maxConcurrent: number;
  /** Request headers of the last request, for tests of what the client sends. */
  lastHeaders: Record<string, string | string[] | undefined>;
}

export interface RangeServer {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  readonly stats: RangeServerStats;
  /** Serves `file` at `path` (starting with `/`; the query string is ignored). */
  serve(path: string, file: string): void;
  set(switches: RangeServerSwitches): void;
  resetStats(): void;
  close(): Promise<void>;
}

function emptyStats(): RangeServerStats {
  return { requests: 0, bytes: 0, ranges: 0, maxConcurrent: 0, lastHeaders: {} };
}

export async function startRangeServer(): Promise<RangeServer> {
  const files = new Map<string, string>();
  let switches: RangeServerSwitches = {};
  let stats = emptyStats();
  let generation = 0;
  let sinceSet = 0;

  let active = 0;
  const server = createServer((req, res) => {
    active++;
    stats.maxConcurrent = Math.max(stats.maxConcurrent, active);
    res.on('close', () => active--);
    handle(req, res).catch(() => res.destroy());
  });

  function text(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    stats.lastHeaders = { ...req.headers };
    if (switches.changeAfter !== undefined && ++sinceSet > switches.changeAfter) generation = 1;
    if (switches.delayMs !== undefined) await new Promise((resolve) => setTimeout(resolve, switches.delayMs));
    if (switches.status !== undefined) return text(res, switches.status, `status ${switches.status} by request`);
    if (switches.requireHeader && req.headers[switches.requireHeader.name] !== switches.requireHeader.value) return text(res, 401, 'unauthorized');
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = files.get(path);
    if (file === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return text(res, 404, 'not found');
    const { size, mtimeMs } = statSync(file);
    const etag = `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}-${generation}"`;
    const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes' };
    if (!switches.noEtag) headers.ETag = etag;
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && !switches.ignoreIfMatch && !switches.noEtag && ifMatch !== '*' && !ifMatch.split(',').some((t) => t.trim() === etag)) {
      return text(res, 412, 'precondition failed', headers as Record<string, string>);
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range !== undefined && !switches.ignoreRange) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) return text(res, 416, 'bad range', { 'Content-Range': `bytes */${size}` });
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
      }
      if (start >= size || start > end) return text(res, 416, 'unsatisfiable', { 'Content-Range': `bytes */${size}` });
      status = 206;
      stats.ranges++;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['Content-Length'] = Math.max(0, end - start + 1);
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || end < start) return void res.end();
    const stream = createReadStream(file, { start, end, highWaterMark: 256 * 1024 });
    stream.on('data', (chunk) => (stats.bytes += chunk.length));
    await pipeline(stream, res).catch(() => undefined);
  }

  const listening = await listenOnLoopback(server);
  return {
    origin: listening.origin,
    get stats() {
      return stats;
    },
    serve(path, file) {
      files.set(path, file);
    },
    set(next) {
      switches = next;
      generation = 0;
      sinceSet = 0;
    },
    resetStats() {
      stats = emptyStats();
    },
    close: () => listening.close(),
  };
}
