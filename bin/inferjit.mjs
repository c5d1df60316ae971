#!/usr/bin/env node
// `inferjit` command: registers tsx (inferjit ships TypeScript sources) and runs src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = main(process.argv.slice(2));
