export { init, Driver, type DriverOptions, type MountRecord } from "./driver.js";
export type { CreateOptions, LayerInfo, LayerStore } from "./types.js";
export { DriverError, DriverErrorCode, isDriverError, toDriverError } from "./errors.js";
export { ChangeKind, REPRODUCES_EXACT_DIFFS, type Change, type LayerKind } from "./content.js";
export { parseOptions, parseStorageOpt, DEFAULT_OPTIONS, MIN_SANDBOX_GB, type LcowOptions, type MounterName, type OptionsInput } from "./options.js";
export { validateId, LAYER_FILE, SANDBOX_FILE, TARSPLIT_FILE, CHAIN_FILE } from "./layout.js";
export { checkStore, StoreProblemCode, type StoreCheckOptions, type StoreCheckReport, type StoreProblem } from "./check.js";
export { NoneMounter, createMounter, BUILTIN_MOUNTERS } from "./mounters/index.js";
export type { Mounter, MounterContext, MounterFactory, MountRequest, MountState } from "./mounters/types.js";
