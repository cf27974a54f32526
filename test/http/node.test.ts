import { describeNodeProcess } from "./node-process-target.ts";

describeNodeProcess("node", "Node (disk store, two serving processes)");
