// An in-memory GraphDriver for protocol tests that need failures the real driver cannot be made
// to produce on demand (a Diff stream that breaks midway). Layers hold the tar they were given.

import { Readable } from "node:stream";
import type { CreateOptions, GraphDriver, LayerChange } from "../src/driver.js";

class FakeError extends Error {
  override readonly name = "DriverError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface FakeLayer {
  parent: string;
  rw: boolean;
  tar: Buffer;
  gets: number;
}

export class FakeDriver implements GraphDriver {
  readonly reproducesExactDiffs = true;
  readonly layers = new Map<string, FakeLayer>();
  home: string | undefined;
  options: readonly string[] = [];
  inits = 0;
  cleanups = 0;
  /** Bytes applyDiff has read so far (to observe back-pressure). */
  applied = 0;
  /** Makes diff of this id fail after this many bytes (0: before the first chunk). */
  failDiffAfter = new Map<string, number>();
  /** Resolves when set: applyDiff waits on it before each chunk. */
  gate: Promise<void> | undefined;

  async init(home: string, options: readonly string[]) {
    for (const o of options) if (!o.startsWith("lcow.")) throw new FakeError("INVALID_ARGUMENT", `unknown option ${o}`);
    this.home = home;
    this.options = options;
    this.inits++;
  }
  async status(): Promise<[string, string][]> {
    return [["Home", this.home ?? ""], ["Layers", String(this.layers.size)]];
  }
  private layer(id: string): FakeLayer {
    const l = this.layers.get(id);
    if (l === undefined) throw new FakeError("NOT_FOUND", `layer ${id} does not exist`);
    return l;
  }
  private add(id: string, parent: string, rw: boolean) {
    if (this.layers.has(id)) throw new FakeError("ALREADY_EXISTS", `layer ${id} exists`);
    if (parent !== "") this.layer(parent);
    this.layers.set(id, { parent, rw, tar: Buffer.alloc(0), gets: 0 });
  }
  async create(id: string, parent: string, _o: CreateOptions) {
    this.add(id, parent, false);
  }
  async createReadWrite(id: string, parent: string, _o: CreateOptions) {
    this.add(id, parent, true);
  }
  async remove(id: string) {
    this.layer(id);
    this.layers.delete(id);
  }
  async get(id: string) {
    this.layer(id).gets++;
    return `${this.home}/${id}`;
  }
  async put(id: string) {
    const l = this.layer(id);
    if (l.gets === 0) throw new FakeError("FAILED_PRECONDITION", `layer ${id} is not mounted`);
    l.gets--;
  }
  async exists(id: string) {
    return this.layers.has(id);
  }
  async getMetadata(id: string) {
    return { dir: `${this.home}/${id}`, parent: this.layer(id).parent };
  }
  async cleanup() {
    this.cleanups++;
    for (const l of this.layers.values()) l.gets = 0;
  }
  async diff(id: string, _parent: string): Promise<Readable> {
    const tar = this.layer(id).tar;
    const failAt = this.failDiffAfter.get(id);
    let sent = 0;
    return new Readable({
      highWaterMark: 4096,
      read() {
        if (failAt !== undefined && sent >= failAt) {
          this.destroy(new FakeError("DATA_LOSS", `layer ${id}: image is damaged`));
          return;
        }
        const end = Math.min(tar.length, sent + 4096, failAt ?? Infinity);
        if (sent >= tar.length) return void this.push(null);
        this.push(tar.subarray(sent, end));
        sent = end;
      },
    });
  }
  async changes(id: string): Promise<LayerChange[]> {
    this.layer(id);
    return [{ path: "/a", kind: 1 }, { path: "/b", kind: 2 }];
  }
  async applyDiff(id: string, _parent: string, tar: Readable) {
    const l = this.layer(id);
    const chunks: Buffer[] = [];
    for await (const chunk of tar as AsyncIterable<Buffer>) {
      if (this.gate !== undefined) await this.gate;
      this.applied += chunk.length;
      chunks.push(chunk);
      if (chunk.includes("BAD-TAR")) throw new FakeError("INVALID_ARGUMENT", `layer ${id}: tar header invalid`);
    }
    l.tar = Buffer.concat(chunks);
    return l.tar.length;
  }
  async diffSize(id: string) {
    return this.layer(id).tar.length;
  }
}
