// A stand-in converter used ONLY to prove the harness: GNU tar extracts, mkfs.ext4 -d builds
// the image. It is not an oracle for the real converter (e2fsprogs' populate_fs has its own
// rules: no whiteout mapping, its own root directory metadata), and the tests that use it say so.
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { appendFile, lstat, mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { runOk } from "./exec.js";
import { GNU_TAR_EXTRACT } from "./expected.js";
import { encodeFooter } from "./vhd.js";

export interface StandInOptions {
  /** Append a test-encoded fixed VHD footer. If not provided, false. */
  vhd?: boolean;
  creatorApplication?: string;
  /** Image size in bytes (multiple of 4096). If not provided, 64 MiB. */
  size?: number;
}

/** Builds an ext4 image of the tar's GNU tar extraction with `mkfs.ext4 -d`. `workDir` is scratch space. */
export async function convertWithMkfs(tarPath: string, outPath: string, workDir: string, opts: StandInOptions = {}): Promise<void> {
  // mkfs -d copies each source file's ctime, so the stand-in is deterministic only when the
  // same extraction is reused: extract once per (workDir, tar) and keep it until workDir goes.
  const root = join(workDir, `mkfs-root-${createHash("sha256").update(tarPath).digest("hex").slice(0, 12)}`);
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: "1000000000" };
  if (!existsSync(root)) {
    await mkdir(root, { recursive: true });
    await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", tarPath, "-C", root]);
  }
  {
    const size = opts.size ?? 64 << 20;
    // -E root_owner=0:0 keeps the root owned by root whoever runs it; fixed UUID, hash seed and
    // E2FSPROGS_FAKE_TIME make the stand-in deterministic like the real converter must be.
    await runOk("mkfs.ext4", [
      "-q", "-F", "-b", "4096", "-I", "256", "-O", "^has_journal", "-U", "6b1f8ad6-3a52-4d1d-9b1e-000000000001",
      "-E", "root_owner=0:0,hash_seed=6b1f8ad6-3a52-4d1d-9b1e-000000000002", "-d", root, outPath, `${size / 1024}k`,
    ], { env });
    // mkfs -d copies the source root's content but stamps the root inode itself with its own
    // time; copy the extracted root's metadata so the stand-in is a faithful image.
    const st = await lstat(root, { bigint: true });
    const sec = st.mtimeNs / 1_000_000_000n;
    await runOk("debugfs", ["-w", "-R", `sif <2> mtime @${sec}`, outPath], { env });
    await runOk("debugfs", ["-w", "-R", `sif <2> mode 0${(Number(st.mode) & 0o177777).toString(8)}`, outPath], { env });
    if (opts.vhd) {
      const ext4Bytes = (await stat(outPath)).size;
      await appendFile(outPath, encodeFooter(BigInt(ext4Bytes), { creatorApplication: opts.creatorApplication ?? "win ", timestamp: 1_000_000_000 }));
    }
  }
}
