/** See gc-kinds.mjs (plain JavaScript: the preloads import it without a TypeScript loader). */
export declare const GC_KINDS: Record<number, string>;
