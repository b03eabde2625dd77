/**
 * A loopback HTTP proxy that tests put between a client and a real server (a Range-capable file
 * server, the Azure storage emulator) to inject faults: 503 answers, connections reset in the middle
 * of a request or response body, stalls. Decisions come from a seeded generator, so a run is
 * repeatable. It counts what passes through, so tests can assert how much a client sent or fetched.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOnLoopback } from './loopback.js';
import { mulberry32 } from '../model.js';

export interface FaultPlan {
  /** Fraction of requests answered 503 at once, without reaching the server. */
  errorRate?: number;
  /**
   * Fraction of requests whose connection is reset mid-body: a request with a body is cut after half
   * of it arrived (the server never sees it); otherwise the response is cut after half its body.
   */
  resetRate?: number;
  /** Requests (0-based, counting every request the proxy receives) held this long before being forwarded. */
  stalls?: { request: number; ms: number }[];
  /** Only requests for which this returns true are candidates for faults (default: all). */
  only?: (method: string, url: string) => boolean;
  /** Seed of the generator that picks faulty requests (default 1). */
  seed?: number;
}

export interface ProxyStats {
  requests: number;
  /** Requests that reached the server. */
  forwarded: number;
  /** Body bytes that reached the server (uploads), and body bytes the server answered (downloads). */
  bytesUp: number;
  bytesDown: number;
  /** Body bytes of forwarded PUT requests (page writes to a blob). */
  putBytes: number;
  errors: number;
  resets: number;
  stalls: number;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`: the proxy's origin, to use in place of the target's. */
  readonly origin: string;
  readonly stats: ProxyStats;
  setPlan(plan: FaultPlan): void;
  resetStats(): void;
  close(): Promise<void>;
}

function emptyStats(): ProxyStats {
  return { requests: 0, forwarded: 0, bytesUp: 0, bytesDown: 0, putBytes: 0, errors: 0, resets: 0, stalls: 0 };
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `target` (`http://host:port`). */
export async function startFaultProxy(target: string, plan: FaultPlan = {}): Promise<FaultProxy> {
  const to = new URL(target);
  let current = plan;
  let random = mulberry32(plan.seed ?? 1);
  let stats = emptyStats();

  const server = createServer((req, res) => void handle(req, res));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const index = stats.requests++;
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const candidate = current.only ? current.only(method, url) : true;
    const stall = current.stalls?.find((s) => s.request === index);
    if (stall) {
      stats.stalls++;
      await new Promise((resolve) => setTimeout(resolve, stall.ms));
    }
    const roll = candidate ? random() : 1;
    if (roll < (current.errorRate ?? 0)) {
      stats.errors++;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '0', connection: 'close' });
        res.end('injected: service unavailable');
      });
      return;
    }
    const reset = roll < (current.errorRate ?? 0) + (current.resetRate ?? 0);
    const bodyLength = Number(req.headers['content-length'] ?? 0);
    if (reset && bodyLength > 0) {
      // Cut the upload halfway: the server never sees this request.
      stats.resets++;
      let received = 0;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= bodyLength / 2) req.socket.destroy();
      });
      return;
    }
    const headers = { ...req.headers, host: to.host };
    const upstream = httpRequest({ host: to.hostname, port: to.port, method, path: url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      const total = Number(answer.headers['content-length'] ?? 0);
      let sent = 0;
      answer.on('data', (chunk: Buffer) => {
        if (reset && total > 0 && sent + chunk.length >= total / 2) {
          // Cut the download halfway: part of the body, then a reset connection.
          const part = Math.max(0, Math.floor(total / 2) - sent);
          res.write(chunk.subarray(0, part));
          stats.bytesDown += part;
          stats.resets++;
          answer.destroy();
          setImmediate(() => res.socket?.destroy());
          return;
        }
        sent += chunk.length;
        stats.bytesDown += chunk.length;
        res.write(chunk);
      });
      answer.on('end', () => res.end());
    });
    upstream.on('error', () => res.socket?.destroy());
    stats.forwarded++;
    req.on('data', (chunk: Buffer) => {
      stats.bytesUp += chunk.length;
      if (method === 'PUT') stats.putBytes += chunk.length;
    });
    req.pipe(upstream);
  }

  const listening = await listenOnLoopback(server);
  return {
    origin: listening.origin,
    get stats() {
      return stats;
    },
    setPlan(plan) {
      current = plan;
      random = mulberry32(plan.seed ?? 1);
    },
    resetStats() {
      stats = emptyStats();
    },
    close: () => listening.close(),
  };
}
