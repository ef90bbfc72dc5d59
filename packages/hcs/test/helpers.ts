import { expect } from "vitest";
import { HcsError, type HcsErrorCode } from "../src/index.js";

/** Awaits `promise`, expects it to reject with an HcsError matching `code` (and `hresult` if given), returns it. */
export async function expectHcsError(promise: Promise<unknown>, code: HcsErrorCode, hresult?: number): Promise<HcsError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected an HcsError ${code}`).toBeInstanceOf(HcsError);
  const err = caught as HcsError;
  expect({ code: err.code, hresult: err.hresult }).toEqual({ code, hresult: hresult ?? err.hresult });
  return err;
}

/** Waits until `check` is true, letting the event loop (and koffi's queued callbacks) run. */
export async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 1));
  }
}
