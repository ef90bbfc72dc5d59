// createSandbox: a blank sandbox VHDX (ext4 with upper/ and work/) on stdout. `-size` is the
// virtual size in bytes (the 2017 tool logged it and copied a prebuilt 20 GiB file; we make
// the size asked for); `-file`, the prebuilt file's path, is accepted and unused.
import { createSandbox, DEFAULT_SANDBOX_SIZE } from "@lcow/vhd";
import { ToolError } from "./errors.js";
import type { ToolContext } from "./index.js";
import { streamFile, withTempFile } from "./temp.js";

export async function createSandboxTool(tool: string, ctx: ToolContext): Promise<void> {
  const text = ctx.flags.values.size ?? "";
  const size = text === "" ? DEFAULT_SANDBOX_SIZE : Number(text);
  if (!/^\d*$/.test(text) || !Number.isSafeInteger(size)) throw new ToolError(`${tool}: -size ${JSON.stringify(text)} is not a number of bytes`);
  await withTempFile(ctx.flags.values.tmpdir!, tool, ".vhdx", async (vhdx) => {
    await createSandbox(vhdx, { size });
    await streamFile(vhdx, ctx.stdout);
  });
}
