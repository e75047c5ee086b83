export { compat, kernelChoices, type CompatMatrix, type CompatOptions } from './run.js';
export { formatMatrix, matrixJson } from './matrix.js';
export { loadSuite, parseRuntest, type Suite } from './suite.js';
export type { CaseResult, CellResult, CompatCase, Status } from './types.js';
