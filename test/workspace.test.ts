// Dependency discipline, enforced: every manifest has the same shape, every import of a
// package's source is declared in its manifest, and the arrows of DESIGN.md point down only.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { builtinModules } from "node:module";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const workspaces = ["packages", "apps"].flatMap((group) =>
  readdirSync(join(root, group))
    .map((name) => join(root, group, name))
    .filter((dir) => statSync(join(dir, "package.json"), { throwIfNoEntry: false })?.isFile()),
);

interface Manifest {
  name: string;
  type?: string;
  private?: boolean;
  exports?: Record<string, unknown>;
  files?: string[];
  sideEffects?: boolean;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));

/** Which @lcow packages each package may import (DESIGN.md, "Layers and arrows"). */
const ALLOWED: Record<string, string[]> = {
  "@lcow/vhd": [],
  "@lcow/hcs": [],
  "@lcow/gcs-client": ["@lcow/hcs"],
  "@lcow/driver": ["@lcow/vhd", "@lcow/hcs", "@lcow/gcs-client"],
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|mts)$/.test(entry.name) && !/\.test\.ts$/.test(entry.name)) out.push(path);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+["']([^"']+)["']/g), ...text.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  return specs.filter((s) => !s.startsWith(".") && !s.startsWith("node:") && !builtinModules.includes(s));
}

const packageName = (spec: string) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);

describe("workspace", () => {
  it("has the packages the design names", () => {
    const names = workspaces.map((d) => manifest(d).name);
    expect(names).toEqual(expect.arrayContaining(["@lcow/vhd", "@lcow/cli"]));
  });

  for (const dir of workspaces) {
    const m = manifest(dir);
    describe(m.name, () => {
      it("has a uniform manifest", () => {
        expect(m.type).toBe("module");
        expect(m.engines?.node).toBe(">=20.11");
        if (!m.private) {
          // ".", then any subpath entries (e.g. "./protocol"), then "./package.json"; each with types first.
          const keys = Object.keys(m.exports ?? {});
          expect(keys[0]).toBe(".");
          expect(keys.at(-1)).toBe("./package.json");
          for (const key of keys.slice(0, -1)) expect(Object.keys((m.exports?.[key] ?? {}) as object)[0], `${m.name} exports ${key}`).toBe("types");
          expect(m.files).toEqual(["dist"]);
          expect(m.sideEffects).toBe(false);
        }
        for (const [dep, range] of Object.entries(m.dependencies ?? {})) {
          if (dep.startsWith("@lcow/")) expect(range, `${dep} in ${m.name}`).toBe("workspace:^");
        }
        expect(readFileSync(join(dir, "README.md"), "utf8").length).toBeGreaterThan(200);
      });

      it("imports only what it declares, and only down the arrows", () => {
        const declared = new Set([...Object.keys(m.dependencies ?? {}), ...Object.keys(m.peerDependencies ?? {})]);
        for (const file of sourceFiles(join(dir, "src"))) {
          for (const spec of importsOf(file)) {
            const dep = packageName(spec);
            expect(declared.has(dep), `${file} imports ${spec}, not in ${m.name}'s dependencies`).toBe(true);
            if (dep === "koffi") expect(m.name, "only @lcow/hcs loads koffi").toBe("@lcow/hcs");
            if (dep.startsWith("@lcow/") && m.name in ALLOWED) {
              expect(ALLOWED[m.name], `${m.name} must not import ${dep}`).toContain(dep);
            }
            const app = workspaces.find((d) => d.startsWith(join(root, "apps")) && manifest(d).name === dep);
            expect(app, `${m.name} imports the app ${dep}`).toBeUndefined();
          }
        }
      });
    });
  }
});
