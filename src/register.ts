// `tsx --import inferjit/register app.ts` (or `node --import tsx --import inferjit/register
// app.ts`): turns on the dynamic-to-static source transform for the application's TypeScript
// files, so `if`/`while` on tensors in @inferenceJit code compile to cond / while_loop nodes
// instead of breaking the graph (src/trace/transform/). tsx must be loaded first: it resolves and
// compiles every file the transform leaves alone. Without this import nothing is transformed and
// code behaves exactly as before.
import { register } from 'node:module';

register(new URL('./trace/transform/loader-hooks.js', import.meta.url).href, import.meta.url);
