// `CommandLine` is split with shell-words rules when `CommandArgs` is empty (the 2017 client sent
// `"CommandLine":"exportSandbox -path /mnt/x"`): whitespace separates words, single quotes keep
// everything literally, double quotes keep everything but `\"`, `\\`, `\$` and `` \` ``, and a
// backslash outside quotes escapes the next character. No expansion of any kind.
import { GuestError } from "./errors.js";

export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  const fail = (why: string): never => {
    throw new GuestError("INVALID_ARGUMENT", `CommandLine ${JSON.stringify(line)}: ${why}`);
  };
  while (i < line.length) {
    const c = line[i]!;
    if (c === " " || c === "\t" || c === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "\\") {
      if (i + 1 >= line.length) fail("ends with a backslash");
      word += line[i + 1];
      i += 2;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) fail("unterminated single quote");
      word += line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) fail("unterminated double quote");
        const d = line[i]!;
        if (d === '"') break;
        if (d === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) {
          word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}
