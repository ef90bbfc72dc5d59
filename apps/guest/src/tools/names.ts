/** The 2017 opengcs in-VM tools this guest carries (a multi-call binary dispatched on argv[0]'s basename). */
export const TOOL_NAMES = ["tar2vhd", "vhd2tar", "exportSandbox", "createSandbox"] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

/** Exit status for a tool name we do not have, as a shell gives for a missing command. */
export const UNKNOWN_TOOL_EXIT = 127;
