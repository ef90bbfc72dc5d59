import { dir, file, whiteout, type TarEntry } from "./tar.js";

/** The content the crash workload applies to layer `id` (deterministic, so the parent can check it). */
export function layerEntries(id: string): TarEntry[] {
  const n = Number(id.split("-")[1] ?? 0);
  return [
    dir("d"),
    file(`d/${id}`, `${id}\n`.repeat(1 + (n % 50))),
    file("common", `${id}\n`),
    ...(n % 3 === 0 ? [whiteout("d/other")] : []),
    ...(n % 4 === 0 ? [file(`big-${id}`, Buffer.alloc(200_000 + n, id))] : []),
  ];
}
