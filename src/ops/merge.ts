/**
 * Merging a differencing disk into its parent (`vhdx commit`). The chain reads the same at every
 * instant, so a crash at any point leaves a child that still opens over its parent with unchanged
 * content, and running the merge again finishes it:
 *  1. The parent's next DataWriteGuid G is chosen and recorded first in the child's parent_linkage2
 *     (through the child's log, §6.2): from then on the child accepts the parent before and after the
 *     parent's first change, which installs G.
 *  2. Every range the child serves is written into the parent: its data, and zeros where the child
 *     hides the parent (ZERO/UNMAPPED/UNDEFINED blocks). Ranges the child takes from the parent are
 *     untouched. The parent's own write path keeps its crash-safety rules.
 *  3. The parent is flushed; the child's parent_linkage becomes G (linkage2 dropped).
 */
import { VhdxError } from '../format/errors.js';
import { guidToString, randomGuid } from '../format/guid.js';
import type { VhdxImage } from '../image/image.js';

export interface MergeOptions {
  /** Bytes of the virtual disk examined so far, of the whole. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Bytes per copy (default 4 MiB). */
  chunkSize?: number;
}

export interface MergeResult {
  /** Bytes of data copied into the parent, and bytes zeroed there because the child hid them. */
  copied: number;
  zeroed: number;
}

export async function mergeIntoParent(child: VhdxImage, options: MergeOptions = {}): Promise<MergeResult> {
  const parent = child.parent;
  const file = child.backend.name;
  if (child.type !== 'differencing') throw new VhdxError('INVALID_ARGUMENT', 'not a differencing disk: there is nothing to merge', { file });
  if (!parent) throw new VhdxError('PARENT_REQUIRED', 'the parent must be attached (opened for writing) to merge into it', { file });
  if (child.readOnly || parent.readOnly) throw new VhdxError('READ_ONLY', 'merging needs the child and its parent open for writing', { file });
  const locator = child.parentLocator ?? {};
  const next = randomGuid();
  // parent_linkage names the parent as it is now (it was accepted when attached: it may be the
  // linkage2 of an earlier, interrupted merge), parent_linkage2 what it will be after its first change.
  const keep = Object.entries(locator).filter(([k]) => k !== 'parent_linkage2' && k !== 'parent_linkage');
  const now = `{${parent.info().dataWriteGuid.toLowerCase()}}`;
  await child.setParentLocator([
    { key: 'parent_linkage', value: now },
    ...keep.map(([key, value]) => ({ key, value })),
    { key: 'parent_linkage2', value: `{${guidToString(next).toLowerCase()}}` },
  ]);
  parent.presetDataWriteGuid(next);

  const chunkSize = options.chunkSize ?? 4 * 1024 * 1024;
  const buffer = new Uint8Array(chunkSize);
  let copied = 0;
  let zeroed = 0;
  const total = child.virtualSize;
  for await (const extent of child.walk()) {
    options.signal?.throwIfAborted();
    if (extent.kind === 'parent') {
      options.onProgress?.(extent.offset + extent.length, total);
      continue;
    }
    if (extent.kind === 'data') {
      for (let at = extent.offset; at < extent.offset + extent.length; at += chunkSize) {
        options.signal?.throwIfAborted();
        const piece = buffer.subarray(0, Math.min(chunkSize, extent.offset + extent.length - at));
        await child.readInto(piece, at);
        await parent.write(at, piece);
        copied += piece.length;
        options.onProgress?.(at + piece.length, total);
      }
    } else {
      // The child reads zeros here whatever the parent holds: the parent must read zeros too.
      await parent.writeZeroes(extent.offset, extent.length);
      zeroed += extent.length;
      options.onProgress?.(extent.offset + extent.length, total);
    }
  }
  await parent.flush();
  // The parent now carries G (if anything changed it); the child's primary linkage follows.
  const current = parent.info().dataWriteGuid.toLowerCase();
  await child.setParentLocator([{ key: 'parent_linkage', value: `{${current}}` }, ...keep.map(([key, value]) => ({ key, value }))]);
  return { copied, zeroed };
}
