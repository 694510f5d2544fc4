/** The admin API (keys, teams; zod for its bodies): only `/admin/*` requests. */
import '../gateway.ts'; // see README.md here
export { handleAdmin } from '../admin/api.ts';
