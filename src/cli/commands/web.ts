/**
 * `vhdx web [FILE]`: serves the image inspector page (dist/web, built by scripts/build-web.js) over HTTP
 * on 127.0.0.1 only. With FILE, the file is served read-only at /image with HTTP Range support and the
 * printed URL opens the page on it; the page then reads only the byte ranges it needs. Runs until
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { VhdxError } from '../../format/errors.js';
import { toVhdxError } from '../../node/file-backend.js';
import { packageRoot } from '../../node/package-root.js';
import { usage } from '../args.js';
import { interruptible } from '../interrupt.js';
import type { Command } from '../command.js';

const HOST = '127.0.0.1';

const PAGE_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'inspector.js': 'text/javascript; charset=utf-8',
  'inspector.js.map': 'application/json; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const web: Command = {
  name: 'web',
  usage: 'vhdx web [FILE] [--port N]',
  examples: `
vhdx web disk.vhdx              # prints http://127.0.0.1:PORT/?image=... : open it in a browser
vhdx web --port 8080            # the page alone: choose or drop an image in it
`,
  options: {
    port: { type: 'string', description: 'TCP port on 127.0.0.1 (default 0: any free port)' },
  },
  positionals: ['FILE'],
  requiredPositionals: 0,
  async run({ positionals: [file], values }) {
    let port = 0;
    if (values.port !== undefined) {
      const text = String(values.port);
      port = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(port >= 0 && port <= 65535)) throw usage(`--port must be 0-65535, not ${JSON.stringify(text)}`);
    }
    const page = await loadPage();
    const image = file === undefined ? null : await openImageFile(file);
    const stop = interruptible();
    let server: Server | null = null;
    try {
      server = createServer((req, res) => {
        handle(req, res, page, image, server).catch(() => res.destroy());
      });
      const listening = server;
      await stop.race(
        new Promise<void>((resolve, reject) => {
          listening.once('error', (error: NodeJS.ErrnoException) => reject(new VhdxError('IO', `cannot listen on ${HOST}:${port}: ${error.code ?? error.message}`, { cause: error })));
          listening.listen(port, HOST, () => resolve());
        }),
      );
      const actual = (server.address() as { port: number }).port;
      const query = image ? `?${new URLSearchParams({ image: '/image', name: basename(image.path) }).toString()}` : '';
      const url = `http://${HOST}:${actual}/${query}`;
      process.stderr.write(`vhdx web: serving the inspector${image ? ` for ${image.path} (${image.size} bytes, read-only)` : ''} on ${HOST} only; open this URL, Ctrl-C stops:\n`);
      process.stdout.write(`${url}\n`);
      const signalled = await new Promise<NodeJS.Signals>((resolve) => {
        if (stop.interrupted) return resolve(stop.interrupted.signalName);
        stop.signal.addEventListener('abort', () => resolve(stop.interrupted!.signalName), { once: true });
      });
      process.stderr.write(`vhdx web: ${signalled}: stopped\n`);
      return 0;
    } finally {
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server!.close(() => resolve()));
      }
      await image?.handle.close();
      stop.dispose();
    }
  },
};

interface ServedImage {
  path: string;
  handle: FileHandle;
  size: number;
}

/** The built page, read once: it is small, and the build may be replaced while serving. */
async function loadPage(): Promise<Map<string, Buffer>> {
  const root = packageRoot(import.meta.url);
  const dir = join(root ?? '.', 'dist', 'web');
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(PAGE_FILES)) {
    try {
      files.set(name, await readFile(join(dir, name)));
    } catch (error) {
      if (name.endsWith('.map')) continue;
      throw new VhdxError('NOT_FOUND', `the inspector page is not built (${join(dir, name)} is missing): run npm run build`, { cause: error });
    }
  }
  return files;
}

async function openImageFile(path: string): Promise<ServedImage> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw toVhdxError(error, path);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new VhdxError('INVALID_ARGUMENT', 'is not a regular file', { file: path });
  }
  return { path, handle, size: info.size };
}

async function handle(req: IncomingMessage, res: ServerResponse, page: Map<string, Buffer>, image: ServedImage | null, server: Server | null): Promise<void> {
  const port = (server?.address() as { port: number } | null)?.port;
  // Only this machine's names: a page elsewhere cannot reach the server through a rebound DNS name.
  if (req.headers.host !== `${HOST}:${port}` && req.headers.host !== `localhost:${port}`) return reply(res, 403, 'forbidden host');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return reply(res, 405, 'method not allowed');
  }
  const path = new URL(req.url ?? '/', `http://${HOST}`).pathname;
  if (path === '/image' && image) return serveImage(req, res, image);
  const name = path === '/' ? 'index.html' : path.slice(1);
  const body = page.get(name);
  if (!body) return reply(res, 404, 'not found');
  res.writeHead(200, {
    'Content-Type': PAGE_FILES[name]!,
    'Content-Length': body.length,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': CSP,
    'Referrer-Policy': 'no-referrer',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) + 1 });
  res.end(`${text}\n`);
}

/** GET/HEAD of the image: the whole file, or one byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`). */
async function serveImage(req: IncomingMessage, res: ServerResponse, image: ServedImage): Promise<void> {
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  };
  let start = 0;
  let end = image.size - 1;
  let status = 200;
  const range = req.headers.range;
  if (range !== undefined) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let ok = m !== null && (m[1] !== '' || m[2] !== '');
    if (ok && m) {
      if (m[1] === '') {
        const suffix = Number(m[2]);
        start = Math.max(0, image.size - suffix);
        ok = suffix > 0;
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
        ok = start < image.size && start <= Number(m[2] === '' ? start : m[2]);
      }
    }
    if (!ok) {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${image.size}`, 'Content-Length': 0 });
      res.end();
      return;
    }
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${image.size}`;
  }
  headers['Content-Length'] = Math.max(0, end - start + 1);
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || end < start) {
    res.end();
    return;
  }
  const stream = image.handle.createReadStream({ start, end, autoClose: false });
  await pipeline(stream, res).catch(() => undefined);
}
