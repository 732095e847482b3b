#!/usr/bin/env node
// havend, the Haven node daemon (built from src/havend/main.ts by `npm run build`).
import "../dist/src/havend/main.js";
