import os from "node:os";
import type { HcsApi } from "./backend.js";
import { HcsError, toHcsError } from "./errors.js";
import { Hcs, type HcsOptions } from "./hcs.js";
import type { SchemaVersion, ServiceProperties } from "./schema/v2.js";

/** First Windows build with computecore.dll (Windows 10 1809 / Server 2019). */
export const BUILD_RS5 = 17763;
/** First build whose HCS boots a kernel directly (`LinuxKernelDirect`), per hcsshim. */
export const BUILD_KERNEL_DIRECT = 18286;

/** What {@link checkHost} found. */
export interface HostCheck {
  /** `true` when this host can run an LCOW utility VM with one of our documents. */
  readonly ok: boolean;
  /** The document to use: `v2` (schema 2.1 VM), `v1` (2017 ContainerConfig), or `none`. */
  readonly document: "v2" | "v1" | "none";
  /** `true` when the v2 document can boot the kernel directly (else UEFI `BootThis` is needed). */
  readonly kernelDirect: boolean;
  /** The HCS API that was loaded. */
  readonly api?: HcsApi;
  /** The library that was loaded. */
  readonly library?: string;
  /** Why computecore.dll was not used. */
  readonly fallbackReason?: string;
  /** Schema versions the service supports. */
  readonly schemaVersions: readonly SchemaVersion[];
  /** Windows build number (Windows only). */
  readonly windowsBuild?: number;
  /** Human-readable reasons when something is missing. */
  readonly problems: readonly string[];
  /** The error behind `ok: false`, when there was one. */
  readonly error?: HcsError;
}

/** Options of {@link checkHost}. */
export interface CheckHostOptions extends HcsOptions {
  /** Use this instance instead of loading one. */
  readonly hcs?: Hcs;
  /** Windows build to assume (default: from `os.release()` on Windows, unknown elsewhere). */
  readonly windowsBuild?: number;
}

function windowsBuild(): number | undefined {
  if (process.platform !== "win32") return undefined;
  const build = Number(os.release().split(".")[2]);
  return Number.isInteger(build) ? build : undefined;
}

/** Schema versions from `ServiceProperties` (`Properties[].SupportedSchemaVersions`). */
export function supportedSchemaVersions(props: ServiceProperties): SchemaVersion[] {
  const out: SchemaVersion[] = [];
  for (const info of props.Properties ?? []) {
    for (const v of info.SupportedSchemaVersions ?? []) {
      if (typeof v?.Major === "number" && typeof v.Minor === "number") out.push({ Major: v.Major, Minor: v.Minor });
    }
  }
  return out;
}

/** `true` when `versions` contains `want` or a newer minor of the same major. */
export function supportsSchema(versions: readonly SchemaVersion[], want: SchemaVersion): boolean {
  return versions.some((v) => v.Major === want.Major && v.Minor >= want.Minor);
}

/**
 * Reports whether this host can run LCOW, without throwing for the expected
 * reasons (not Windows, no Hyper-V, service down, too old): loads HCS, probes the
 * service with `{"PropertyTypes":["Basic"]}` and checks for schema 2.1 (spec 4).
 */
export async function checkHost(options: CheckHostOptions = {}): Promise<HostCheck> {
  const build = options.windowsBuild ?? windowsBuild();
  const base = { schemaVersions: [] as SchemaVersion[], ...(build === undefined ? {} : { windowsBuild: build }) };
  let hcs: Hcs;
  try {
    hcs = options.hcs ?? Hcs.load(options);
  } catch (err) {
    const error = toHcsError(err);
    return { ...base, ok: false, document: "none", kernelDirect: false, problems: [error.message], error };
  }
  const loaded = {
    api: hcs.api,
    library: hcs.detection.library,
    ...(hcs.detection.fallbackReason ? { fallbackReason: hcs.detection.fallbackReason } : {}),
  };
  let props: ServiceProperties;
  try {
    props = await hcs.getServiceProperties({ PropertyTypes: ["Basic"] });
  } catch (err) {
    const error = toHcsError(err);
    const hint = error.code === "SERVICE_UNAVAILABLE" || error.code === "ACCESS_DENIED" ? " (is Hyper-V enabled and are you an administrator or in Hyper-V Administrators?)" : "";
    return { ...base, ...loaded, ok: false, document: "none", kernelDirect: false, problems: [`the compute service did not answer: ${error.message}${hint}`], error };
  }
  const schemaVersions = supportedSchemaVersions(props);
  const problems: string[] = [];
  let document: HostCheck["document"] = "none";
  if (supportsSchema(schemaVersions, { Major: 2, Minor: 1 }) && (build === undefined || build >= BUILD_RS5)) document = "v2";
  else if (hcs.api === "v1" && supportsSchema(schemaVersions, { Major: 1, Minor: 0 })) {
    document = "v1";
    problems.push("schema 2.1 is not supported: only the 2017 v1 ContainerConfig document can be used");
  } else problems.push(`the compute service supports no usable schema version (got ${schemaVersions.map((v) => `${v.Major}.${v.Minor}`).join(", ") || "none"})`);
  const kernelDirect = document === "v2" && (build === undefined || build >= BUILD_KERNEL_DIRECT);
  if (document === "v2" && !kernelDirect) problems.push(`build ${build} cannot boot a kernel directly (needs ${BUILD_KERNEL_DIRECT}); use UEFI BootThis`);
  return { ...base, ...loaded, schemaVersions, ok: document !== "none", document, kernelDirect, problems };
}
