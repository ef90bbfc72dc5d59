import { run, describeFailure } from "./exec.js";

/**
 * Runs `e2fsck -fn` (full check, answer "no" to every fix) on a raw ext4 image: exactly the
 * filesystem bytes, so for a VHD pass the raw copy `vhdChecks` produced. Throws, with the
 * command and e2fsck's whole output in the message, unless the exit code is 0; returns the output.
 */
export async function e2fsckClean(rawImagePath: string): Promise<string> {
  const r = await run("e2fsck", ["-fn", rawImagePath]);
  if (r.code !== 0) throw new Error(`e2fsck is not clean:\n${describeFailure(r)}`);
  return r.stdout + r.stderr;
}
