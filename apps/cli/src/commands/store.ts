// The layer-store commands: `lcow --root <dir> [--opt k=v]... <command>`, the driver's
// operations from a shell (what Docker calls through the plugin), for scripting and debugging.

import { resolve } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { init, type Driver } from "@lcow/driver";
import { parseCommandArgs, type OptionSpec } from "../args.js";
import { UsageError } from "../errors.js";
import { formatBytes } from "../format.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import type { Command } from "./command.js";

const GLOBAL = `Store options (before the command):
      --root <dir>     The layer store's home (required).
      --opt <k=v>      A driver option (repeatable), e.g. --opt lcow.mounter=kernel.
`;

/** Opens the store named by `--root`; usage error without it. */
async function openStore(io: CliIO): Promise<Driver> {
  if (!io.store) throw new UsageError("this command needs --root <dir> before it");
  return init(resolve(io.cwd ?? process.cwd(), io.store.root), io.store.opts);
}

/** Runs `fn` against the store, reporting failures as every command does. */
async function withStore(io: CliIO, json: boolean, fn: (driver: Driver) => Promise<number>): Promise<number> {
  let driver: Driver;
  try {
    driver = await openStore(io);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
  try {
    return await fn(driver);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
}

/**
 * A store command: parses its flags, answers --help with its usage, and runs `body` with what
 * was parsed. Keeps the per-command code to what the command does.
 */
function storeCommand<S extends OptionSpec>(
  name: string,
  summary: string,
  usage: string,
  options: S,
  body: (parsed: ReturnType<typeof parseCommandArgs>, io: CliIO) => Promise<number>,
): Command {
  return {
    name,
    summary,
    usage,
    async run(argv, io) {
      const parsed = parseCommandArgs(argv, options);
      if (parsed.values.help === true) {
        io.stdout.write(usage);
        return ExitCode.OK;
      }
      return body(parsed, io);
    },
  };
}

function one(positionals: string[], what: string): string {
  if (positionals.length === 0) throw new UsageError(`missing <${what}>`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  return positionals[0]!;
}

const LAYERS_USAGE = `Usage: lcow --root <dir> layers ls [--json]
       lcow --root <dir> layers inspect <id>
       lcow --root <dir> layers rm <id>

List the layers of the store, show one (kind, parent chain, files, metadata), or remove one.

${GLOBAL}`;

const layersCommand = storeCommand("layers", "list, inspect or remove the layers of a store (--root)", LAYERS_USAGE, { json: { type: "boolean" } } satisfies OptionSpec, async ({ values, positionals }, io) => {
  const [verb, ...rest] = positionals;
  const json = values.json === true;
  if (verb === "ls") {
    if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
    return withStore(io, json, async (d) => {
      const layers = await d.layers();
      if (json) io.stdout.write(`${JSON.stringify(layers, null, 2)}\n`);
      else for (const l of layers) io.stdout.write(`${l.id}\t${l.kind}\t${formatBytes(l.fileBytes)}\t${l.parent ?? "-"}${l.mounted ? "\tmounted" : ""}\n`);
      return ExitCode.OK;
    });
  }
  if (verb === "inspect") {
    const id = one(rest, "id");
    return withStore(io, true, async (d) => {
      const layer = (await d.layers()).find((l) => l.id === id);
      const metadata = await d.getMetadata(id);
      io.stdout.write(`${JSON.stringify({ ...layer, metadata }, null, 2)}\n`);
      return ExitCode.OK;
    });
  }
  if (verb === "rm") {
    const id = one(rest, "id");
    return withStore(io, json, async (d) => {
      await d.remove(id);
      return ExitCode.OK;
    });
  }
  throw new UsageError(verb === undefined ? "missing ls, inspect or rm" : `unknown layers command '${verb}'`);
});

const CREATE_USAGE = `Usage: lcow --root <dir> create <id> [--parent <id>] [--rw] [--size <GB>]

Create an empty read-only layer (apply a tar to it with 'apply'), or with --rw a writable
layer: a copy of the cached blank sandbox.vhdx over the parent's chain.

${GLOBAL}`;

const createCommand = storeCommand("create", "create a layer in a store (--rw: a writable one)", CREATE_USAGE, { parent: { type: "string" }, rw: { type: "boolean" }, size: { type: "string" } } satisfies OptionSpec, async ({ values, positionals }, io) => {
  const id = one(positionals, "id");
  const parent = typeof values.parent === "string" ? values.parent : "";
  const storageOpt = typeof values.size === "string" ? { storageOpt: { "lcow.sandboxsize": values.size } } : {};
  return withStore(io, false, async (d) => {
    if (values.rw === true) await d.createReadWrite(id, parent, storageOpt);
    else await d.create(id, parent, storageOpt);
    return ExitCode.OK;
  });
});

const APPLY_USAGE = `Usage: lcow --root <dir> apply <tar|-> --id <id> [--parent <id>]

Apply a layer tar (plain, gzip or zstd) to an empty layer: it becomes the layer's layer.vhd,
and the tar can be given back byte for byte by 'diff'. Prints the size of the content.

${GLOBAL}`;

const applyCommand = storeCommand("apply", "apply a layer tar to a layer of a store", APPLY_USAGE, { id: { type: "string" }, parent: { type: "string" }, json: { type: "boolean" } } satisfies OptionSpec, async ({ values, positionals }, io) => {
  const input = one(positionals, "tar");
  if (typeof values.id !== "string") throw new UsageError("missing --id <id>");
  const id = values.id;
  const json = values.json === true;
  return withStore(io, json, async (d) => {
    const source = input === "-" ? io.stdin : resolve(io.cwd ?? process.cwd(), input);
    const size = await d.applyDiff(id, typeof values.parent === "string" ? values.parent : undefined, source);
    io.stdout.write(json ? `${JSON.stringify({ ok: true, id, size })}\n` : `${size}\n`);
    return ExitCode.OK;
  });
});

const DIFF_USAGE = `Usage: lcow --root <dir> diff <id> [--parent <id>]

Write the layer's changes as a tar on standard output: for an applied layer, the tar it was
applied from, byte for byte; for a writable layer, its upper directory with whiteouts.

${GLOBAL}`;

const diffCommand = storeCommand("diff", "write a layer's changes as a tar to stdout", DIFF_USAGE, { parent: { type: "string" } } satisfies OptionSpec, async ({ values, positionals }, io) => {
  const id = one(positionals, "id");
  if (!io.stdoutStream) throw new UsageError("no standard output stream to write the tar to");
  const out = io.stdoutStream as Writable;
  return withStore(io, false, async (d) => {
    const tar = await d.diff(id, typeof values.parent === "string" ? values.parent : undefined);
    await pipeline(Readable.from(tar, { objectMode: false }), out, { end: out !== process.stdout });
    return ExitCode.OK;
  });
});

const CHANGES_USAGE = `Usage: lcow --root <dir> changes <id> [--parent <id>] [--json]

List what the layer changes against its parent, as Docker's 'docker diff' shows it:
A added, C changed, D deleted.

${GLOBAL}`;

const KIND = ["C", "A", "D"];

const changesCommand = storeCommand("changes", "list a layer's changes (A/C/D) against its parent", CHANGES_USAGE, { parent: { type: "string" }, json: { type: "boolean" } } satisfies OptionSpec, async ({ values, positionals }, io) => {
  const id = one(positionals, "id");
  const json = values.json === true;
  return withStore(io, json, async (d) => {
    const changes = await d.changes(id, typeof values.parent === "string" ? values.parent : undefined);
    if (json) io.stdout.write(`${JSON.stringify(changes, null, 2)}\n`);
    else for (const c of changes) io.stdout.write(`${KIND[c.kind] ?? "?"} ${c.path}\n`);
    return ExitCode.OK;
  });
});

const MOUNT_USAGE = `Usage: lcow --root <dir> mount <id>
       lcow --root <dir> umount <id>

'mount' takes a reference on the layer's union view (the driver's Get) and prints its path on
its last line; 'umount' drops one (Put). The view is released with the last reference, by
another process as well.

${GLOBAL}`;

const mountCommand = storeCommand("mount", "mount a layer's union view (Get) and print its path", MOUNT_USAGE, {} satisfies OptionSpec, async ({ positionals }, io) => {
  const id = one(positionals, "id");
  return withStore(io, false, async (d) => {
    io.stdout.write(`${await d.get(id)}\n`);
    return ExitCode.OK;
  });
});

const umountCommand = storeCommand("umount", "release a reference taken by mount (Put)", MOUNT_USAGE, {} satisfies OptionSpec, async ({ positionals }, io) => {
  const id = one(positionals, "id");
  return withStore(io, false, async (d) => {
    await d.put(id);
    return ExitCode.OK;
  });
});

const CLEANUP_USAGE = `Usage: lcow --root <dir> cleanup

Release every mount of the store and sweep leftovers (what the driver's Cleanup does).

${GLOBAL}`;

const cleanupCommand = storeCommand("cleanup", "release every mount of a store and sweep leftovers", CLEANUP_USAGE, {} satisfies OptionSpec, async ({ positionals }, io) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  return withStore(io, false, async (d) => {
    await d.cleanup();
    return ExitCode.OK;
  });
});

export const STORE_COMMANDS: readonly Command[] = [layersCommand, createCommand, applyCommand, diffCommand, changesCommand, mountCommand, umountCommand, cleanupCommand];

