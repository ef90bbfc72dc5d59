// Helpers of the end-to-end suite: a private dockerd (own data root, exec root, API socket,
// pidfile; it starts its own containerd), the plugin as a child process, and image tars built
// from host files (no registry).

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Debian's docker.io client (a newer client elsewhere on PATH may refuse the 20.10 API). */
export const DOCKER_CLI = "/usr/bin/docker";
export const DOCKERD = "/usr/sbin/dockerd";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Thrown by a probe to stop waiting at once (the process being waited for has exited). */
class Fatal extends Error {}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof Fatal) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
    await sleep(200);
  }
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Sends SIGTERM to the pid in `pidfile` (if any) and waits for it to exit; SIGKILL after `graceMs`. */
export async function killByPidfile(pidfile: string, graceMs = 30_000): Promise<void> {
  const text = await readFile(pidfile, "utf8").catch(() => "");
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(100);
  if (pidAlive(pid)) process.kill(pid, "SIGKILL");
  while (pidAlive(pid)) await sleep(50);
}

export interface Dockerd {
  sock: string;
  pidfile: string;
  log: string;
  /** Runs the docker client against this daemon; rejects with stderr on a non-zero exit. */
  docker(args: string[], options?: { input?: string; encoding?: "buffer" }): Promise<string>;
  dockerBuffer(args: string[]): Promise<Buffer>;
  stop(): Promise<void>;
}

/** Starts `dockerd --experimental -s <driver>` on private paths under `dir`; resolves once `docker info` answers. */
export async function startDockerd(dir: string, driver: string, extra: string[] = []): Promise<Dockerd> {
  const sock = join(dir, "docker.sock");
  const pidfile = join(dir, "docker.pid");
  const log = join(dir, "dockerd.log");
  await mkdir(dir, { recursive: true });
  const out = createWriteStream(log, { flags: "a" });
  await new Promise((resolve) => out.once("open", resolve));
  const child = spawn(
    DOCKERD,
    [
      "--experimental",
      "-s",
      driver,
      "--data-root",
      join(dir, "data"),
      "--exec-root",
      join(dir, "exec"),
      "-H",
      `unix://${sock}`,
      "--pidfile",
      pidfile,
      "--iptables=false",
      "--ip-masq=false",
      "--bridge=none",
      "--log-level=info",
      ...extra,
    ],
    { stdio: ["ignore", out, out], detached: false },
  );
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `dockerd exited (${code ?? signal}); see ${log}`));
  const docker = async (args: string[], options: { input?: string } = {}) => {
    const p = run(DOCKER_CLI, ["-H", `unix://${sock}`, ...args], { maxBuffer: 256 * 1024 * 1024, encoding: "utf8" });
    if (options.input !== undefined) p.child.stdin?.end(options.input);
    try {
      return (await p).stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`docker ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
    }
  };
  const dockerBuffer = async (args: string[]) => {
    const { stdout } = await run(DOCKER_CLI, ["-H", `unix://${sock}`, ...args], { maxBuffer: 1024 * 1024 * 1024, encoding: "buffer" });
    return stdout;
  };
  try {
    await waitFor("dockerd", 60_000, async () => {
      if (exited !== undefined) throw new Fatal(exited);
      await run(DOCKER_CLI, ["-H", `unix://${sock}`, "version"], { timeout: 10_000 });
      return true;
    });
  } catch (err) {
    child.kill("SIGTERM");
    await killByPidfile(pidfile);
    const tail = (await readFile(log, "utf8").catch(() => "")).split("\n").slice(-15).join("\n");
    throw new Error(`${(err as Error).message}\n${tail}`);
  }
  return {
    sock,
    pidfile,
    log,
    docker,
    dockerBuffer,
    async stop() {
      await killByPidfile(pidfile, 60_000);
      if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

export interface PluginProcess {
  child: ChildProcess;
  log: string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts the built plugin (`dist/main.js`) and waits for its socket. */
export async function startPlugin(args: { main: string; root: string; socket: string; mounter: string; log: string }): Promise<PluginProcess> {
  await mkdir(dirname(args.socket), { recursive: true });
  const out = createWriteStream(args.log, { flags: "a" });
  await new Promise((resolve) => out.once("open", resolve));
  const child = spawn(process.execPath, [args.main, "--root", args.root, "--socket", args.socket, "--mounter", args.mounter, "--log-level", "debug"], {
    stdio: ["ignore", out, out],
  });
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `plugin exited (${code ?? signal}); see ${args.log}`));
  await waitFor("the plugin socket", 30_000, async () => {
    if (exited !== undefined) throw new Fatal(`${exited}: ${(await readFile(args.log, "utf8").catch(() => "")).slice(-2000)}`);
    return (await lstat(args.socket).catch(() => undefined))?.isSocket() ? true : undefined;
  });
  return {
    child,
    log: args.log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const done = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const code = await done;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Copies host binaries and their shared libraries into `root` (a tiny rootfs that can run them). */
export async function copyBinaries(root: string, binaries: string[]): Promise<void> {
  const files = new Set<string>(binaries);
  for (const bin of binaries) {
    const { stdout } = await run("ldd", [bin]);
    for (const m of stdout.matchAll(/(\/[^\s:]+)\s+\(0x/g)) files.add(m[1]!);
  }
  for (const file of files) {
    await mkdir(join(root, dirname(file)), { recursive: true });
    await writeFile(join(root, file), await readFile(file), { mode: 0o755 });
  }
}

/** `tar -cf out -C dir .` with stable order and root ownership (GNU tar). */
export async function tarDir(dir: string, out: string, members = ["."]): Promise<void> {
  await run("tar", ["--sort=name", "--numeric-owner", "--owner=0", "--group=0", "--mtime=2024-01-01", "-C", dir, "-cf", out, ...members]);
}

/** Whether this process can run the suite: root, Linux, dockerd installed. */
export function dockerSkipReason(): string | undefined {
  if (process.platform !== "linux") return "needs Linux (only a Linux dockerd loads graphdriver plugins)";
  if (process.getuid?.() !== 0) return "needs root (dockerd, loop devices, mounts)";
  if (!existsSync(DOCKERD) || !existsSync(DOCKER_CLI)) return `needs Debian's docker.io (${DOCKERD}, ${DOCKER_CLI}); apt-get install docker.io`;
  return undefined;
}

export { run };
