/**
 * The Azure storage emulator (Azurite, a dev dependency) for the cloud tests: a real blob service on
 * 127.0.0.1 with its own port and folder, in-memory storage, stopped (killed) by the returned handle
 * and at process exit, so no test run leaves one behind. SAS URLs are signed with the emulator's
 * well-known development account key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobSASPermissions, BlobServiceClient, SASProtocol, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { ROOT } from '../helpers.js';

/** The emulator's published development account (not a secret). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  readonly connectionString: string;
  readonly service: BlobServiceClient;
  createContainer(name: string): Promise<void>;
  /**
   * A SAS URL for a blob (read, add, create, write, delete), at the emulator or at `origin` (a proxy
   * in front of it).
   */
  sasUrl(container: string, blob: string, options?: { origin?: string; permissions?: string }): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function listening(port: number, deadline: number, gone: () => boolean): Promise<void> {
  while (!gone()) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Azurite did not listen on port ${port} within the time allowed`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts the emulator on 127.0.0.1 (a free port) in a folder of its own. `onDisk`: blobs are kept in
 * that folder instead of memory (for gigabytes: the in-memory store is capped at half the RAM, and
 * deleted blobs leave it only when the emulator collects them).
 */
export async function startAzurite(options: { onDisk?: boolean } = {}): Promise<Azurite> {
  const folder = mkdtempSync(join(tmpdir(), 'vhdx-azurite-'));
  const port = await freePort();
  const bin = join(ROOT, 'node_modules', '.bin', 'azurite-blob');
  // In memory (faster, nothing to clean up) unless asked; the emulator refuses --location with it, so
  // its own folder is its working directory instead, where anything it might still write lands.
  const store = options.onDisk ? ['--location', folder] : ['--inMemoryPersistence'];
  const args = ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--silent', ...store, '--skipApiVersionCheck', '--disableTelemetry'];
  const child: ChildProcess = spawn(bin, args, { cwd: folder, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const killAtExit = (): void => {
    child.kill('SIGKILL');
  };
  process.on('exit', killAtExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killAtExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(folder, { recursive: true, force: true });
  };
  try {
    let exited = false;
    const exitedEarly = new Promise<never>((_, reject) =>
      child.once('exit', (code) => {
        exited = true;
        reject(new Error(`Azurite exited (${code}) before listening: ${stderr.trim()}`));
      }),
    );
    await Promise.race([listening(port, Date.now() + 30_000, () => exited), exitedEarly]);
  } catch (error) {
    await stop();
    throw error;
  }
  const origin = `http://127.0.0.1:${port}`;
  const credential = new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY);
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};BlobEndpoint=${origin}/${DEV_ACCOUNT};`;
  const service = new BlobServiceClient(`${origin}/${DEV_ACCOUNT}`, credential);
  return {
    origin,
    connectionString,
    service,
    async createContainer(name) {
      await service.getContainerClient(name).create();
    },
    sasUrl(container, blob, options = {}) {
      const sas = generateBlobSASQueryParameters(
        {
          containerName: container,
          blobName: blob,
          permissions: BlobSASPermissions.parse(options.permissions ?? 'racwd'),
          startsOn: new Date(Date.now() - 60_000),
          expiresOn: new Date(Date.now() + 3600_000),
          protocol: SASProtocol.HttpsAndHttp,
        },
        credential,
      ).toString();
      return `${options.origin ?? origin}/${DEV_ACCOUNT}/${container}/${encodeURIComponent(blob)}?${sas}`;
    },
    stop,
  };
}
