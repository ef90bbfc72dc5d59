// `lcow-plugin`'s body: the Docker graphdriver plugin process. Parses flags, opens the driver at --root,
// listens, and on SIGTERM/SIGINT finishes requests in flight, releases every mount and exits.

import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createRequire } from "node:module";
import type { DriverOptions } from "@lcow/driver";
import { parsePluginArgs, specFileText, USAGE } from "./args.js";
import { createLcowDriver } from "./driver.js";
import { toPluginResponse } from "./errors.js";
import { createLogger } from "./log.js";
import { PluginServer } from "./server.js";

/** Runs the plugin process with `argv`; resolves with the exit code. `driverOptions` lets a build add mounters. */
export async function runPlugin(argv: string[], driverOptions?: DriverOptions): Promise<number> {
  let args;
  try {
    args = parsePluginArgs(argv);
  } catch (err) {
    process.stderr.write(`lcow-plugin: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    const pkg = createRequire(import.meta.url)("../package.json") as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const log = createLogger({ level: args.logLevel });
  const server = new PluginServer({ driver: createLcowDriver({ log, driverOptions }), root: args.root, options: args.options, log });
  try {
    await server.start();
    if (!args.socket.startsWith("\\\\")) await mkdir(dirname(args.socket), { recursive: true });
    await server.listen(args.socket);
    if (args.specFile !== undefined) {
      await mkdir(dirname(args.specFile), { recursive: true });
      await writeFile(args.specFile, specFileText(args.socket));
      log.info("spec file written", { specFile: args.specFile });
    }
  } catch (err) {
    log.error("start failed", { err, ...toPluginResponse(err).body });
    await server.close().catch(() => {});
    return 1;
  }
  log.info("ready", { root: args.root, socket: args.socket, options: args.options, pid: process.pid });

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn("second signal: exiting without waiting", { signal });
        process.exit(1);
      }
      stopping = true;
      log.info("stopping", { signal });
      void (async () => {
        let code = 0;
        try {
          await server.close();
        } catch (err) {
          log.error("cleanup failed", { err });
          code = 1;
        }
        if (args.specFile !== undefined) await rm(args.specFile, { force: true });
        resolve(code);
      })();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}


