/** `/admin/stats` and `/admin/dashboard` (the local logs' summary and its HTML page). */
import '../gateway.ts'; // see README.md here
export { handleStatsRoute } from '../telemetry/admin-stats.ts';
