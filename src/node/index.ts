/**
 * The Node.js entry of the vhdx library (`vhdx/node`): everything of the core (`vhdx`), plus what needs
 * Node: the file backend (with the optional native helper), a Readable of an image, opening images and
 * differencing chains by path, the NBD server, and upload to and download from Azure page blobs.
 */
export * from '../index.js';
export { NodeFileBackend, type NodeFileOptions } from './file-backend.js';
export { createReadStream } from './stream.js';
export { openImage, openDisk, openBackend, diskFormat, attachParents, commitImage, rebaseImage, createChild, locateParent, locateParentUrl, MAX_CHAIN_DEPTH, type OpenImageOptions, type OpenedDisk, type DiskFormat } from './paths.js';
export { serveNbd, type NbdServer, type NbdServeOptions, type NbdServerStats } from '../nbd/server.js';
export { vhdNbdImage, type NbdImage } from '../nbd/image.js';
export {
  uploadToAzure,
  downloadFromAzure,
  redactSecrets,
  AZURE_MAX_PAGE_WRITE,
  uploadBlobSize,
  AZURE_PAGE_SIZE,
  AZURE_CONNECTION_STRING_ENV,
  type AzureTarget,
  type AzureRetryOptions,
  type AzureTransferOptions,
  type UploadInput,
  type UploadOptions,
  type UploadProgress,
  type UploadResult,
  type DownloadOptions,
  type DownloadResult,
} from './azure.js';
