// Reports whether this host can run LCOW. Windows: `node examples/check-host.mjs`.
// Elsewhere it prints why not (HCS exists on Windows only). Build the package first (`npx tsup`).
import { checkHost } from "@lcow/hcs";

const report = await checkHost();
console.log(report.ok ? `LCOW ready: ${report.api} API (${report.library}), schema-${report.document} document` : "LCOW not available:");
for (const problem of report.problems) console.log(`  - ${problem}`);
process.exitCode = report.ok ? 0 : 1;
