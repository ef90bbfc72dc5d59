// Running a process in the guest the way a host does (spec §4.4): listen on fresh stdio ports,
// send ExecuteProcess, accept the guest's dials while waiting for the answer, then wait.
import type { Socket } from "node:net";
import { FIRST_STDIO_VSOCK_PORT, Rpc, executeProcessRequest, waitForProcessRequest, type ProcessParameters } from "@lcow/gcs-client/protocol";
import { readAll, resultOf, type Response, type TestGuest } from "./harness.js";

let nextPort = FIRST_STDIO_VSOCK_PORT;

export interface Started {
  response: Response;
  pid: number;
  stdin?: Socket;
  stdout?: Promise<Buffer>;
  stderr?: Promise<Buffer>;
}

/** Starts `params` in the guest with the pipes it asks for; rejects if ExecuteProcess fails. */
export async function startProcess(guest: TestGuest, params: ProcessParameters, containerId?: string): Promise<Started> {
  const names = [params.CreateStdInPipe, params.CreateStdOutPipe, params.CreateStdErrPipe];
  const ports = names.map((wanted) => (wanted ? nextPort++ : undefined));
  const listeners = await Promise.all(ports.map((p) => (p === undefined ? undefined : guest.listenPort(p))));
  try {
    const response = guest.conn.request(Rpc.ExecuteProcess, executeProcessRequest(params, { StdIn: ports[0], StdOut: ports[1], StdErr: ports[2] }, containerId));
    const accepted = listeners.map((l) => l?.accept(10_000));
    // Read stdout and stderr from the moment they are accepted: an empty stream's EOF is
    // emitted (and lost) as soon as it arrives if nobody is listening.
    const outputs = accepted.map((a, i) => (i > 0 && a ? a.then(readAll) : undefined));
    for (const o of outputs) o?.catch(() => {});
    const r = await response;
    if (resultOf(r) !== 0) {
      for (const a of accepted) a?.then((s) => s.destroy(), () => {});
      throw Object.assign(new Error(`ExecuteProcess failed: ${String(r.body.ErrorMessage)}`), { response: r });
    }
    // The guest's dials have completed (it answered), but Node may not have accepted them yet:
    // the listeners must stay open until it has, or the queued connections are dropped.
    const [stdin] = await Promise.all(accepted);
    stdin?.on("error", () => {}); // EPIPE when the process exits without reading its input
    return { response: r, pid: r.body.ProcessId as number, stdin, stdout: outputs[1], stderr: outputs[2] };
  } finally {
    await Promise.all(listeners.map((l) => l?.close()));
  }
}

/** WaitForProcess on `pid`. */
export function waitProcess(guest: TestGuest, pid: number, timeoutMs?: number): Promise<Response> {
  return guest.conn.request(Rpc.WaitForProcess, waitForProcessRequest(pid, timeoutMs));
}

/** Runs a tool-like process to completion: stdin from `input` (then half-closed), returns stdout, stderr and the exit code. */
export async function runProcess(guest: TestGuest, args: string[], input?: Uint8Array, extra: ProcessParameters = {}): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
  const p = await startProcess(guest, { CommandArgs: args, CreateStdInPipe: true, CreateStdOutPipe: true, CreateStdErrPipe: true, ...extra });
  const exit = waitProcess(guest, p.pid);
  p.stdin!.end(input ?? Buffer.alloc(0));
  const [stdout, stderr, w] = await Promise.all([p.stdout!, p.stderr!, exit]);
  p.stdin!.destroy();
  if (resultOf(w) !== 0) throw new Error(`WaitForProcess failed: ${String(w.body.ErrorMessage)}`);
  return { exitCode: w.body.ExitCode as number, stdout, stderr: stderr.toString("utf8") };
}

/** ExecuteProcess that must fail: resolves with the failed response. */
export async function startFails(guest: TestGuest, params: ProcessParameters): Promise<Response> {
  const outcome = await startProcess(guest, params).then(
    (p) => new Error(`process ${p.pid} started`),
    (e: { response?: Response }) => e.response ?? new Error(String(e)),
  );
  if (outcome instanceof Error) throw outcome;
  return outcome;
}
