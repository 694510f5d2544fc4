import { startLocalDynamo } from '../local/dynamodb.ts';
import { announceReady, onStopSignal } from './child.ts';

/**
 * The benchmark's DynamoDB API: dynalite in memory, in its own process (on the load generator's
 * core), so our gateway pays for its store round trips over a real socket, as it would in AWS,
 * without the store's own work landing on the gateway's core.
 */
const dynamo = await startLocalDynamo({ port: Number(process.env.BENCH_PORT ?? 0) });
announceReady(dynamo.endpoint);
onStopSignal(() => dynamo.close());
