#!/usr/bin/env node
// `inferjit` command: registers tsx (inferjit ships TypeScript sources) and runs src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
