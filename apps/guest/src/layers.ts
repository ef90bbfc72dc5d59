// CombinedLayers: the overlayfs union of a container's root (spec §3.7.3), made with the
// driver's overlay primitive. Layers are given top-most first; a ScratchPath makes the union
// writable with `<ScratchPath>/upper` and `<ScratchPath>/work`, without one it is read-only.
import { mkdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import { mountOverlay, StepLog, undoSteps, unmount, type KernelTools } from "@lcow/driver/kernel";
import { GuestError, toGuestError } from "./errors.js";
import { absolutePath, objects, type JsonObject } from "./fields.js";
import { KeyedMutex } from "@lcow/gcs-client";
import type { Logger } from "./log.js";

/** `LCOWCombinedLayers`, read from a request. */
export interface CombinedLayersSettings {
  containerRootPath: string;
  layers: string[];
  scratchPath: string;
}

export function parseCombinedLayers(s: JsonObject, requestType: "Add" | "Remove"): CombinedLayersSettings {
  const what = "CombinedLayers";
  const containerRootPath = absolutePath(s, "ContainerRootPath", `${what}.ContainerRootPath`, { optional: false });
  if (requestType === "Remove") return { containerRootPath, layers: [], scratchPath: "" };
  const layers = objects(s, "Layers", `${what}.Layers`).map((l, i) => absolutePath(l, "Path", `${what}.Layers[${i}].Path`, { optional: false }));
  const scratchPath = absolutePath(s, "ScratchPath", `${what}.ScratchPath`, { optional: true });
  if (layers.length === 0 && scratchPath === "") throw new GuestError("INVALID_ARGUMENT", `${what}: no Layers and no ScratchPath, nothing to combine`);
  return { containerRootPath, layers, scratchPath };
}

export class Unions {
  readonly #unions = new Map<string, { settings: CombinedLayersSettings; steps: StepLog }>();
  readonly #locks = new KeyedMutex();

  constructor(
    readonly stateDir: string,
    readonly tools: KernelTools,
    readonly log: Logger,
  ) {}

  /** Mounts the union at ContainerRootPath (made if missing); a path that already holds one of ours is ALREADY_EXISTS. */
  async add(settings: CombinedLayersSettings): Promise<void> {
    await mkdir(settings.containerRootPath, { recursive: true }).catch((err) => {
      throw toGuestError(err, `creating ${settings.containerRootPath}`);
    });
    const target = await realpath(settings.containerRootPath);
    return this.#locks.run(target, async () => {
      if (this.#unions.has(target)) throw new GuestError("ALREADY_EXISTS", `${settings.containerRootPath} already holds combined layers`);
      const steps = new StepLog();
      try {
        let upper: { upperDir: string; workDir: string } | undefined;
        if (settings.scratchPath !== "") {
          upper = { upperDir: join(settings.scratchPath, "upper"), workDir: join(settings.scratchPath, "work") };
          await mkdir(upper.upperDir, { recursive: true });
          await mkdir(upper.workDir, { recursive: true });
        }
        const empty = join(this.stateDir, "empty");
        await mountOverlay(this.tools, { target, lowerDirs: settings.layers, upper, emptyDirs: [join(empty, "1"), join(empty, "2")] }, steps);
        this.#unions.set(target, { settings, steps });
        this.log.info("layers combined", { target, layers: settings.layers, scratch: settings.scratchPath || undefined });
      } catch (err) {
        await undoSteps(this.tools, steps.steps, { lazy: true }).catch(() => {});
        throw toGuestError(err, `combining layers at ${settings.containerRootPath}`);
      }
    });
  }

  /** Unmounts ContainerRootPath (ours or not); nothing mounted there is success. A busy union fails and stays. */
  async remove(containerRootPath: string): Promise<void> {
    const target = await realpath(containerRootPath).catch(() => containerRootPath);
    return this.#locks.run(target, async () => {
      try {
        const known = this.#unions.get(target);
        if (known) await undoSteps(this.tools, known.steps.steps);
        else await unmount(this.tools, target);
      } catch (err) {
        throw toGuestError(err, `removing combined layers at ${containerRootPath}`);
      }
      this.#unions.delete(target);
      this.log.info("layers uncombined", { target });
    });
  }

  /** Unmounts every union (lazily if busy), for teardown; returns the failures. */
  async releaseAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const [target, u] of [...this.#unions]) {
      await this.#locks.run(target, () => undoSteps(this.tools, u.steps.steps, { lazy: true })).catch((err: unknown) => errors.push(err));
      this.#unions.delete(target);
    }
    return errors;
  }

  describe(): string[] {
    return [...this.#unions].map(([target, u]) => `union at ${target}: ${u.settings.layers.join(" > ") || "(no layers)"}${u.settings.scratchPath ? `, scratch ${u.settings.scratchPath}` : ", read-only"}`);
  }
}
