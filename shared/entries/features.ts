/**
 * The optional features, one module to load on first use (shared/lazy.ts): one chunk in a bundle
 * rather than one per feature, since each would also split out the start modules it shares (more
 * files for a cold start to read). What one feature's first use loads beyond it is small.
 */
import '../gateway.ts'; // see README.md here
export { BudgetAlerts } from '../alerts/budget-alerts.ts';
export { createNotifiers } from '../alerts/notifiers.ts';
export { ResponseCache } from '../cache/index.ts';
export { runChoices } from '../emulate/parallel.ts';
export { Guardrails } from '../guardrails/index.ts';
export { StatefulResponses } from '../responses/index.ts';
