// Reading a layer's own content: its tar (`diff`), its changes against the parent chain
// (`changes`) and their size (`diffSize`). No VM, no mount: the ext4 images are read directly.
import { access } from "node:fs/promises";
import * as vhd from "@lcow/vhd";
import { Ext4Reader, ext4ToTar, openImage, type BlockSource } from "@lcow/vhd";
import { DriverError } from "./errors.js";
import { LAYER_FILE, SANDBOX_FILE, TARSPLIT_FILE } from "./layout.js";
import { join } from "node:path";

type Inode = Awaited<ReturnType<Ext4Reader["readInode"]>>;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const OPAQUE_XATTR = "trusted.overlay.opaque";

/** Docker's `archive.ChangeType`: 0 modify, 1 add, 2 delete. */
export const ChangeKind = { MODIFY: 0, ADD: 1, DELETE: 2 } as const;
export type ChangeKind = (typeof ChangeKind)[keyof typeof ChangeKind];

/** One entry of `changes`, as Docker's `archive.Change` (`Path` with a leading `/`). */
export interface Change {
  path: string;
  kind: ChangeKind;
}

/** What a layer folder holds. */
export type LayerKind = "layer" | "sandbox" | "empty";

/** The seed's getLayerDetails: layer.vhd first, then sandbox.vhdx; neither is an empty layer. */
export async function layerKind(dir: string): Promise<LayerKind> {
  if (await exists(join(dir, LAYER_FILE))) return "layer";
  if (await exists(join(dir, SANDBOX_FILE))) return "sandbox";
  return "empty";
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

// ---------------------------------------------------------------------------------------------
// Byte-exact diffs: the one place that knows whether @lcow/vhd can record and replay tar-split
// data. Flip happens by itself when @lcow/vhd exports `reproduceTar`.

type ReproduceTar = (imagePath: string, tarsplitPath: string) => AsyncIterable<Uint8Array>;
const reproduceTar: ReproduceTar | undefined = typeof (vhd as Record<string, unknown>)["reproduceTar"] === "function" ? ((vhd as Record<string, unknown>)["reproduceTar"] as ReproduceTar) : undefined;

/** True when this build records `layer.tarsplit` at `applyDiff` and `diff` replays the applied tar byte for byte. */
export const REPRODUCES_EXACT_DIFFS: boolean = reproduceTar !== undefined;

/** Extra `convertTar` options that record the tar-split file at `path` (none when unsupported). */
export function tarsplitOptions(path: string): Record<string, unknown> {
  return REPRODUCES_EXACT_DIFFS ? { tarsplitPath: path } : {};
}

/** A tar stream plus how it was made. */
export interface LayerTar {
  /** "exact": the applied tar, byte for byte; "canonical": read back from the filesystem. */
  mode: "exact" | "canonical";
  stream: AsyncIterable<Uint8Array>;
}

/**
 * The tar of a layer folder's own content. A read-only layer with a tar-split record replays the
 * applied tar; without one it is read back as a canonical pax tar (no root entry, whiteouts as
 * `.wh.` files). A writable layer exports `upper/` of its sandbox, overlay whiteouts turned back
 * into `.wh.` entries. An empty layer is an empty tar. The image is opened before this resolves,
 * so a missing or damaged file is an error here rather than in the middle of the stream.
 */
export async function layerTar(dir: string): Promise<LayerTar> {
  const kind = await layerKind(dir);
  if (kind === "empty") return { mode: "canonical", stream: once(new Uint8Array(1024)) };
  const file = join(dir, kind === "layer" ? LAYER_FILE : SANDBOX_FILE);
  if (kind === "layer" && reproduceTar && (await exists(join(dir, TARSPLIT_FILE)))) {
    return { mode: "exact", stream: reproduceTar(file, join(dir, TARSPLIT_FILE)) };
  }
  const image = await openImage(file);
  let source: BlockSource = image.source;
  try {
    // Fail early on a damaged image or a sandbox without upper/.
    const reader = await Ext4Reader.open(source);
    if (kind === "sandbox") await reader.lookup("upper");
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }
  return { mode: "canonical", stream: closing(ext4ToTar(source, { path: kind === "sandbox" ? "upper" : undefined, rootEntry: false }), () => source.close()) };
}

async function* once(chunk: Uint8Array): AsyncGenerator<Uint8Array> {
  yield chunk;
}

async function* closing(inner: AsyncIterable<Uint8Array>, close: () => Promise<void>): AsyncGenerator<Uint8Array> {
  try {
    yield* inner;
  } finally {
    await close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Trees: a layer's own filesystem view (the image root, or upper/ of a sandbox).

interface Node {
  ino: number;
  inode: Inode;
  type: number;
}

/** One layer's content, opened for lookups. */
class LayerTree {
  private readonly dirs = new Map<number, Map<string, number>>();
  private constructor(
    readonly reader: Ext4Reader,
    readonly root: number,
    private readonly source: BlockSource,
  ) {}

  /** True for a read-only layer image with an empty `/lost+found` (mkfs' and our writer's, never layer content). */
  hasLostFound = false;

  /** Opens a layer folder's tree; undefined for an empty layer. */
  static async open(dir: string): Promise<LayerTree | undefined> {
    const kind = await layerKind(dir);
    if (kind === "empty") return undefined;
    const image = await openImage(join(dir, kind === "layer" ? LAYER_FILE : SANDBOX_FILE));
    try {
      const reader = await Ext4Reader.open(image.source);
      const root = kind === "sandbox" ? await reader.lookup("upper") : reader.root;
      const tree = new LayerTree(reader, root, image.source);
      if (kind === "layer") {
        const lf = (await tree.entries(root)).get("lost+found");
        if (lf !== undefined) {
          const node = await tree.node(lf);
          tree.hasLostFound = node.type === S_IFDIR && (await tree.entries(lf)).size === 0;
        }
      }
      return tree;
    } catch (err) {
      await image.source.close().catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.source.close().catch(() => {});
  }

  async node(ino: number): Promise<Node> {
    const inode = await this.reader.readInode(ino);
    return { ino, inode, type: inode.mode & S_IFMT };
  }

  /** A directory's entries by name (latin1 raw bytes), cached. */
  async entries(ino: number): Promise<Map<string, number>> {
    let map = this.dirs.get(ino);
    if (!map) {
      const inode = await this.reader.readInode(ino);
      map = new Map((await this.reader.readDir(ino, inode)).map((e) => [e.name, e.ino]));
      this.dirs.set(ino, map);
    }
    return map;
  }

  isWhiteout(node: Node): boolean {
    if (node.type !== S_IFCHR) return false;
    const { major, minor } = this.reader.device(node.inode);
    return major === 0 && minor === 0;
  }

  async isOpaque(node: Node): Promise<boolean> {
    if (node.type !== S_IFDIR) return false;
    const x = (await this.reader.xattrs(node.ino, node.inode)).find((a) => a.name === OPAQUE_XATTR);
    return x !== undefined && x.value.length === 1 && x.value[0] === 0x79; // "y"
  }
}

/**
 * The union of a parent chain (nearest first) for lookups, with overlayfs rules: a whiteout
 * hides the name in the layers below, an opaque directory hides everything below it.
 */
class ChainView {
  constructor(private readonly trees: LayerTree[]) {}

  /**
   * Follows `parts` down one layer's tree. `masked` is set when something on the way hides the
   * layers below for this path: a non-directory over a prefix, an opaque directory above the
   * last element, or a whiteout.
   */
  private async walk(tree: LayerTree, parts: string[]): Promise<{ ino: number; node: Node | undefined; masked: boolean }> {
    let ino = tree.root;
    let node: Node | undefined = await tree.node(ino);
    let masked = false;
    for (let i = 0; i < parts.length && node; i++) {
      if (node.type !== S_IFDIR) return { ino, node: undefined, masked: true };
      if (i > 0 && (await tree.isOpaque(node))) masked = true;
      const child = (await tree.entries(ino)).get(parts[i]!);
      if (child === undefined) return { ino, node: undefined, masked };
      ino = child;
      node = await tree.node(ino);
      if (tree.isWhiteout(node)) return { ino, node: undefined, masked: true };
    }
    return { ino, node, masked };
  }

  /** What `parts` (latin1 names from the root) resolves to in the union, or undefined. */
  async lookup(parts: string[]): Promise<Node | undefined> {
    for (const tree of this.trees) {
      const { node, masked } = await this.walk(tree, parts);
      if (node) return node;
      if (masked) return undefined;
    }
    return undefined;
  }

  /** Names visible in the union directory at `parts` (latin1), whiteouts applied. */
  async list(parts: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const hidden = new Set<string>();
    for (const tree of this.trees) {
      const { ino, node, masked } = await this.walk(tree, parts);
      if (node && node.type === S_IFDIR) {
        for (const [name, childIno] of await tree.entries(ino)) {
          if (hidden.has(name) || out.has(name)) continue;
          if (tree.isWhiteout(await tree.node(childIno))) hidden.add(name);
          else out.add(name);
        }
        if (await tree.isOpaque(node)) return out;
      } else if (node) {
        return out; // a non-directory hides the directories below
      }
      if (masked) return out;
    }
    return out;
  }
}

const toUtf8 = (latin1: string) => Buffer.from(latin1, "latin1").toString("utf8");
const sameAttrs = (a: Inode, b: Inode) => a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtime.sec === b.mtime.sec && a.mtime.nsec === b.mtime.nsec;

/**
 * Docker's `archive.Changes` for an overlay-style layer, computed from the images: the layer's
 * own tree (`dir`) against the union of `chain` (nearest parent first).
 *
 * - A whiteout is a Delete of its name. Anything else is an Add, or a Modify if the name exists
 *   in the parent chain, except a directory that exists there with the same mode, owner and
 *   mtime, which is not a change by itself (Docker compares size too; ext4 directory sizes are
 *   an artefact of how the directory was written, so we do not).
 * - An opaque directory that exists below is a Modify, and every name it hides that the layer
 *   does not recreate is a Delete (what the union view shows; Docker's overlay walker reports
 *   such a directory less precisely).
 * - When an Add or Delete happens in a directory not itself recorded, that directory is recorded
 *   as a Modify first (moby#13590).
 * Paths have a leading `/`; order is a walk with names sorted bytewise, parents first, as
 * `filepath.Walk`. A base layer's changes are all Adds.
 */
export async function computeChanges(dir: string, chain: string[]): Promise<Change[]> {
  return withTrees(dir, chain, async (own, parents) => {
    const out: Change[] = [];
    if (!own) return out;
    const changedDirs = new Set<string>();
    // `opaqueAbove`: a directory on the path is opaque in this layer, so nothing below shows
    // through here either (every name below that is not recreated is gone).
    const walk = async (ino: number, parts: string[], opaqueAbove: boolean) => {
      const dirPath = parts.length === 0 ? "/" : "/" + parts.map(toUtf8).join("/");
      const dirNode = await own.node(ino);
      const entries = await own.entries(ino);
      const opaque = parts.length > 0 && (opaqueAbove || (await own.isOpaque(dirNode)));
      const hiddenBelow = opaque ? await parents.list(parts) : new Set<string>();
      const names = [...new Set([...entries.keys(), ...hiddenBelow])].sort(bytewise);
      for (const name of names) {
        if (parts.length === 0 && own.hasLostFound && name === "lost+found") continue;
        const childParts = [...parts, name];
        const path = "/" + childParts.map(toUtf8).join("/");
        const childIno = entries.get(name);
        let kind: ChangeKind;
        let node: Node | undefined;
        if (childIno === undefined) {
          kind = ChangeKind.DELETE;
        } else {
          node = await own.node(childIno);
          if (own.isWhiteout(node)) kind = ChangeKind.DELETE;
          else {
            const below = await parents.lookup(childParts);
            if (!below) kind = ChangeKind.ADD;
            else if (!opaque && node.type === S_IFDIR && below.type === S_IFDIR && !(await own.isOpaque(node)) && sameAttrs(node.inode, below.inode)) {
              // The directory is only on the path of something changed below it.
              await walk(childIno, childParts, false);
              continue;
            } else kind = ChangeKind.MODIFY;
          }
        }
        const isDir = node !== undefined && node.type === S_IFDIR && kind !== ChangeKind.DELETE;
        if (isDir) changedDirs.add(path);
        if ((kind === ChangeKind.ADD || kind === ChangeKind.DELETE) && dirPath !== "/" && !changedDirs.has(dirPath)) {
          out.push({ path: dirPath, kind: ChangeKind.MODIFY });
          changedDirs.add(dirPath);
        }
        out.push({ path, kind });
        if (isDir) await walk(childIno!, childParts, opaque);
      }
    };
    await walk(own.root, [], false);
    return out;
  });
}

/**
 * The size of a layer's own content as Docker counts it (`directory.Size` of an overlay diff
 * dir, `archive.ChangesSize`): the sizes of everything but directories and whiteouts, a
 * hard-linked inode counted once, symlinks by their target's length.
 */
export async function computeContentSize(dir: string): Promise<number> {
  return withTrees(dir, [], async (own) => {
    if (!own) return 0;
    let size = 0;
    const seen = new Set<number>();
    const stack = [own.root];
    while (stack.length > 0) {
      const ino = stack.pop()!;
      for (const child of (await own.entries(ino)).values()) {
        const node = await own.node(child);
        if (node.type === S_IFDIR) stack.push(child);
        else if (own.isWhiteout(node)) continue;
        else if (node.inode.linksCount > 1) {
          if (seen.has(child)) continue;
          seen.add(child);
          size += node.inode.size;
        } else if (node.type === S_IFREG || node.type === S_IFLNK) size += node.inode.size;
      }
    }
    return size;
  });
}

const bytewise = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function withTrees<T>(dir: string, chain: string[], fn: (own: LayerTree | undefined, parents: ChainView) => Promise<T>): Promise<T> {
  const opened: LayerTree[] = [];
  try {
    const own = await LayerTree.open(dir);
    if (own) opened.push(own);
    const parents: LayerTree[] = [];
    for (const d of chain) {
      const t = await LayerTree.open(d).catch((err: unknown) => {
        throw new DriverError("DATA_LOSS", `parent layer ${d}: ${(err as Error).message}`, { cause: err });
      });
      if (t) {
        opened.push(t);
        parents.push(t);
      }
    }
    return await fn(own, new ChainView(parents));
  } finally {
    await Promise.all(opened.map((t) => t.close()));
  }
}
