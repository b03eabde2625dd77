/**
 * Opening an image by path with the Node backend: the common case for programs and the CLI. A
 * differencing disk's parent chain is found through each parent locator and opened read-only. Where a
 * path goes, an `http://` or `https://` URL may go instead: the image is then read in place with HTTP
 * Range requests (`HttpBackend`), read-only, and its parent is looked for beside it (see
 * `locateParentUrl`).
 */
import { access, realpath, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
// create and merge are loaded when first needed: opening and reading an image (most commands) never
// needs them, and every module costs start-up time.
import type { CreateOptions } from '../ops/create.js';
import type { MergeOptions, MergeResult } from '../ops/merge.js';
import { hasSignature } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import { readFully, type Backend } from '../io/backend.js';
import { HttpBackend, isHttpUrl, redactUrl, type HttpBackendOptions } from '../io/http.js';
import { NodeFileBackend, toVhdxError } from './file-backend.js';
import type { CacheMode } from '../io/backend.js';
import { VhdxImage } from '../image/image.js';
import type { OpenOptions } from '../image/open.js';
import { VhdImage } from '../vhd/image.js';
import { VHD_FOOTER_COOKIE, VHD_FOOTER_SIZE } from '../vhd/footer.js';

/** The deepest chain `openImage` follows (child, parent, grandparent...). */
export const MAX_CHAIN_DEPTH = 64;

export interface OpenImageOptions extends Omit<OpenOptions, 'parent'> {
  /**
   * Differencing disks: the parent's path, instead of the one the locator gives (deeper parents are
   * still found through their own locators); `false` opens the child alone (reads that need the parent
   * then fail with PARENT_REQUIRED).
   */
  parentPath?: string | false;
  /** Writable opens: how writes use the host's cache (`writeback` by default; see `CacheMode`). Parents, opened read-only, ignore it. */
  cache?: CacheMode;
  /** Images given by URL (the child and every parent): options of their `HttpBackend`. */
  http?: HttpBackendOptions;
}

/** Every HTTP backend this process opened (`httpBackendsOpened`). */
const opened: HttpBackend[] = [];

/** The HTTP backends `openBackend` opened so far, with their request counts: what `--debug` reports. */
export function httpBackendsOpened(): readonly HttpBackend[] {
  return opened;
}

/**
 * The backend for `path`: an `HttpBackend` for an http(s) URL (read-only: a writable open of a URL is
 * INVALID_ARGUMENT), else a `NodeFileBackend`.
 */
export async function openBackend(path: string, options: { readOnly: boolean; cache?: CacheMode; http?: HttpBackendOptions }): Promise<Backend> {
  if (isHttpUrl(path)) {
    if (!options.readOnly) {
      throw new VhdxError('INVALID_ARGUMENT', `${redactUrl(path)}: an image given by URL can only be read (copy it to a file to change it)`);
    }
    const backend = await HttpBackend.open(path, options.http);
    opened.push(backend);
    return backend;
  }
  return NodeFileBackend.open(path, { readOnly: options.readOnly, ...(options.cache ? { cache: options.cache } : {}) });
}

/** A disk given by path (`openDisk`): a VHDX image, a VHD image, or the raw file. */
export type OpenedDisk =
  | { kind: 'vhdx'; image: VhdxImage; close(): Promise<void> }
  | { kind: 'vhd'; image: VhdImage; close(): Promise<void> }
  | { kind: 'raw'; backend: Backend; size: number; close(): Promise<void> };

/** What a file holds, by signature: `vhdxfile` at 0; a VHD footer cookie at the end (or at 0: dynamic); else raw. */
export type DiskFormat = 'vhdx' | 'vhd' | 'raw';

/** What `backend` holds, by signature: `vhdxfile` at 0, a VHD footer cookie at 0 or at the end, else raw. */
export async function sniffFormat(backend: Backend): Promise<DiskFormat> {
  const first = new Uint8Array(8);
  await readFully(backend, first, 0);
  if (hasSignature(first, 0, 'vhdxfile')) return 'vhdx';
  if (hasSignature(first, 0, VHD_FOOTER_COOKIE)) return 'vhd';
  const size = await backend.size();
  if (size < VHD_FOOTER_SIZE) return 'raw';
  const last = new Uint8Array(8);
  await readFully(backend, last, size - VHD_FOOTER_SIZE);
  return hasSignature(last, 0, VHD_FOOTER_COOKIE) ? 'vhd' : 'raw';
}

/** What the file at `path` holds, by signature (see `openDisk`). */
export async function diskFormat(path: string): Promise<DiskFormat> {
  const backend = await openBackend(path, { readOnly: true });
  try {
    return await sniffFormat(backend);
  } catch (error) {
    throw toVhdxError(error, path);
  } finally {
    await backend.close();
  }
}

/**
 * Opens `path` read-only as what it holds (`sniffFormat`): a VHDX or VHD image (a differencing disk with
 * its chain, per `options`), else a raw disk image.
 */
export async function openDisk(path: string, options: OpenImageOptions = {}): Promise<OpenedDisk> {
  const backend = await openBackend(path, { readOnly: true, ...(options.http ? { http: options.http } : {}) });
  let format: DiskFormat;
  try {
    format = await sniffFormat(backend);
    if (format === 'raw') return { kind: 'raw', backend, size: await backend.size(), close: () => backend.close() };
  } catch (error) {
    await backend.close();
    throw toVhdxError(error, path);
  }
  if (format === 'vhd') {
    const image = await openVhdLayer(backend, path, options, []); // closes the backend when it fails
    return { kind: 'vhd', image, close: () => image.close() };
  }
  let image: VhdxImage;
  try {
    const { parentPath: _chainOnly, cache: _writableOnly, http: _backendOnly, ...rest } = options;
    image = await VhdxImage.open(backend, { ...rest, readOnly: true });
  } catch (error) {
    await backend.close();
    throw error;
  }
  try {
    await attachParents(image, path, options);
  } catch (error) {
    await image.close();
    throw error;
  }
  return { kind: 'vhdx', image, close: () => image.close() };
}

/**
 * A VHD on `backend` with its parents: a differencing VHD's parent is found through its W2ru
 * (relative) and W2ku (absolute) locators, or the parent name beside the child, and must be a VHD
 * whose Unique Id the child records. Closes `backend` when it fails.
 */
async function openVhdLayer(backend: Backend, path: string, options: OpenImageOptions, seen: string[]): Promise<VhdImage> {
  let image: VhdImage;
  try {
    image = await VhdImage.open(backend);
  } catch (error) {
    await backend.close();
    throw error;
  }
  try {
    if (image.type !== 'differencing' || options.parentPath === false) return image;
    const remote = isHttpUrl(path);
    if (remote && options.parentPath === undefined) {
      throw new VhdxError('UNSUPPORTED', 'a differencing VHD read by URL needs its parent given (--parent)', { file: redactUrl(path) });
    }
    const chain = [...seen, remote ? path : await realpath(path)];
    if (chain.length > MAX_CHAIN_DEPTH) throw new VhdxError('PARENT_CHAIN', `the chain of parents is deeper than ${MAX_CHAIN_DEPTH} images`, { file: path });
    let parentPath = options.parentPath;
    if (parentPath === undefined) {
      const entries: Record<string, string> = {};
      for (const { platformCode, path: recorded } of await image.parentPaths()) entries[platformCode === 'W2ru' ? 'relative_path' : 'absolute_win32_path'] ??= recorded;
      const name = image.dynamicHeader!.parentName;
      if (!entries.relative_path && name) entries.relative_path = basename(name.replace(/\\/g, '/'));
      parentPath = await locateParent(path, entries);
    }
    const parentReal = isHttpUrl(parentPath) ? parentPath : await realpath(parentPath).catch(() => null);
    if (parentReal === null) throw new VhdxError('NOT_FOUND', `parent ${parentPath} does not exist`, { file: path });
    if (chain.includes(parentReal)) throw new VhdxError('PARENT_CHAIN', `the chain of parents loops back to ${parentPath}`, { file: path });
    const parentBackend = await openBackend(parentPath, { readOnly: true, ...(options.http ? { http: options.http } : {}) });
    if ((await sniffFormat(parentBackend).catch(() => 'raw')) !== 'vhd') {
      await parentBackend.close();
      throw new VhdxError('UNSUPPORTED', `parent ${parentPath} is not a VHD (a differencing VHD needs a VHD parent)`, { file: path });
    }
    const { parentPath: _thisLayerOnly, ...deeper } = options;
    const parent = await openVhdLayer(parentBackend, parentPath, deeper, chain);
    try {
      image.attachParent(parent, { owned: true, ignoreParentLinkage: options.ignoreParentLinkage ?? false });
    } catch (error) {
      await parent.close();
      throw error;
    }
    return image;
  } catch (error) {
    await image.close();
    throw error;
  }
}

/**
 * Opens `path` read-only unless `readOnly: false` is given (then it takes the write lock). Parents are
 * always opened read-only and are closed with the child.
 */
export async function openImage(path: string, options: OpenImageOptions = {}): Promise<VhdxImage> {
  return openLayer(path, options, [], options.readOnly ?? true);
}

async function openLayer(path: string, options: OpenImageOptions, seen: string[], readOnly: boolean): Promise<VhdxImage> {
  const backend = await openBackend(path, { readOnly, ...(options.cache ? { cache: options.cache } : {}), ...(options.http ? { http: options.http } : {}) });
  let image: VhdxImage;
  try {
    const { parentPath: _ignored, cache: _backendOnly, http: _httpOnly, ...rest } = options;
    image = await VhdxImage.open(backend, { ...rest, readOnly });
  } catch (error) {
    await backend.close();
    throw error;
  }
  try {
    await attachParents(image, path, options, seen);
    return image;
  } catch (error) {
    await image.close();
    throw error;
  }
}

/**
 * For an image opened some other way (its own backend): finds, opens (read-only) and attaches the
 * parent chain of a differencing disk, as `openImage` does. Does nothing for other images.
 */
export async function attachParents(image: VhdxImage, path: string, options: OpenImageOptions = {}, seen: string[] = []): Promise<void> {
  if (image.type !== 'differencing' || options.parentPath === false || image.parent) return;
  const real = await identity(path);
  const chain = [...seen, real];
  if (chain.length > MAX_CHAIN_DEPTH) {
    throw new VhdxError('PARENT_CHAIN', `the chain of parents is deeper than ${MAX_CHAIN_DEPTH} images`, { file: shown(path) });
  }
  const parentPath = options.parentPath ?? (isHttpUrl(path) ? locateParentUrl(path, image.parentLocator ?? {}) : await locateParent(path, image.parentLocator ?? {}));
  const parentReal = await identity(parentPath).catch(() => null);
  if (parentReal === null) throw new VhdxError('NOT_FOUND', `parent ${parentPath} does not exist`, { file: shown(path) });
  if (parentReal === real) throw new VhdxError('PARENT_CHAIN', `the parent locator points at the image itself (${shown(parentPath)})`, { file: shown(path) });
  if (chain.includes(parentReal)) throw new VhdxError('PARENT_CHAIN', `the chain of parents loops back to ${shown(parentPath)}`, { file: shown(path) });
  const { parentPath: _drop, cache: _writableOnly, ...deeper } = options;
  let parent: VhdxImage;
  try {
    parent = await openLayer(parentPath, deeper, chain, true);
  } catch (error) {
    // A parent found beside a child URL may need a signature of its own (S3 presigned URLs, blob SAS).
    if (options.parentPath === undefined && isHttpUrl(parentPath) && error instanceof VhdxError && (error.code === 'NOT_FOUND' || error.code === 'REMOTE')) {
      error.message = `parent ${shown(parentPath)}: ${error.message}; give the parent's URL or path with --parent`;
      error.file = shown(path);
    }
    throw error;
  }
  try {
    image.attachParent(parent, { owned: true, ignoreParentLinkage: options.ignoreParentLinkage ?? false });
  } catch (error) {
    await parent.close();
    throw error;
  }
}

/** What makes two layers the same image: the real path of a file, the URL without its query string. */
async function identity(path: string): Promise<string> {
  if (!isHttpUrl(path)) return realpath(path);
  const url = new URL(path);
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** `path` fit for a message: a URL's query string (a signature) redacted. */
function shown(path: string): string {
  return isHttpUrl(path) ? redactUrl(path) : path;
}

/**
 * Where a parent is, for a child read by URL: the locator's `relative_path` (else the file name of its
 * absolute path) resolved against the child's URL, with the child's query string, which is right for
 * public objects and for a SAS that covers the container or account. A signature made for one object
 * (an S3 presigned URL, an Azure blob SAS) does not open another: such a parent is given with
 * `parentPath` (`--parent`). Nothing is requested here; opening the URL tells.
 */
export function locateParentUrl(childUrl: string, entries: Record<string, string>): string {
  const child = new URL(childUrl);
  const relativePath = entries.relative_path ?? entries.absolute_win32_path ?? entries.volume_path;
  if (!relativePath) throw new VhdxError('BAD_PARENT_LOCATOR', 'the parent locator has no path to the parent', { file: redactUrl(childUrl) });
  const posix = relativePath.replace(/\\/g, '/');
  const target = entries.relative_path ? posix : `./${basename(posix)}`;
  // Each path segment is percent-encoded as a URL needs (a space, a '#' or '?' in a file name).
  const encoded = target.split('/').map((segment) => (segment === '.' || segment === '..' ? segment : encodeURIComponent(segment))).join('/');
  const parent = new URL(encoded, child);
  parent.search = child.search;
  return parent.href;
}

/**
 * Where the locator says the parent is (format reference §6.3), tried in order: `relative_path`
 * against the child's folder; then `absolute_win32_path` and `volume_path`. Windows separators become
 * `/`. A POSIX absolute path (as this library writes on POSIX) is used as it is; a Windows drive-letter,
 * UNC or volume-GUID path cannot exist here, so its file name is tried beside the child. The first
 * candidate that exists wins; none existing is NOT_FOUND listing what was tried.
 */
export async function locateParent(childPath: string, entries: Record<string, string>): Promise<string> {
  const folder = dirname(resolve(childPath));
  const candidates: string[] = [];
  const posix = (p: string): string => p.replace(/\\/g, '/');
  if (entries.relative_path) candidates.push(resolve(folder, posix(entries.relative_path)));
  for (const key of ['absolute_win32_path', 'volume_path']) {
    const value = entries[key];
    if (!value) continue;
    const stripped = value.replace(/^\\\\\?\\/, '');
    if (isAbsolute(stripped) && stripped.startsWith('/')) candidates.push(stripped);
    else candidates.push(join(folder, basename(posix(stripped))));
  }
  if (candidates.length === 0) throw new VhdxError('BAD_PARENT_LOCATOR', 'the parent locator has no path to the parent', { file: childPath });
  for (const candidate of candidates) {
    if (await access(candidate).then(() => true, () => false)) return candidate;
  }
  throw new VhdxError('NOT_FOUND', `parent not found (tried ${[...new Set(candidates)].join(', ')}); give its path with --parent`, { file: childPath });
}

/**
 * Creates a differencing disk at `childPath` whose parent is the image at `parentPath` (opened
 * read-only, with its own chain, and never modified). The locator records the parent's DataWriteGuid,
 * its path relative to the child (Windows separators, as Windows writes it) and its absolute path.
 */
export async function createChild(childPath: string, parentPath: string, options: Omit<CreateOptions, 'parent' | 'virtualSize'> & { cache?: CacheMode } = {}): Promise<void> {
  // Everything that can be refused is refused before the child's path is touched.
  if (isHttpUrl(childPath) || isHttpUrl(parentPath)) {
    throw new VhdxError('INVALID_ARGUMENT', 'a differencing disk and its parent must be local files (a locator records file paths)', { file: shown(childPath) });
  }
  if (options.type === 'fixed') throw new VhdxError('INVALID_ARGUMENT', 'a differencing disk cannot be fixed', { file: childPath });
  const { create, resolveCreateOptions } = await import('../ops/create.js');
  const parent = await openImage(parentPath);
  try {
    const { relativePath, absolutePath: absolute } = locatorPaths(childPath, parentPath);
    resolveCreateOptions({ ...options, virtualSize: parent.virtualSize, logicalSectorSize: parent.logicalSectorSize, physicalSectorSize: parent.physicalSectorSize });
    const { cache, ...shape } = options;
    const backend = await NodeFileBackend.open(childPath, { readOnly: false, create: true, ...(cache ? { cache } : {}) });
    try {
      await create(backend, { ...shape, virtualSize: parent.virtualSize, parent: { image: parent, relativePath, absolutePath: absolute } });
      await backend.close();
    } catch (error) {
      await backend.close();
      await unlink(childPath).catch(() => undefined);
      throw error;
    }
  } finally {
    await parent.close();
  }
}

/**
 * `vhdx commit`: merges the differencing disk at `childPath` into its parent (both opened for writing;
 * the parent's own parents read-only), then removes the child when `removeChild` is set. See
 * `mergeIntoParent` for why a crash at any point is harmless.
 */
export async function commitImage(
  childPath: string,
  options: MergeOptions & { parentPath?: string; removeChild?: boolean; cache?: CacheMode } = {},
): Promise<MergeResult & { parent: string }> {
  const cache = options.cache ? { cache: options.cache } : {};
  const child = await openImage(childPath, { readOnly: false, parentPath: false, ...cache });
  let parentPath: string;
  let result: MergeResult;
  try {
    if (child.type !== 'differencing') throw new VhdxError('INVALID_ARGUMENT', 'not a differencing disk: there is nothing to commit', { file: childPath });
    parentPath = options.parentPath ?? (await locateParent(childPath, child.parentLocator ?? {}));
    if ((await existingRealpath(parentPath, childPath)) === (await realpath(childPath))) {
      throw new VhdxError('PARENT_CHAIN', `the parent locator points at the image itself (${parentPath})`, { file: childPath });
    }
    const parent = await openImage(parentPath, { readOnly: false, ...cache });
    try {
      child.attachParent(parent, { owned: true });
    } catch (error) {
      await parent.close();
      throw error;
    }
    const { mergeIntoParent } = await import('../ops/merge.js');
    result = await mergeIntoParent(child, options);
  } finally {
    await child.close();
  }
  if (options.removeChild) await unlink(childPath);
  return { ...result, parent: parentPath };
}

/**
 * `vhdx rebase`: points the differencing disk at `childPath` at the parent `newParentPath` (for a
 * parent that was moved, renamed or copied). The new parent must be the same disk: its DataWriteGuid
 * must match the child's linkage, unless `force` (the caller vouches that it holds the same content;
 * the linkage is then rewritten to it). Paths and linkage change through the child's log.
 */
export async function rebaseImage(childPath: string, newParentPath: string, options: { force?: boolean; cache?: CacheMode } = {}): Promise<void> {
  const child = await openImage(childPath, { readOnly: false, parentPath: false, ...(options.cache ? { cache: options.cache } : {}) });
  try {
    if (child.type !== 'differencing') throw new VhdxError('INVALID_ARGUMENT', 'not a differencing disk: it has no parent to change', { file: childPath });
    if ((await existingRealpath(newParentPath, childPath)) === (await realpath(childPath))) {
      throw new VhdxError('PARENT_CHAIN', 'an image cannot be its own parent', { file: childPath });
    }
    const parent = await openImage(newParentPath);
    try {
      const { setParent } = await import('../ops/chain.js');
      await setParent(child, parent, locatorPaths(childPath, newParentPath), { force: options.force ?? false });
    } finally {
      await parent.close();
    }
  } finally {
    await child.close();
  }
}

/**
 * How a child's locator names its parent (§6.3): the path relative to the child's folder with Windows
 * separators, starting `.\` when it goes down (as Windows writes it), and the absolute path.
 */
function locatorPaths(childPath: string, parentPath: string): { relativePath: string; absolutePath: string } {
  const absolutePath = resolve(parentPath);
  let relativePath = relative(dirname(resolve(childPath)), absolutePath).split(sep).join('\\');
  if (!relativePath.startsWith('..')) relativePath = `.\\${relativePath}`;
  return { relativePath, absolutePath };
}

/** The real path of a parent named by the user or a locator; NOT_FOUND (naming the child) when it does not exist. */
async function existingRealpath(parentPath: string, childPath: string): Promise<string> {
  const real = await realpath(parentPath).catch(() => null);
  if (real === null) throw new VhdxError('NOT_FOUND', `parent ${parentPath} does not exist`, { file: childPath });
  return real;
}
