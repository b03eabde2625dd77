/**
 * Any `DiskSource` into a new fixed VHD: the virtual disk's bytes at offset 0 (sparse where the source
 * is zero), then the footer. The footer is written last and only after the data is durable, so a crash
 * leaves a file without a valid footer, which no reader takes for a VHD.
 */
import { convertSourceToRaw } from './convert-source.js';
import type { ConvertOptions } from './convert.js';
import type { Backend } from '../io/backend.js';
import { encodeVhdFooter, type VhdFooter } from '../vhd/footer.js';
import { vhdFooterFor, type VhdFooterOptions } from '../vhd/footer-for.js';
import type { DiskSource } from './source.js';

export interface ConvertToVhdOptions extends ConvertOptions, VhdFooterOptions {}

/**
 * Writes `source` to `output` as a fixed VHD whose footer is `vhdFooterFor(source, options)`, and
 * returns that footer. The output is flushed (per its cache mode) but not closed.
 */
export async function convertToVhd(source: DiskSource, output: Backend, options: ConvertToVhdOptions = {}): Promise<VhdFooter> {
  const footer = vhdFooterFor(source, options);
  await convertSourceToRaw(source, { kind: 'file', backend: output }, { ...options, size: footer.currentSize });
  options.signal?.throwIfAborted();
  await output.flush();
  await output.write(encodeVhdFooter(footer), footer.currentSize);
  await output.flush();
  return footer;
}
