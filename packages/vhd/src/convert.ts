import type { ConvertOptions, ConvertSummary } from "./api.js";

/**
 * Converts a layer tar (plain, gzip or zstd, detected by magic) to an ext4 image at `outPath`,
 * with a fixed VHD footer unless `options.vhd === false`. Written under a temporary name and
 * renamed into place, so a failure leaves no output file.
 */
export async function convertTar(
  input: AsyncIterable<Uint8Array>,
  outPath: string,
  options: ConvertOptions = {},
): Promise<ConvertSummary> {
  void input; void outPath; void options;
  throw new Error("not implemented yet");
}
