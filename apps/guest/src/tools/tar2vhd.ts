// tar2vhd: a layer tar on stdin -> a VHD (ext4 + fixed footer) on stdout. OCI whiteouts become
// overlay whiteouts, as the 2017 tool's unpack did. The image is written to a temporary file
// first: the ext4 writer places metadata after the data, so it needs a seekable target.
import { convertTar } from "@lcow/vhd";
import type { ToolContext } from "./index.js";
import { streamFile, withTempFile } from "./temp.js";

export async function tar2vhdTool(tool: string, ctx: ToolContext): Promise<void> {
  await withTempFile(ctx.flags.values.tmpdir!, tool, ".vhd", async (vhd) => {
    await convertTar(ctx.stdin, vhd, { format: "vhd" });
    await streamFile(vhd, ctx.stdout);
  });
}
