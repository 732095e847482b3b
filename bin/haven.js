#!/usr/bin/env node
// haven, the Haven command line (built from src/cli/main.ts by `npm run build`).
import "../dist/src/cli/main.js";
