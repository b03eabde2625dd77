/**
 * The Node.js entry of the vhdx library (`vhdx/node`): everything of the core (`vhdx`), plus what needs
 * Node: the file backend (with the optional native helper), a Readable of an image, opening images and
 * differencing chains by path, and the NBD server.
 */
export * from '../index.js';
export { NodeFileBackend, type NodeFileOptions } from './file-backend.js';
export { createReadStream } from './stream.js';
export { openImage, openDisk, openBackend, diskFormat, attachParents, commitImage, rebaseImage, createChild, locateParent, locateParentUrl, MAX_CHAIN_DEPTH, type OpenImageOptions, type OpenedDisk, type DiskFormat } from './paths.js';
export { serveNbd, type NbdServer, type NbdServeOptions, type NbdServerStats } from '../nbd/server.js';
