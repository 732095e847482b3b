#!/usr/bin/env node
// havend, the Haven node daemon (built from src/agent/main.ts by `npm run build`).
import "../dist/src/agent/main.js";
