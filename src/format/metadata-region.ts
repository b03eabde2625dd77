/** Encoder of a whole metadata region (format reference §5): used by creation and by locator updates. */
import {
  METADATA_FILE_PARAMETERS,
  METADATA_LOGICAL_SECTOR_SIZE,
  METADATA_PARENT_LOCATOR,
  METADATA_PHYSICAL_SECTOR_SIZE,
  METADATA_VIRTUAL_DISK_ID,
  METADATA_VIRTUAL_DISK_SIZE,
} from './constants.js';
import { VhdxError } from './errors.js';
import type { Guid } from './guid.js';
import { encodeFileParameters, encodeMetadataTable, encodeU32, encodeVirtualDiskSize, METADATA_TABLE_SIZE, type MetadataEntry } from './metadata.js';

export interface MetadataRegionParameters {
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  fixed: boolean;
  hasParent?: boolean;
}

/**
 * The whole metadata region: table, then the items packed from 64 KiB in the order QEMU and DiscUtils
 * use (§5). IsVirtualDisk on every item but File Parameters and the parent locator; IsRequired on all.
 */
export function encodeMetadataRegion(p: MetadataRegionParameters, virtualDiskId: Guid, length: number, parentLocator?: Uint8Array): Uint8Array {
  const region = new Uint8Array(length);
  const items: { id: Guid; data: Uint8Array; virtualDisk: boolean }[] = [
    { id: METADATA_FILE_PARAMETERS, data: encodeFileParameters({ blockSize: p.blockSize, leaveBlockAllocated: p.fixed, hasParent: p.hasParent ?? false }), virtualDisk: false },
    { id: METADATA_VIRTUAL_DISK_SIZE, data: encodeVirtualDiskSize(p.virtualSize), virtualDisk: true },
    { id: METADATA_VIRTUAL_DISK_ID, data: virtualDiskId, virtualDisk: true },
    { id: METADATA_LOGICAL_SECTOR_SIZE, data: encodeU32(p.logicalSectorSize), virtualDisk: true },
    { id: METADATA_PHYSICAL_SECTOR_SIZE, data: encodeU32(p.physicalSectorSize), virtualDisk: true },
  ];
  if (parentLocator) items.push({ id: METADATA_PARENT_LOCATOR, data: parentLocator, virtualDisk: false });
  const entries: MetadataEntry[] = [];
  let offset = METADATA_TABLE_SIZE;
  for (const item of items) {
    if (offset + item.data.length > length) throw new VhdxError('INVALID_ARGUMENT', 'metadata items do not fit in the metadata region');
    region.set(item.data, offset);
    entries.push({ itemId: item.id, offset, length: item.data.length, isUser: false, isVirtualDisk: item.virtualDisk, isRequired: true });
    offset += item.data.length;
  }
  region.set(encodeMetadataTable({ entries }), 0);
  return region;
}
