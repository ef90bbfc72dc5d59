import { getHcs, type Hcs } from "./hcs.js";

/**
 * Grants the VM whose compute-system id is `vmId` access to each path (kernel,
 * initrd, VHDs): `HcsGrantVmAccess` on computecore.dll, `GrantVmAccess` on
 * vmcompute.dll. The ACE derives from the id, so this works before the system exists.
 */
export async function grantVmAccess(vmId: string, paths: string | readonly string[], options: { readonly hcs?: Hcs } = {}): Promise<void> {
  const hcs = options.hcs ?? getHcs();
  for (const p of typeof paths === "string" ? [paths] : paths) await hcs.grantVmAccess(vmId, p);
}

/** Removes grants made by {@link grantVmAccess} (computecore.dll only; `NOT_IMPLEMENTED` on vmcompute.dll). */
export async function revokeVmAccess(vmId: string, paths: string | readonly string[], options: { readonly hcs?: Hcs } = {}): Promise<void> {
  const hcs = options.hcs ?? getHcs();
  for (const p of typeof paths === "string" ? [paths] : paths) await hcs.revokeVmAccess(vmId, p);
}
