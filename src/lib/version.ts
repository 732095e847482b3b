// Haven's version, as published in node records and `haven --version`.
export const VERSION = "0.1.0";
