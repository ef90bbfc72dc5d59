// HRESULTs seen on the bridge (hcsshim internal/bridgeutils/gcserr/errors.go; spec §2.3). The
// guest sends them as signed 32-bit JSON numbers; we keep them unsigned (`>>> 0`).

export const Hresult = {
  /** Unknown message, or any request before NegotiateProtocol. */
  E_NOTIMPL: 0x8000_4001,
  /** Generic failure: a mount, an exec, anything without a better code. */
  E_FAIL: 0x8000_4005,
  /** Unknown pid (Wait/Signal), or the process was already reaped. */
  ERROR_NOT_FOUND: 0x8007_0490,
  E_INVALIDARG: 0x8007_0057,
  /** WaitForProcess ran out of TimeoutInMs. */
  VMCOMPUTE_TIMEOUT: 0xc037_0109,
  VMCOMPUTE_UNKNOWN_MESSAGE: 0xc037_010b,
  /** NegotiateProtocol's range excludes version 4. */
  VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION: 0xc037_010c,
  /** A payload (or the JSON inside a string field) does not parse. */
  VMCOMPUTE_INVALID_JSON: 0xc037_010d,
  /** Unknown container id (also: SignalProcess for a UVM process). */
  VMCOMPUTE_SYSTEM_NOT_FOUND: 0xc037_010e,
  VMCOMPUTE_SYSTEM_ALREADY_EXISTS: 0xc037_010f,
  VMCOMPUTE_SYSTEM_ALREADY_STOPPED: 0xc037_0110,
  VMCOMPUTE_INVALID_STATE: 0x8037_0105,
} as const;

export type HresultName = keyof typeof Hresult;

const NAMES = new Map<number, HresultName>(Object.entries(Hresult).map(([k, v]) => [v, k as HresultName]));

/** `0x80004005 (E_FAIL)`, for messages. */
export function formatHresult(hr: number): string {
  const u = hr >>> 0;
  const name = NAMES.get(u);
  return `0x${u.toString(16).padStart(8, "0")}${name ? ` (${name})` : ""}`;
}

/** The signed form the wire carries (`0x80070490` -> -2147023728). */
export const toWireHresult = (hr: number): number => hr | 0;
