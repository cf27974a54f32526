import { describeNodeProcess } from "./node-process-target.ts";

describeNodeProcess("bun", "Bun (disk store, two serving processes)");
