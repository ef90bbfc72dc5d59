// A tool's failure: printed as one line on stderr, exit status 1 (as the 2017 tools did).

export class ToolError extends Error {
  override readonly name = "ToolError";
  readonly code = "TOOL_FAILED" as const;
}
