import type { MountRequest, MountState, Mounter } from "./types.js";

/**
 * The seed's behaviour: `get` returns the layer folder itself and mounts nothing. Files written
 * there land next to layer.vhd / sandbox.vhdx, outside the layer's filesystem: for pure
 * layer-store use (pull, apply, diff, push), not for running containers.
 */
export class NoneMounter implements Mounter {
  readonly name = "none" as const;

  async mount(request: MountRequest): Promise<{ path: string; state: MountState }> {
    return { path: request.layerDir, state: {} };
  }

  async unmount(_id: string, _state: MountState): Promise<void> {}
}
