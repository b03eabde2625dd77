/** The fixed map of the 1 MiB header section and the well-known GUIDs (format reference §1, §4.3, §5.3). */
import { guidFromString } from './guid.js';
import { KiB, MiB, TiB } from './bytes.js';

export const FILE_IDENTIFIER_OFFSET = 0;
export const FILE_IDENTIFIER_SIZE = 64 * KiB;
export const HEADER1_OFFSET = 64 * KiB;
export const HEADER2_OFFSET = 128 * KiB;
export const HEADER_SIZE = 4 * KiB;
export const REGION_TABLE1_OFFSET = 192 * KiB;
export const REGION_TABLE2_OFFSET = 256 * KiB;
export const REGION_TABLE_SIZE = 64 * KiB;
export const HEADER_SECTION_SIZE = 1 * MiB;

/** Every object after the header section starts on a 1 MiB boundary (§1). */
export const ALIGNMENT = 1 * MiB;
export const LOG_SECTOR_SIZE = 4 * KiB;

export const MIN_BLOCK_SIZE = 1 * MiB;
export const MAX_BLOCK_SIZE = 256 * MiB;
export const MAX_VIRTUAL_DISK_SIZE = 64 * TiB;
/** One sector-bitmap block covers 2^23 logical sectors (§7.4). */
export const SECTORS_PER_BITMAP_BLOCK = 2 ** 23;
export const SECTOR_BITMAP_BLOCK_SIZE = 1 * MiB;

export const REGION_BAT = guidFromString('2DC27766-F623-4200-9D64-115E9BFD4A08');
export const REGION_METADATA = guidFromString('8B7CA206-4790-4B9A-B8FE-575F050F886E');

export const METADATA_FILE_PARAMETERS = guidFromString('CAA16737-FA36-4D43-B3B6-33F0AA44E76B');
export const METADATA_VIRTUAL_DISK_SIZE = guidFromString('2FA54224-CD1B-4876-B211-5DBED83BF4B8');
export const METADATA_VIRTUAL_DISK_ID = guidFromString('BECA12AB-B2E6-4523-93EF-C309E000C746');
export const METADATA_LOGICAL_SECTOR_SIZE = guidFromString('8141BF1D-A96F-4709-BA47-F233A8FAAB5F');
export const METADATA_PHYSICAL_SECTOR_SIZE = guidFromString('CDA348C7-445D-4471-9CC9-E9885251C556');
export const METADATA_PARENT_LOCATOR = guidFromString('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C');

export const PARENT_LOCATOR_TYPE_VHDX = guidFromString('B04AEFB7-D19E-4A81-B789-25B8E9445913');
