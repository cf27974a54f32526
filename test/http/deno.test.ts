import { describeNodeProcess } from "./node-process-target.ts";

describeNodeProcess("deno", "Deno (disk store, two serving processes)");
