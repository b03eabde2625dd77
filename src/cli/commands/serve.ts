import { diskFormat, openDisk, openImage, type OpenImageOptions } from '../../node/paths.js';
import { VhdxError } from '../../format/errors.js';
import { vhdNbdImage, type NbdImage } from '../../nbd/image.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { serveNbd } from '../../nbd/server.js';
import { usage } from '../args.js';
import { isHttpUrl } from '../../io/http.js';
import { shownPath } from '../output.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { interruptible } from '../interrupt.js';
import type { Command } from '../command.js';

export const serve: Command = {
  name: 'serve',
  usage: 'vhdx serve FILE [--port N | --socket PATH] [--bind ADDR] [--read-only] [--export-name NAME] [--shared N] [--cache writeback|unsafe|none]',
  examples: `
vhdx serve disk.vhdx                      # nbd://127.0.0.1:10809/
vhdx serve disk.vhdx --socket /tmp/nbd.sock --shared 4
vhdx serve disk.vhdx --read-only --port 10900 --export-name disk
qemu-img info nbd://127.0.0.1:10809/      # from another terminal
`,
  options: {
    ...HTTP_OPTIONS,
    port: { type: 'string', description: 'TCP port (default 10809; 0 picks a free one)' },
    socket: { type: 'string', description: 'listen on this Unix socket instead of TCP' },
    bind: { type: 'string', description: 'address to listen on (default 127.0.0.1: this machine only)' },
    'read-only': { type: 'boolean', description: 'open the image read-only; writes get EPERM' },
    'export-name': { type: 'string', description: "the export's name (default: the empty default export)" },
    shared: { type: 'string', description: 'connections served at once (default 1); above 1, multi-conn is advertised' },
    cache: CACHE_OPTION,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    if (values.socket !== undefined && (values.port !== undefined || values.bind !== undefined)) throw usage('--socket goes without --port and --bind');
    let port = 10809;
    if (values.port !== undefined) {
      const text = String(values.port);
      port = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(port >= 0 && port <= 65535)) throw usage(`--port must be 0-65535, not ${JSON.stringify(text)}`);
    }
    let shared = 1;
    if (values.shared !== undefined) {
      const text = String(values.shared);
      shared = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(shared >= 1 && shared <= 1024)) throw usage(`--shared must be 1-1024, not ${JSON.stringify(text)}`);
    }
    const readOnly = values['read-only'] === true;
    const cache = cacheOption(values);
    if (cache.cache && readOnly) throw usage('--cache applies to a writable export (not --read-only)');
    if (isHttpUrl(file!) && !readOnly) throw usage('an image given by URL can only be served with --read-only');
    const opened = await openExport(file!, readOnly, { ...cache, ...httpOptions(values) });
    const { image } = opened;
    const name = shownPath(file!);
    const stop = interruptible();
    try {
      const options: Parameters<typeof serveNbd>[0] = {
        image,
        port,
        maxConnections: shared,
        readOnly,
        log: (line) => process.stderr.write(`vhdx serve: ${line}\n`),
      };
      if (values.socket !== undefined) options.socketPath = String(values.socket);
      if (values.bind !== undefined) options.host = String(values.bind);
      if (values['export-name'] !== undefined) options.exportName = String(values['export-name']);
      const server = await serveNbd(options);
      process.stderr.write(`vhdx serve: serving ${name} (${image.type}, ${image.virtualSize} bytes${readOnly ? ', read-only' : ''}) at ${server.uri}\n`);
      // Serve until a signal; then drain in-flight requests, flush and close the image.
      const signalled = await new Promise<NodeJS.Signals>((resolve) => {
        stop.signal.addEventListener('abort', () => resolve(stop.interrupted!.signalName), { once: true });
      });
      process.stderr.write(`vhdx serve: ${signalled}: finishing requests in flight, flushing and closing ${name}\n`);
      await server.close();
      const totals = server.stats();
      await opened.close();
      process.stderr.write(
        `vhdx serve: closed ${name} cleanly after ${totals.connections} connections, ${totals.requests} requests (${totals.bytesRead} bytes read, ${totals.bytesWritten} written)\n`,
      );
      return 0;
    } finally {
      await opened.close();
      stop.dispose();
    }
  },
};

/**
 * The image to serve: a VHDX as it is (writable unless `readOnly`), a VHD read-only through
 * `vhdNbdImage`. Closing twice is harmless.
 */
async function openExport(file: string, readOnly: boolean, options: Pick<OpenImageOptions, 'cache' | 'http'>): Promise<{ image: NbdImage; close(): Promise<void> }> {
  let close: () => Promise<void>;
  let image: NbdImage;
  if (readOnly) {
    const disk = await openDisk(file, options.http ? { http: options.http } : {});
    if (disk.kind === 'raw') {
      await disk.close();
      throw new VhdxError('NOT_VHDX', 'not a VHDX file (no "vhdxfile" signature at offset 0) nor a VHD (no footer): serve a raw file with any NBD server', { file: shownPath(file), offset: 0 });
    }
    image = disk.kind === 'vhd' ? vhdNbdImage(disk.image) : disk.image;
    close = () => disk.close();
  } else {
    const vhdx = await openImage(file, { readOnly: false, ...options }).catch(async (error: unknown) => {
      if (error instanceof VhdxError && error.code === 'NOT_VHDX' && (await diskFormat(file).catch(() => null)) === 'vhd') {
        throw usage('a VHD can only be served with --read-only');
      }
      throw error;
    });
    image = vhdx;
    close = () => vhdx.close();
  }
  let closed: Promise<void> | null = null;
  return { image, close: () => (closed ??= close()) };
}
