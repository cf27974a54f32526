import { type NodeProcess, type StartOptions, startNodeProcess } from "./node-process.ts";

export interface FreezableNode extends NodeProcess {
  /** SIGSTOP to every process of the node: TCP connections are still accepted, nothing is answered. */
  freeze(): void;
  thaw(): void;
  /** Thaws and SIGKILLs the whole process group, and waits for the node's exit. */
  kill(): Promise<void>;
}

/** A node in its own process group, which a test can hang as a whole, as a stuck machine would. */
export async function startFreezableNode(options: StartOptions = {}): Promise<FreezableNode> {
  const node = await startNodeProcess({ ...options, processGroup: true });
  const group = -node.child.pid!;
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(group, name);
    } catch (error) {
      // The group is gone: every process of it has exited.
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  };
  return {
    ...node,
    freeze: () => signal("SIGSTOP"),
    thaw: () => signal("SIGCONT"),
    async kill() {
      signal("SIGCONT");
      signal("SIGKILL");
      await node.exited;
    },
  };
}
