// The guest's log: one JSON object per line on stderr, which the launcher keeps (and shows when
// the "VM" fails). Quiet by default: warnings and errors only; `--log-level info` adds the
// connection's life, `debug` every request.
import type { Writable } from "node:stream";

export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LogLevel;

/** The default `--log-level`. */
export const DEFAULT_LOG_LEVEL: LogLevel = "warn";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

/** Logs lines at `level` and above to `out` (default stderr). Errors in fields are written as `{name, code, message}`. */
export function createLogger(options: { level?: LogLevel; out?: Writable; fields?: Record<string, unknown> } = {}): Logger {
  const min = LogLevel[options.level ?? DEFAULT_LOG_LEVEL];
  const out = options.out ?? process.stderr;
  const base = options.fields ?? {};
  const write = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (LogLevel[level] < min) return;
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }, replaceErrors)}\n`);
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
  };
}

function replaceErrors(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, code: (value as { code?: unknown }).code, message: value.message };
  if (typeof value === "bigint") return value.toString();
  return value;
}
