// args[0] of an external process is resolved with the guest's own PATH (the real guest's Go
// exec.LookPath), not the child's environment, which may be empty.
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join, resolve } from "node:path";

async function isExecutable(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The file to execute for `name`: a name with a slash is used as is (relative to `cwd`), any
 * other is searched in `path` (`:`-separated; an empty entry is the current directory).
 * Undefined when nothing executable is found.
 */
export async function lookPath(name: string, path: string, cwd: string): Promise<string | undefined> {
  if (name === "") return undefined;
  if (name.includes("/")) {
    const file = isAbsolute(name) ? name : resolve(cwd, name);
    return (await isExecutable(file)) ? file : undefined;
  }
  for (const dir of path.split(delimiter)) {
    const file = join(dir === "" ? "." : dir, name);
    if (await isExecutable(file)) return isAbsolute(file) ? file : resolve(file);
  }
  return undefined;
}
