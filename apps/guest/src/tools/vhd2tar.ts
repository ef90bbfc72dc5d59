// vhd2tar: a VHD (or raw ext4, or VHDX: detected) on stdin -> the tar of its filesystem on
// stdout, overlay whiteouts turned back into `.wh.` entries. The image is copied to a temporary
// file first: the reader needs random access.
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { exportImage } from "@lcow/vhd";
import type { ToolContext } from "./index.js";
import { withTempFile } from "./temp.js";

export async function vhd2tarTool(tool: string, ctx: ToolContext): Promise<void> {
  await withTempFile(ctx.flags.values.tmpdir!, tool, ".vhd", async (image) => {
    await pipeline(ctx.stdin, createWriteStream(image, { flags: "wx", highWaterMark: 1 << 20 }));
    await exportImage(image, ctx.stdout as NodeJS.WritableStream & import("node:stream").Writable);
  });
}
