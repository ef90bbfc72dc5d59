// A small declarative tar builder and parser for the driver's tests (STYLE 12: attack and
// edge-case tars are built in code). ustar headers, with a pax record for long names.
import { createHash } from "node:crypto";

export interface TarEntry {
  path: string;
  type: "file" | "dir" | "symlink" | "hardlink" | "char" | "fifo";
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  data?: Uint8Array;
  linkname?: string;
}

const MTIME = 1_700_000_000;

export const dir = (path: string, mode = 0o755, mtime = MTIME): TarEntry => ({ path: path.endsWith("/") ? path : `${path}/`, type: "dir", mode, mtime });
export const file = (path: string, content: string | Uint8Array, mode = 0o644, mtime = MTIME): TarEntry => ({
  path,
  type: "file",
  mode,
  mtime,
  data: typeof content === "string" ? new TextEncoder().encode(content) : content,
});
export const symlink = (target: string, path: string): TarEntry => ({ path, type: "symlink", linkname: target, mode: 0o777, mtime: MTIME });
export const hardlink = (target: string, path: string): TarEntry => ({ path, type: "hardlink", linkname: target, mode: 0o644, mtime: MTIME });
/** OCI whiteout of `path`: `<dir>/.wh.<name>`. */
export const whiteout = (path: string): TarEntry => {
  const at = path.lastIndexOf("/");
  return file(`${path.slice(0, at + 1)}.wh.${path.slice(at + 1)}`, "");
};
/** OCI opaque marker for the directory `dirPath`. */
export const opaque = (dirPath: string): TarEntry => file(`${dirPath.replace(/\/$/, "")}/.wh..wh..opq`, "");

const TYPEFLAG: Record<TarEntry["type"], string> = { file: "0", hardlink: "1", symlink: "2", char: "3", dir: "5", fifo: "6" };

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(name: string, e: TarEntry, size: number, typeflag: string, linkname = ""): Uint8Array {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, "utf8");
  h.write(octal(e.mode ?? 0o644, 8), 100);
  h.write(octal(e.uid ?? 0, 8), 108);
  h.write(octal(e.gid ?? 0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(e.mtime ?? MTIME, 12), 136);
  h.write("        ", 148);
  h.write(typeflag, 156);
  h.write(linkname.slice(0, 100), 157, "utf8");
  h.write("ustar\0", 257);
  h.write("00", 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + " ", 148);
  return h;
}

const pad = (n: number) => new Uint8Array((512 - (n % 512)) % 512);

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** Serialises entries into a tar (with the two zero blocks at the end). */
export function tarOf(...entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = e.data ?? new Uint8Array(0);
    if (Buffer.byteLength(e.path) > 100 || Buffer.byteLength(e.linkname ?? "") > 100) {
      const pax = Buffer.from(paxRecord("path", e.path) + (e.linkname ? paxRecord("linkpath", e.linkname) : ""));
      parts.push(header("PaxHeaders/x", { path: "", type: "file" }, pax.length, "x"), pax, pad(pax.length));
    }
    parts.push(header(e.path, e, data.length, TYPEFLAG[e.type], e.linkname));
    if (data.length > 0) parts.push(data, pad(data.length));
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}

/** The chunks of a tar, for `applyDiff`. */
export async function* chunksOf(bytes: Uint8Array, size = 4096): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of stream) parts.push(c);
  return Buffer.concat(parts);
}

/** A parsed entry, normalised for tree comparison. */
export interface TreeNode {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  sha256?: string;
  linkname?: string;
}

const field = (h: Buffer, at: number, len: number) => {
  const s = h.subarray(at, at + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? len : nul).toString("utf8");
};
const num = (h: Buffer, at: number, len: number) => parseInt(field(h, at, len).trim() || "0", 8);

/**
 * Parses a tar (ustar, pax `path`/`linkpath`/`size`) into path -> node, the way extracting it
 * would leave the tree: later entries replace earlier ones, hard links resolve to their
 * target's content, `./` and trailing slashes are dropped, the root is skipped.
 */
export function treeOf(bytes: Uint8Array): Map<string, TreeNode> {
  const buf = Buffer.from(bytes);
  const out = new Map<string, TreeNode>();
  let at = 0;
  let pax: Record<string, string> = {};
  while (at + 512 <= buf.length) {
    const h = buf.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const typeflag = String.fromCharCode(h[156]!);
    let size = num(h, 124, 12);
    if (pax["size"]) size = Number(pax["size"]);
    const data = buf.subarray(at + 512, at + 512 + size);
    at += 512 + size + ((512 - (size % 512)) % 512);
    if (typeflag === "x") {
      pax = {};
      const text = data.toString("utf8");
      let i = 0;
      while (i < text.length) {
        const sp = text.indexOf(" ", i);
        const len = Number(text.slice(i, sp));
        const rec = text.slice(sp + 1, i + len - 1);
        const eq = rec.indexOf("=");
        pax[rec.slice(0, eq)] = rec.slice(eq + 1);
        i += len;
      }
      continue;
    }
    if (typeflag === "g") continue;
    const prefix = field(h, 345, 155);
    let path = pax["path"] ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    const linkname = pax["linkpath"] ?? field(h, 157, 100);
    pax = {};
    path = path.replace(/^\.\//, "").replace(/\/+$/, "");
    if (path === "" || path === ".") continue;
    const base = { mode: num(h, 100, 8) & 0o7777, uid: num(h, 108, 8), gid: num(h, 116, 8), mtime: num(h, 136, 12) };
    if (typeflag === "1") {
      const target = out.get(linkname.replace(/^\.\//, ""));
      out.set(path, { ...(target ?? { type: "file", ...base }), ...{} });
      continue;
    }
    const type = typeflag === "5" ? "dir" : typeflag === "2" ? "symlink" : typeflag === "3" ? "char" : typeflag === "4" ? "block" : typeflag === "6" ? "fifo" : "file";
    const node: TreeNode = { type, ...base };
    if (type === "file") node.sha256 = createHash("sha256").update(data).digest("hex");
    if (type === "symlink") node.linkname = linkname;
    // Whiteouts are compared by name only (their mode is not part of the layer's meaning).
    if (/(^|\/)\.wh\./.test(path)) out.set(path, { type: "whiteout", mode: 0, uid: 0, gid: 0, mtime: 0 });
    else out.set(path, node);
  }
  return out;
}

/** The tree as a plain sorted object, for `toEqual` with readable diffs. */
export const treeObject = (bytes: Uint8Array): Record<string, TreeNode> => Object.fromEntries([...treeOf(bytes)].sort(([a], [b]) => (a < b ? -1 : 1)));
