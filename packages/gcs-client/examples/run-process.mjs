// Runs one process in a guest over unix sockets and prints its output and exit code.
//   node examples/run-process.mjs <dir> [command...]
// Listens on <dir>/1073741824.sock for the guest's bridge connection, then on <dir>/<port>.sock
// for each stdio stream. Start a guest that dials them, e.g. from the repository root:
//   node apps/guest/dist/main.js serve --bridge unix:<dir>/1073741824.sock --stdio unix:<dir> \
//     --scsi-dir <scratch dir> --state-dir <scratch dir>
// Build the package first (`npx tsup`).
import { mkdir } from "node:fs/promises";
import { GCS_VSOCK_PORT, GcsBridge, UnixTransport, isGcsError } from "@lcow/gcs-client";

const [dir, ...command] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node examples/run-process.mjs <dir> [command...]");
  process.exit(2);
}

await mkdir(dir, { recursive: true });
const transport = new UnixTransport({ dir });
try {
  const listener = await transport.listen(GCS_VSOCK_PORT);
  console.error(`waiting for a guest to dial ${transport.pathOf(GCS_VSOCK_PORT)} ...`);
  const bridge = new GcsBridge(await listener.accept({ timeoutMs: 60_000 }), { transport, timeoutMs: 30_000 });
  await listener.close();
  bridge.on("close", (reason) => console.error(`bridge closed: ${reason.code} ${reason.message}`));

  const { capabilities } = await bridge.negotiate();
  console.error(`negotiated version 4 with a ${capabilities.RuntimeOsType} GCS`);

  const proc = await bridge.executeProcess(
    {
      CommandArgs: command.length > 0 ? command : ["/bin/sh", "-c", "echo hello from $(uname -n); cat; exit 3"],
      WorkingDirectory: "/",
      Environment: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
    },
    { stdin: true, stdout: true, stderr: true },
  );
  proc.stdout.pipe(process.stdout);
  proc.stderr.pipe(process.stderr);
  proc.stdin.end("this line went through stdin\n");
  const code = await proc.finish();
  console.error(`pid ${proc.pid} exited with ${code}`);

  await bridge.shutdown(true).catch((err) => console.error(`shutdown: ${err.message}`));
  process.exitCode = code === 0 ? 0 : 1;
} catch (err) {
  console.error(isGcsError(err) ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
} finally {
  await transport.close();
}
