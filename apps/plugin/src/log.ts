// Structured logs: one JSON object per line on stderr (journald and `docker plugin` keep stderr),
// with a fixed `time`, `level`, `msg` and whatever fields the caller adds.

import type { Writable } from "node:stream";

export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LogLevel;

/** A JSON-lines logger. `child(fields)` returns one that adds `fields` to every line. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Logs lines at `level` and above to `out` (default stderr). Errors in fields are written as `{code, message, stack}`. */
export function createLogger(options: { level?: LogLevel; out?: Writable; fields?: Record<string, unknown> } = {}): Logger {
  const min = LogLevel[options.level ?? "info"];
  const out = options.out ?? process.stderr;
  const base = options.fields ?? {};
  const write = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (LogLevel[level] < min) return;
    const line = { time: new Date().toISOString(), level, msg, ...base, ...fields };
    out.write(`${JSON.stringify(line, replaceErrors)}\n`);
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

function replaceErrors(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, code: (value as { code?: unknown }).code, message: value.message, stack: value.stack };
  }
  return value;
}
