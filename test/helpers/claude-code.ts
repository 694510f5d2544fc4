import { startKeyedGateway, type KeyedGateway } from './keys.ts';
import { startMockAnthropic, type MockAnthropic } from './mock-anthropic.ts';
import { startMockBedrock, type MockBedrock } from './mock-bedrock.ts';
import { startMockOpenAI, type MockOpenAI } from './mock-openai.ts';

/** The upstream key the keyed test gateway holds (TEST_UPSTREAM_KEY, set by startKeyedGateway). */
export const KEYED_UPSTREAM_KEY = 'sk-upstream-test-0000000000000000';

/** What the Claude Code suites run against: Anthropic, Bedrock and OpenAI mock upstreams behind a keyed gateway, and one key. */
export interface ClaudeCodeRig {
  claude: MockAnthropic;
  bedrock: MockBedrock;
  openaiUp: MockOpenAI;
  gw: KeyedGateway;
  key: string;
  keyId: string;
  /** Forget what the upstreams saw and were scripted with (before each test). */
  reset(): void;
  close(): Promise<void>;
}

/** Start the three upstreams, then a keyed gateway with the config `configOf` builds from them, and create key `keyName`. */
export async function startClaudeCodeRig(keyName: string, configOf: (up: { claude: MockAnthropic; bedrock: MockBedrock; openaiUp: MockOpenAI }) => Record<string, unknown>): Promise<ClaudeCodeRig> {
  const [claude, bedrock, openaiUp] = await Promise.all([startMockAnthropic({ apiKey: KEYED_UPSTREAM_KEY }), startMockBedrock(), startMockOpenAI()]);
  const gw = await startKeyedGateway({ upstreamBaseUrl: openaiUp.baseUrl, config: configOf({ claude, bedrock, openaiUp }) });
  const { key, id: keyId } = await gw.createKey({ name: keyName });
  return {
    claude,
    bedrock,
    openaiUp,
    gw,
    key,
    keyId,
    reset() {
      claude.reset();
      bedrock.reset();
      openaiUp.reset();
    },
    async close() {
      await gw.close();
      await Promise.all([claude.close(), bedrock.close(), openaiUp.close()]);
    },
  };
}
