/**
 * What the client saw of each node lately: when it last answered, and when
 * it last failed. Nodes that failed within the cooldown are asked after the
 * others; a node that answered a moment ago needs no probe before an upload.
 */
export class NodeHealth {
  readonly #answeredAt = new Map<string, number>();
  readonly #failedAt = new Map<string, number>();

  constructor(
    readonly cooldownMs: number,
    readonly answeredWithinMs: number,
  ) {}

  answered(node: string): void {
    this.#answeredAt.set(node, Date.now());
    this.#failedAt.delete(node);
  }

  failed(node: string): void {
    this.#failedAt.set(node, Date.now());
    this.#answeredAt.delete(node);
  }

  answeredRecently(node: string): boolean {
    const at = this.#answeredAt.get(node);
    return at !== undefined && Date.now() - at < this.answeredWithinMs;
  }

  #coolingDown(node: string, now: number): boolean {
    const at = this.#failedAt.get(node);
    return at !== undefined && now - at < this.cooldownMs;
  }

  /** `nodes` in the same order, except that those that failed within the cooldown come last. */
  order(nodes: readonly string[]): string[] {
    const now = Date.now();
    const cooling = nodes.filter((node) => this.#coolingDown(node, now));
    return [...nodes.filter((node) => !cooling.includes(node)), ...cooling];
  }
}
