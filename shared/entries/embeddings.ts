/** The `/v1/embeddings` door: its first request (shared/lazy.ts). */
import '../gateway.ts'; // see README.md here
export { handleEmbeddings } from '../wire/embeddings/door.ts';
