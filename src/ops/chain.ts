/**
 * Differencing chains over open images (the Node entry finds the files by path): pointing a child at
 * a parent. Creating a child is `create` with a `parent`, committing one is `mergeIntoParent`.
 */
import type { VhdxImage } from '../image/image.js';

/**
 * Points `child` at `parent` (a parent that was moved, renamed or copied): the locator's paths are
 * rewritten through the child's log, other entries kept. The parent must be the same disk (its
 * DataWriteGuid matches the child's linkage), unless `force`: the caller vouches that it holds the same
 * content, and the linkage is rewritten to it (parent_linkage2 dropped). `child.attachParent` checks
 * sizes, sectors and linkage first.
 */
export async function setParent(
  child: VhdxImage,
  parent: VhdxImage,
  paths: { relativePath: string; absolutePath: string },
  options: { force: boolean },
): Promise<void> {
  child.attachParent(parent, { ignoreParentLinkage: options.force });
  const locator = child.parentLocator ?? {};
  const linkage = options.force ? `{${parent.info().dataWriteGuid.toLowerCase()}}` : (locator.parent_linkage ?? '');
  const replaced = ['relative_path', 'absolute_win32_path', 'volume_path', 'parent_linkage', ...(options.force ? ['parent_linkage2'] : [])];
  const kept = Object.entries(locator).filter(([key]) => !replaced.includes(key));
  await child.setParentLocator([
    { key: 'parent_linkage', value: linkage },
    ...kept.map(([key, value]) => ({ key, value })),
    { key: 'relative_path', value: paths.relativePath },
    { key: 'absolute_win32_path', value: paths.absolutePath },
  ]);
}
