import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { GatewayConfig } from '../shared/config/schema.ts';
import { hashKey, hashesEqual, newKey, parseKey } from '../shared/policy/keys.ts';
import { createDynamoStore, dynamoSettings, ensureTables } from '../shared/store/dynamodb.ts';
import type { KeyRecord, Store } from '../shared/store/types.ts';
import { startLocalDynamo, type LocalDynamo } from './dynamodb.ts';

export const DEV_KEY_FILE = 'data/dev-key.txt';
export const ADMIN_TOKEN_FILE = 'data/admin-token.txt';

export interface LocalAuth {
  store: Store;
  /** The environment for the gateway, with the admin token filled in. */
  env: Record<string, string | undefined>;
  /** Lines for the start-up banner. */
  banner: string[];
  /** Shell text that yields a usable key, for the banner's curl (e.g. `$(cat data/dev-key.txt)`). */
  keyExpr: string;
  close(): Promise<void>;
}

function readSecret(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function writeSecret(file: string, value: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
}

/**
 * What `npm start` needs when keys are on: a DynamoDB API (dynalite on disk under
 * `store.localDir`, unless DYNAMODB_ENDPOINT points elsewhere) with the tables created, an admin
 * token (GATEWAY_ADMIN_TOKEN, else one generated once into data/admin-token.txt), and on the first
 * start, with no key in the table yet, a dev key saved to data/dev-key.txt.
 */
export async function prepareLocalAuth(config: GatewayConfig, baseEnv: Record<string, string | undefined>): Promise<LocalAuth | undefined> {
  if (!config.auth?.required) return undefined;
  let dynamo: LocalDynamo | undefined;
  const env = { ...baseEnv };
  if (!env.DYNAMODB_ENDPOINT && !config.store.endpoint) {
    dynamo = await startLocalDynamo({ dir: config.store.localDir });
    env.DYNAMODB_ENDPOINT = dynamo.endpoint;
  }
  const settings = dynamoSettings(config.store, env);
  await ensureTables(settings);
  const store = createDynamoStore(settings);
  const banner: string[] = [];
  let keyExpr = '$GATEWAY_KEY';

  const tokenEnv = config.auth.adminTokenEnv;
  if (!env[tokenEnv]) {
    let token = readSecret(ADMIN_TOKEN_FILE);
    if (!token) {
      token = `gwadmin_${randomBytes(32).toString('base64url')}`;
      writeSecret(ADMIN_TOKEN_FILE, token);
    }
    env[tokenEnv] = token;
    // The core's 401s name where the token is.
    env.GATEWAY_ADMIN_TOKEN_FILE = ADMIN_TOKEN_FILE;
    banner.push(`Admin API token: ${ADMIN_TOKEN_FILE} (set ${tokenEnv} to choose your own)`);
  } else {
    banner.push(`Admin API token: from ${tokenEnv}`);
  }

  const existing = readSecret(DEV_KEY_FILE);
  const existingId = existing ? parseKey(existing) : undefined;
  const rec = existingId ? await store.getKey(existingId) : undefined;
  if (existing && rec && hashesEqual(rec.hash, hashKey(existing)) && !rec.revokedAt) {
    banner.push(`Dev key: ${DEV_KEY_FILE}  ->  export GATEWAY_KEY=$(cat ${DEV_KEY_FILE})`);
    keyExpr = `$(cat ${DEV_KEY_FILE})`;
  } else if (!(await store.hasAnyKey())) {
    const { id, key, hash } = newKey();
    const now = new Date().toISOString();
    const dev: KeyRecord = { id, hash, name: 'local-dev', limits: {}, budget: {}, createdAt: now, updatedAt: now, metadata: { createdBy: 'npm start' }, version: 1 };
    await store.createKey(dev);
    writeSecret(DEV_KEY_FILE, key);
    banner.push(`Dev key created (saved to ${DEV_KEY_FILE}): ${key}`, `  export GATEWAY_KEY=$(cat ${DEV_KEY_FILE})`);
    keyExpr = `$(cat ${DEV_KEY_FILE})`;
  } else {
    banner.push('Keys are on. Create one, then export it as GATEWAY_KEY:', '  npm run keys -- create --name me');
  }

  return {
    store,
    env,
    banner,
    keyExpr,
    async close() {
      store.close();
      await dynamo?.close();
    },
  };
}
