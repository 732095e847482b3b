// The scheduler's public surface: placement with Pacemaker-style constraints and scores.
export { explain, schedule } from "./scheduler.js";
export { parseRule, evaluateRule, formatRule, type RuleExpression } from "./rules.js";
export {
  addScores,
  formatScore,
  INFINITY,
  isMandatory,
  MINUS_INFINITY,
  parseScore,
  type Score,
} from "./scores.js";
export * from "./types.js";
