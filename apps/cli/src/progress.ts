// A one-line progress display for stderr. Only drawn on a TTY: in a pipe or a CI log, carriage
// returns would turn into thousands of lines.

import { formatBytes, formatDuration, mibPerSecond } from "./format.js";

/** Where the bar is drawn: a stream-like `write` plus what we know about the terminal. */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean | undefined;
  columns?: number | undefined;
}

/** Options of `Progress`. */
export interface ProgressOptions {
  /** Bytes the input will have in all, when known (a regular file); enables percentage and ETA. */
  total?: number | undefined;
  /** Clock in milliseconds. If not provided, `performance.now`. Injected by tests. */
  now?: () => number;
  /** Least time between two redraws, in milliseconds. If not provided, 100 (at most ~10 redraws a second). */
  intervalMs?: number;
}

/**
 * Progress of a byte stream, redrawn in place on `sink` when it is a TTY and silent otherwise.
 * Call `update(bytes)` as often as you like (redraws are throttled), `clear()` before printing
 * another line to the same terminal (the bar is redrawn on the next update), and `done()` once at
 * the end (clears the line; later calls do nothing).
 */
export class Progress {
  private readonly enabled: boolean;
  private readonly now: () => number;
  private readonly interval: number;
  private readonly start: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private finished = false;
  private bytes = 0;

  constructor(
    private readonly sink: ProgressSink,
    private readonly options: ProgressOptions = {},
  ) {
    this.enabled = sink.isTTY === true;
    this.now = options.now ?? (() => performance.now());
    this.interval = options.intervalMs ?? 100;
    this.start = this.now();
  }

  /** Records that `bytes` bytes have been read so far, and redraws if the last redraw is old enough. */
  update(bytes: number): void {
    this.bytes = bytes;
    if (!this.enabled || this.finished) return;
    const t = this.now();
    if (t - this.lastDraw < this.interval) return;
    this.lastDraw = t;
    this.draw(t);
  }

  /** Erases the bar so a message can be printed on a clean line. */
  clear(): void {
    if (this.drawn) {
      this.sink.write("\r\x1b[2K");
      this.drawn = false;
      // Redraw at the next update rather than waiting out the interval, so the bar does not vanish.
      this.lastDraw = -Infinity;
    }
  }

  /** Erases the bar for good. */
  done(): void {
    this.clear();
    this.finished = true;
  }

  /** The text of the bar for the current state (exposed for tests). */
  render(t = this.now()): string {
    const seconds = (t - this.start) / 1000;
    const rate = mibPerSecond(this.bytes, seconds);
    const speed = `${rate.toFixed(1)} MiB/s`;
    const total = this.options.total;
    if (total === undefined || total <= 0) return `${formatBytes(this.bytes)} read  ${speed}`;
    const fraction = Math.min(1, this.bytes / total);
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
    const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
    // ETA from the average rate so far: steadier than the instantaneous rate, good enough for a layer.
    const eta = this.bytes > 0 && seconds > 0 ? formatDuration(((total - this.bytes) * seconds) / this.bytes) : "?";
    return `${bar} ${pct}  ${formatBytes(this.bytes)} / ${formatBytes(total)}  ${speed}  ETA ${eta}`;
  }

  private draw(t: number): void {
    let line = this.render(t);
    const columns = this.sink.columns;
    // A line wider than the terminal wraps, and `\r` then only returns to the wrapped part.
    if (columns !== undefined && columns > 1 && line.length >= columns) line = line.slice(0, columns - 1);
    this.sink.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }
}
