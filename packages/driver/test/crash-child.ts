// The workload of crash.test.ts, run as a child process that the test kills with SIGKILL at
// random points: applyDiff of new layers, createReadWrite and remove, in a loop, with every
// completed step appended (synchronously) to a journal so the parent knows what must survive.
//
//   node crash-child.mjs <home> <journal> <seed>
import { appendFileSync } from "node:fs";
import { init } from "../src/index.js";
import { chunksOf, tarOf } from "./tar.js";
import { layerEntries } from "./crash-layers.js";

const [home, journal, seedText] = process.argv.slice(2) as [string, string, string];
let seed = Number(seedText) >>> 0 || 1;
const random = () => {
  // xorshift32: reproducible from the seed the parent prints on failure.
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 2 ** 32;
};
const log = (line: string) => appendFileSync(journal, `${line}\n`);

const driver = await init(home, [], { fsync: false });
process.stdout.write("ready\n");
for (let n = 0; ; n++) {
  const layers = await driver.layers();
  const readOnly = layers.filter((l) => l.kind === "layer");
  const r = random();
  const id = `${process.pid}-${n}`;
  if (r < 0.55 || readOnly.length === 0) {
    const parent = readOnly.length > 0 && random() < 0.7 ? readOnly[Math.floor(random() * readOnly.length)]!.id : "";
    log(`create ${id} ${parent}`);
    await driver.create(id, parent);
    log(`created ${id}`);
    await driver.applyDiff(id, parent, chunksOf(tarOf(...layerEntries(id)), 1000));
    log(`applied ${id}`);
  } else if (r < 0.75) {
    const parent = readOnly[Math.floor(random() * readOnly.length)]!.id;
    log(`rw ${id} ${parent}`);
    await driver.createReadWrite(id, parent);
    log(`rwdone ${id}`);
  } else {
    const victim = layers[Math.floor(random() * layers.length)];
    if (!victim) continue;
    log(`remove ${victim.id}`);
    try {
      await driver.remove(victim.id);
      log(`removed ${victim.id}`);
    } catch (err) {
      if ((err as { code?: string }).code !== "FAILED_PRECONDITION") throw err;
      log(`kept ${victim.id}`);
    }
  }
}
