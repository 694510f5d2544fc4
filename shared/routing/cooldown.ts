/**
 * Per-instance target health: a target that fails `failures` times within `windowMs` is skipped for
 * `cooldownMs`, then tried again. Each gateway instance (each Lambda) keeps its own view; a target
 * that fails everywhere cools down everywhere within a few requests per instance.
 */
export interface CooldownPolicy {
  failures: number;
  windowMs: number;
  cooldownMs: number;
}

export class Cooldown {
  private readonly failures = new Map<string, number[]>();
  private readonly until = new Map<string, number>();

  constructor(
    private readonly policy: CooldownPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  isCooling(key: string): boolean {
    const t = this.until.get(key);
    if (t === undefined) return false;
    if (this.now() >= t) {
      this.until.delete(key);
      return false;
    }
    return true;
  }

  failure(key: string): void {
    const now = this.now();
    const recent = (this.failures.get(key) ?? []).filter((t) => now - t < this.policy.windowMs);
    recent.push(now);
    if (recent.length >= this.policy.failures && this.policy.cooldownMs > 0) {
      this.until.set(key, now + this.policy.cooldownMs);
      this.failures.delete(key);
    } else {
      this.failures.set(key, recent);
    }
  }

  success(key: string): void {
    this.failures.delete(key);
  }
}
