import { describe, expect, it } from "vitest";
import { Progress } from "./progress.js";

function terminal(isTTY: boolean, columns = 200) {
  const writes: string[] = [];
  return { sink: { write: (s: string) => writes.push(s), isTTY, columns }, writes };
}

describe("Progress", () => {
  it("draws nothing when stderr is not a TTY", () => {
    const { sink, writes } = terminal(false);
    const p = new Progress(sink, { total: 100, now: () => 0 });
    p.update(50);
    p.clear();
    p.done();
    expect(writes).toEqual([]);
  });

  it("redraws at most once per interval", () => {
    const { sink, writes } = terminal(true);
    let t = 0;
    const p = new Progress(sink, { now: () => t, intervalMs: 100 });
    for (t = 0; t < 1000; t += 5) p.update(t * 1024);
    // 200 updates over one second: one draw per 100 ms.
    expect(writes).toHaveLength(10);
    expect(writes.every((w) => w.startsWith("\r\x1b[2K"))).toBe(true);
  });

  it("shows bytes and rate without a total, and percentage and ETA with one", () => {
    const t = 2000;
    const open = new Progress(terminal(true).sink, { now: () => 0 });
    open.update(4 * 2 ** 20);
    expect(open.render(t)).toBe("4.0 MiB read  2.0 MiB/s");

    const sized = new Progress(terminal(true).sink, { total: 16 * 2 ** 20, now: () => 0 });
    sized.update(4 * 2 ** 20);
    // A quarter done in 2 s: 6 s to go.
    expect(sized.render(t)).toBe("[######------------------]  25%  4.0 MiB / 16.0 MiB  2.0 MiB/s  ETA 6.00 s");
    sized.update(16 * 2 ** 20);
    expect(sized.render(8000)).toMatch(/^\[#{24}\] 100% .* ETA 0\.00 s$/);
  });

  it("clears before a message, redraws on the next update, and stays gone after done()", () => {
    const { sink, writes } = terminal(true);
    let t = 0;
    const p = new Progress(sink, { total: 10, now: () => t });
    p.update(1);
    p.clear();
    expect(writes.at(-1)).toBe("\r\x1b[2K");
    t = 1; // well inside the interval: the bar still comes back at once
    p.update(2);
    expect(writes.at(-1)).toMatch(/20%/);
    p.done();
    const count = writes.length;
    t = 10_000;
    p.update(5);
    p.done();
    expect(writes).toHaveLength(count);
  });

  it("truncates to the terminal width so \\r returns to the start of the line", () => {
    const { sink, writes } = terminal(true, 30);
    const p = new Progress(sink, { total: 100, now: () => 0 });
    p.update(10);
    expect(writes[0]?.replace("\r\x1b[2K", "").length).toBe(29);
  });
});
