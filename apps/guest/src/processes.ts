// External processes (spec §3.3, §3.4): processes run in the guest itself, for the null
// ContainerId or with CreateInUtilityVM. The guest dials the host's stdio ports (stdin, then
// stdout, then stderr, those requested) before it starts the process, and gives the sockets to
// the child as its fd 0/1/2, so the host reads EOF when the child (and whatever inherited the
// fds) is done. The table outlives bridge connections, like the real guest's; a process leaves
// it after the first wait that got its exit code to the host.
import { spawn, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { basename } from "node:path";
import { INFINITE_WAIT, SIGNALLED_EXIT_CODE } from "@lcow/gcs-client/protocol";
import { dialWithRetry, describeEndpoint, stdioEndpoint, type StdioBase } from "./endpoint.js";
import { GuestError } from "./errors.js";
import { bool, field, jsonInString, object, str, stringMap, strings, uint, U32, type JsonObject } from "./fields.js";
import { lookPath } from "./look-path.js";
import { splitShellWords } from "./shell-words.js";
import { TOOL_NAMES, type ToolName } from "./tools/names.js";
import type { Logger } from "./log.js";

/** Stdio dials: tries and spacing (the real guest: 10 tries, 100 ms apart). */
const STDIO_DIAL_ATTEMPTS = 10;
const STDIO_DIAL_INTERVAL_MS = 100;
/** setTimeout's largest delay; longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What ExecuteProcess asks for, read from its Settings. */
export interface ExecRequest {
  args: string[];
  workingDirectory: string;
  env: Record<string, string>;
  external: boolean;
  /** Ports to dial, in order stdin, stdout, stderr; undefined where no pipe was asked for. */
  ports: [number | undefined, number | undefined, number | undefined];
}

/** Reads ExecuteProcess's Settings: ProcessParameters (a JSON string) and VsockStdioRelaySettings. */
export function parseExecRequest(settings: JsonObject): ExecRequest {
  const p = jsonInString(settings, "ProcessParameters", "Settings.ProcessParameters");
  const what = "ProcessParameters";
  let args = strings(p, "CommandArgs", `${what}.CommandArgs`);
  if (args.length === 0) args = splitShellWords(str(p, "CommandLine", `${what}.CommandLine`));
  if (args.length === 0 || args[0] === "") throw new GuestError("INVALID_ARGUMENT", `${what}: no CommandArgs or CommandLine to run`);
  if (bool(p, "EmulateConsole", `${what}.EmulateConsole`)) throw new GuestError("NOT_IMPLEMENTED", `${what}.EmulateConsole: this guest has no pty support`);
  // Container-only fields: an OCI process means "exec in a container", which this guest has none of.
  if (field(p, "OciProcess") !== undefined) throw new GuestError("SYSTEM_NOT_FOUND", `${what}.OciProcess: this guest runs no containers`);
  const relay = object(settings, "VsockStdioRelaySettings", "Settings.VsockStdioRelaySettings") ?? {};
  const port = (pipe: string, name: string): number | undefined => {
    if (!bool(p, pipe, `${what}.${pipe}`)) return undefined;
    const n = uint(relay, name, U32, `VsockStdioRelaySettings.${name}`);
    if (n === 0) throw new GuestError("INVALID_ARGUMENT", `${what}.${pipe} is set but VsockStdioRelaySettings.${name} names no port`);
    return n;
  };
  return {
    args,
    workingDirectory: str(p, "WorkingDirectory", `${what}.WorkingDirectory`),
    env: stringMap(p, "Environment", `${what}.Environment`),
    external: bool(p, "CreateInUtilityVM", `${what}.CreateInUtilityVM`),
    ports: [port("CreateStdInPipe", "StdIn"), port("CreateStdOutPipe", "StdOut"), port("CreateStdErrPipe", "StdErr")],
  };
}

/** Reads WaitForProcess's ProcessId and TimeoutInMs. */
export function parseWaitRequest(body: JsonObject): { pid: number; timeoutMs: number } {
  return { pid: uint(body, "ProcessId", U32), timeoutMs: field(body, "TimeoutInMs") === undefined ? 0 : uint(body, "TimeoutInMs", U32) };
}

interface Entry {
  pid: number;
  args: string[];
  child: ChildProcess;
  /** Resolves with the exit code once the child has exited (4294967295 for a signal death). */
  exit: Promise<number>;
  exitCode: number | undefined;
  waiters: number;
}

/** How the guest runs its own tools: `process.execPath <main.js> tool <name> -tmpdir <dir> ...args`. */
export interface ToolRunner {
  mainScript: string;
  tmpDir: string;
}

export class ProcessTable {
  readonly #entries = new Map<number, Entry>();

  constructor(
    readonly stdio: StdioBase,
    readonly tools: ToolRunner,
    readonly log: Logger,
  ) {}

  /**
   * Starts `req` and returns its pid: dials the stdio ports in order (each retried), then
   * spawns with the sockets as fd 0/1/2. A dial or exec failure is FAILED, and every socket
   * dialed so far is closed.
   */
  async exec(req: ExecRequest, signal: AbortSignal): Promise<number> {
    const cwd = req.workingDirectory || process.cwd();
    const [file, argv, argv0] = await this.#resolve(req.args, cwd);
    const sockets: (Socket | undefined)[] = [];
    try {
      for (const [i, port] of req.ports.entries()) {
        if (port === undefined) {
          sockets.push(undefined);
          continue;
        }
        const endpoint = stdioEndpoint(this.stdio, port);
        try {
          sockets.push(await dialWithRetry(endpoint, { attempts: STDIO_DIAL_ATTEMPTS, intervalMs: STDIO_DIAL_INTERVAL_MS, signal }));
        } catch (err) {
          throw new GuestError("FAILED", `dialing ${["stdin", "stdout", "stderr"][i]} at ${describeEndpoint(endpoint)}: ${(err as Error).message}`, { cause: err });
        }
      }
      const child = spawn(file, argv, {
        argv0,
        cwd,
        env: req.env,
        stdio: [sockets[0] ?? "ignore", sockets[1] ?? "ignore", sockets[2] ?? "ignore"],
      });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", resolve);
        child.once("error", reject);
      }).catch((err: unknown) => {
        throw new GuestError("FAILED", `exec ${JSON.stringify(req.args[0])} in ${cwd}: ${(err as Error).message}`, { cause: err });
      });
      const pid = child.pid!;
      const entry: Entry = { pid, args: req.args, child, exitCode: undefined, waiters: 0, exit: undefined as unknown as Promise<number> };
      entry.exit = new Promise<number>((resolve) => {
        child.once("exit", (code, sig) => {
          entry.exitCode = sig !== null || code === null ? SIGNALLED_EXIT_CODE : code;
          this.log.info("process exited", { pid, exitCode: entry.exitCode, signal: sig ?? undefined });
          resolve(entry.exitCode);
        });
      });
      this.#entries.set(pid, entry);
      this.log.info("process started", { pid, args: req.args });
      return pid;
    } finally {
      // The child holds its own copies of the sockets; ours would keep the host from seeing EOF.
      for (const s of sockets) s?.destroy();
    }
  }

  /**
   * Waits for `pid` to exit, at most `timeoutMs` (4294967295 = forever): TIMEOUT then, which
   * ends this wait only. CLOSED if `signal` aborts (the bridge closed; the process stays for a
   * later wait). The first wait to complete removes the process; later ones are NOT_FOUND.
   */
  async wait(pid: number, timeoutMs: number, signal: AbortSignal): Promise<number> {
    const entry = this.#entries.get(pid);
    if (!entry) throw new GuestError("NOT_FOUND", `process ${pid} not found (never started here, or already waited for)`);
    entry.waiters++;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const code = await new Promise<number>((resolve, reject) => {
        void entry.exit.then(resolve);
        if (entry.exitCode !== undefined) return resolve(entry.exitCode);
        if (timeoutMs !== INFINITE_WAIT) {
          const deadline = Date.now() + timeoutMs;
          const arm = () => {
            const left = deadline - Date.now();
            if (left <= 0) return reject(new GuestError("TIMEOUT", `process ${pid} did not exit within ${timeoutMs} ms`));
            timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
          };
          arm();
        }
        onAbort = () => reject(new GuestError("CLOSED", `the bridge closed while waiting for process ${pid}`));
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      });
      this.#entries.delete(pid);
      return code;
    } finally {
      entry.waiters--;
      if (timer) clearTimeout(timer);
      if (onAbort) signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Ends every process (teardown): SIGTERM and up to `graceMs` to exit, then SIGKILL; with
   * `graceMs` 0, SIGKILL at once. Resolves when all have exited.
   */
  async killAll(graceMs: number): Promise<void> {
    const live = [...this.#entries.values()].filter((e) => e.exitCode === undefined);
    for (const e of live) e.child.kill(graceMs > 0 ? "SIGTERM" : "SIGKILL");
    if (graceMs > 0) {
      const timer = setTimeout(() => live.forEach((e) => e.exitCode === undefined && e.child.kill("SIGKILL")), graceMs);
      await Promise.all(live.map((e) => e.exit));
      clearTimeout(timer);
    } else {
      await Promise.all(live.map((e) => e.exit));
    }
  }

  describe(): string[] {
    return [...this.#entries.values()].map(
      (e) => `process ${e.pid}: ${JSON.stringify(e.args)} ${e.exitCode === undefined ? "running" : `exited ${e.exitCode}`}, ${e.waiters} waiter(s)`,
    );
  }

  /** [file, argv (without argv[0]), argv0] for `args`: one of our tools, or a binary found on the guest's PATH. */
  async #resolve(args: string[], cwd: string): Promise<[string, string[], string]> {
    const name = basename(args[0]!);
    if ((TOOL_NAMES as readonly string[]).includes(name)) {
      return [process.execPath, [this.tools.mainScript, "tool", name as ToolName, "-tmpdir", this.tools.tmpDir, ...args.slice(1)], process.execPath];
    }
    const file = await lookPath(args[0]!, process.env.PATH ?? "", cwd);
    if (!file) throw new GuestError("FAILED", `exec: ${JSON.stringify(args[0])}: executable file not found in $PATH`);
    return [file, args.slice(1), args[0]!];
  }
}

