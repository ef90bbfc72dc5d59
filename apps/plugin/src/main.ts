// The `lcow-plugin` executable.
import { runPlugin } from "./run.js";

// Exit explicitly: the driver may hold handles (helper processes, timers) that cleanup has released but not unref'd.
process.exit(await runPlugin(process.argv.slice(2)));
