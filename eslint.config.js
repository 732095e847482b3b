// Type-aware lint for all TypeScript; src/core must stay free of I/O (design brief: "Core has no I/O").
import tseslint from "typescript-eslint";

const ioModules = [
  "node:*",
  "fs",
  "fs/*",
  "child_process",
  "net",
  "http",
  "https",
  "os",
  "path",
  "dgram",
  "dns",
  "tls",
  "process",
  "worker_threads",
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "guest/build/", "**/*.js"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          // node:test reports a suite's failures itself; its describe/test promises need no handling.
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["describe", "test", "it", "suite"] },
          ],
        },
      ],
    },
  },
  {
    files: ["src/core/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ioModules, message: "src/core is pure: no I/O imports (see docs/architecture.md)." },
          ],
        },
      ],
      "no-restricted-globals": [
        "error",
        { name: "process", message: "src/core is pure: pass configuration in." },
        { name: "fetch", message: "src/core is pure: no I/O." },
        { name: "setTimeout", message: "src/core is pure: time is passed in." },
        { name: "setInterval", message: "src/core is pure: time is passed in." },
      ],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "src/core is pure: time is passed in." },
      ],
    },
  },
);
