// Reading request payloads the way the real guest's Go decoder does: keys match exactly or,
// failing that, case-insensitively; absent and null fields are their zero value; unknown keys
// are ignored; a value of the wrong type fails the whole request as invalid JSON (0xC037010D),
// as json.Unmarshal would.
import { GuestError } from "./errors.js";

export type JsonObject = Record<string, unknown>;

export const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** The value of `name` in `o` (exact key first, then any casing), or undefined for absent or null. */
export function field(o: JsonObject, name: string): unknown {
  let v = Object.hasOwn(o, name) ? o[name] : undefined;
  if (v === undefined) {
    const lower = name.toLowerCase();
    const key = Object.keys(o).find((k) => k.toLowerCase() === lower);
    if (key !== undefined) v = o[key];
  }
  return v === null ? undefined : v;
}

function wrongType(what: string, want: string, v: unknown): never {
  throw new GuestError("INVALID_JSON", `${what}: expected ${want}, got ${JSON.stringify(v)?.slice(0, 80) ?? typeof v}`);
}

/** A string field; absent is "". */
export function str(o: JsonObject, name: string, what = name): string {
  const v = field(o, name);
  if (v === undefined) return "";
  return typeof v === "string" ? v : wrongType(what, "a string", v);
}

/** An unsigned integer field up to `max`; absent is 0. */
export function uint(o: JsonObject, name: string, max: number, what = name): number {
  const v = field(o, name);
  if (v === undefined) return 0;
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max ? v : wrongType(what, `an integer from 0 to ${max}`, v);
}

export const U8 = 0xff;
export const U32 = 0xffff_ffff;
export const U64 = Number.MAX_SAFE_INTEGER;

/** A boolean field; absent is false. */
export function bool(o: JsonObject, name: string, what = name): boolean {
  const v = field(o, name);
  if (v === undefined) return false;
  return typeof v === "boolean" ? v : wrongType(what, "true or false", v);
}

/** An object field; absent is undefined. */
export function object(o: JsonObject, name: string, what = name): JsonObject | undefined {
  const v = field(o, name);
  if (v === undefined) return undefined;
  return isObject(v) ? v : wrongType(what, "an object", v);
}

/** An array-of-strings field; absent is []. */
export function strings(o: JsonObject, name: string, what = name): string[] {
  const v = field(o, name);
  if (v === undefined) return [];
  if (!Array.isArray(v)) return wrongType(what, "an array of strings", v);
  return v.map((s, i) => (typeof s === "string" ? s : wrongType(`${what}[${i}]`, "a string", s)));
}

/** A string-to-string map field; absent is {}. */
export function stringMap(o: JsonObject, name: string, what = name): Record<string, string> {
  const m = object(o, name, what);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) {
    if (v === null) continue;
    out[k] = typeof v === "string" ? v : wrongType(`${what}.${k}`, "a string", v);
  }
  return out;
}

/** An array-of-objects field; absent is []. */
export function objects(o: JsonObject, name: string, what = name): JsonObject[] {
  const v = field(o, name);
  if (v === undefined) return [];
  if (!Array.isArray(v)) return wrongType(what, "an array", v);
  return v.map((e, i) => (isObject(e) ? e : wrongType(`${what}[${i}]`, "an object", e)));
}

/**
 * An "AnyInString" field (ProcessParameters, ContainerConfig): a JSON document encoded as a
 * JSON string, parsed a second time into an object.
 */
export function jsonInString(o: JsonObject, name: string, what = name): JsonObject {
  const v = field(o, name);
  if (typeof v !== "string") return wrongType(what, "a JSON document in a string", v);
  let inner: unknown;
  try {
    inner = JSON.parse(v);
  } catch (err) {
    throw new GuestError("INVALID_JSON", `${what}: ${(err as Error).message}`, { cause: err });
  }
  return isObject(inner) ? inner : wrongType(what, "a JSON object", inner);
}

/** An absolute path field (or "" when `optional`), without NUL bytes. */
export function absolutePath(o: JsonObject, name: string, what: string, options: { optional: boolean }): string {
  const p = str(o, name, what);
  if (p === "" && options.optional) return "";
  if (!p.startsWith("/") || p.includes("\0")) throw new GuestError("INVALID_ARGUMENT", `${what} ${JSON.stringify(p)} is not an absolute path`);
  return p;
}
