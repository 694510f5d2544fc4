/** Rate limits and budgets (one module each), under the name older imports use. */
export * from './rate-limits.ts';
export * from './budgets.ts';
