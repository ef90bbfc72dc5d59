// Timers for RPCs and accepts. Every wait in this package has one, so nothing hangs for ever
// unless the caller asked for `Infinity`.
import { GcsError } from "./errors.js";

/** setTimeout's largest delay; longer deadlines re-arm (a 5-week WaitForProcess is legitimate). */
const MAX_TIMER_MS = 0x7fff_ffff;

/** Validates a timeout option: a positive number of ms, or Infinity for none. */
export function checkTimeout(ms: number, name: string): number {
  if (typeof ms !== "number" || Number.isNaN(ms) || ms <= 0) {
    throw new GcsError("INVALID_ARGUMENT", `${name} must be a positive number of ms or Infinity, got ${String(ms)}`);
  }
  return ms;
}

/** One timer that may be started once and cleared any number of times. */
export class Deadline {
  readonly #ms: number;
  #timer: NodeJS.Timeout | undefined;
  #cleared = false;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** Calls `onExpire` after the delay, unless cleared first; does nothing for Infinity. */
  start(onExpire: () => void): void {
    if (!Number.isFinite(this.#ms) || this.#cleared) return;
    let left = this.#ms;
    const arm = (): void => {
      const step = Math.min(left, MAX_TIMER_MS);
      left -= step;
      this.#timer = setTimeout(() => (left > 0 ? arm() : onExpire()), step);
    };
    arm();
  }

  /** `promise`, or a rejection with `onTimeout()` when the deadline passes first. */
  race<T>(promise: Promise<T>, onTimeout: () => GcsError): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.start(() => reject(onTimeout()));
      promise.then(resolve, reject);
    });
  }

  clear(): void {
    this.#cleared = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
