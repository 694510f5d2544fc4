import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { configSchema, type GatewayConfig } from './schema.ts';

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly issues: string[] = [],
  ) {
    super(issues.length ? `${message}\n${issues.map((i) => `  - ${i}`).join('\n')}` : message);
    this.name = 'ConfigError';
  }
}

/** The default file shipped in the repository, relative to the working directory. */
export const DEFAULT_CONFIG_PATH = 'gateway.config.yaml';

/** Validate an already-parsed configuration object; errors name the offending field. */
export function parseConfig(raw: unknown, source = 'configuration'): GatewayConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
  throw new ConfigError(`Invalid ${source}:`, issues);
}

/** Parse YAML or JSON text (YAML is a superset of JSON) and validate it. */
export function parseConfigText(text: string, source = 'configuration'): GatewayConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`Cannot parse ${source}: ${(err as Error).message}`);
  }
  return parseConfig(raw, source);
}

/** Load the configuration named by GATEWAY_CONFIG, or the default file. */
export function loadConfigFile(path = process.env.GATEWAY_CONFIG || DEFAULT_CONFIG_PATH): GatewayConfig {
  const full = resolve(path);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read configuration file ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseConfigText(text, `configuration file ${full}`);
}

/**
 * For the command-line shells (npm start, npm run build, cdk synth): load and validate the
 * configuration, or print what is wrong with it and exit with status 1.
 */
export function loadConfigOrExit(path?: string): GatewayConfig {
  try {
    return loadConfigFile(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
}
