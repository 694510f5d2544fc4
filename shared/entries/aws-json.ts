/** The lean AWS JSON client (shared/aws): the Firehose log sink's first send (shared/telemetry/firehose-sink.ts). */
import '../gateway.ts'; // see README.md here
export { AwsJsonClient } from '../aws/json-client.ts';
export { awsTarget } from '../aws/target.ts';
