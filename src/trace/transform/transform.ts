// The dynamic-to-static source transform (Paddle's program translator, for TypeScript). In the
// methods of classes decorated with @inferenceJit (or methods so decorated) and in functions or
// classes handed to inferenceJit(...) in the same file, tensor-dependent control flow is rewritten
// into calls of the runtime helpers (runtime.ts), which run plain JavaScript on JS values and
// eager tensors and record cond / while_loop nodes on traced tensors:
//   if/else           -> __d2s.ifElse(c, () => {..}, () => {..}, get, set, names)
//   c ? a : b         -> __d2s.ifElse(c, () => (a), () => (b))
//   while / for(;;)   -> __d2s.whileLoop(() => (c), () => {..; update}, get, set, names)
//   && || ! in a condition -> __d2s.and / or / not
// Variables a branch or loop assigns (declared outside it) become its outputs / carried values
// through the get/set closures. Two lowering steps run first, in plain JavaScript, so the branches
// hold no jumps: an early `return` inside an if becomes an assignment to `__ret` with the code after
// the if moved into the else-branch; `break`/`continue` inside a loop become a flag `__brkN` (the
// loop condition tests it; a for-of body is guarded by it) and the rest of the body moves into an
// else-branch. Control flow the lowering cannot put in that form (a return inside a loop, a break
// in a switch) is left as it is, with `if (t)` conditions wrapped in __d2s.truth(), so a traced
// tensor there is a graph break naming the line instead of a silent `true`.
//
// The output keeps every statement on its original line (all insertions are made within lines),
// so stack traces, graph-break messages and graph dumps point at the user's lines; an identity
// line map is attached as an inline source map for tools that chain maps.
import { ts } from 'ts-morph';

export interface TransformOptions {
  /** The module specifier the transformed file imports the runtime helpers from. */
  runtimeSpecifier: string;
  /** Attach an inline source map (default true). */
  sourceMap?: boolean;
}

export interface TransformResult {
  code: string;
  /** False when the file has nothing to convert (code is then the input). */
  changed: boolean;
  /** What was converted, for diagnostics ("ifElse at model.ts:12"). */
  conversions: string[];
}

const RT = '__d2s';
/** Decorators and calls whose name contains this mark a class or function for conversion. */
const JIT_NAME = /inferenceJit/;

type Fn = ts.FunctionLikeDeclaration;

// ---- which functions are converted ----

function targetFunctions(sf: ts.SourceFile): Fn[] {
  const out = new Set<Fn>();
  const classes = new Map<string, ts.ClassLikeDeclaration>();
  const functions = new Map<string, Fn>();
  const named: string[] = [];
  const decorated = (n: ts.Node): boolean => (ts.canHaveDecorators(n) ? ts.getDecorators(n) ?? [] : []).some((d) => JIT_NAME.test(d.expression.getText(sf)));
  // forward is synchronous (tensor ops never await); async methods and generators are left alone
  const plain = (f: Fn): boolean => !f.asteriskToken && !(ts.getCombinedModifierFlags(f as ts.Declaration) & ts.ModifierFlags.Async);
  const addClass = (c: ts.ClassLikeDeclaration): void => {
    for (const m of c.members) if ((ts.isMethodDeclaration(m) || ts.isGetAccessor(m)) && m.body && plain(m)) out.add(m);
  };
  const visit = (n: ts.Node): void => {
    if (ts.isClassDeclaration(n) || ts.isClassExpression(n)) {
      if (n.name) classes.set(n.name.text, n);
      if (decorated(n)) addClass(n);
      for (const m of n.members) if (ts.isMethodDeclaration(m) && m.body && decorated(m) && plain(m)) out.add(m);
    }
    if (ts.isFunctionDeclaration(n) && n.name && n.body) functions.set(n.name.text, n);
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.initializer && (ts.isArrowFunction(n.initializer) || ts.isFunctionExpression(n.initializer))) {
      functions.set(n.name.text, n.initializer);
    }
    if (ts.isCallExpression(n) && JIT_NAME.test(n.expression.getText(sf)) && n.arguments.length > 0) {
      const a = n.arguments[0];
      if ((ts.isArrowFunction(a) || ts.isFunctionExpression(a)) && plain(a)) out.add(a);
      else if (ts.isIdentifier(a)) named.push(a.text);
      else if (ts.isNewExpression(a) && ts.isIdentifier(a.expression)) named.push(a.expression.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  for (const name of named) {
    const c = classes.get(name);
    if (c) addClass(c);
    const f = functions.get(name);
    if (f && plain(f)) out.add(f);
  }
  return [...out];
}

// ---- small AST helpers ----

const isFunctionBoundary = (n: ts.Node): boolean => ts.isFunctionLike(n) || ts.isClassLike(n);
const isLoop = (n: ts.Node): boolean => ts.isWhileStatement(n) || ts.isDoStatement(n) || ts.isForStatement(n) || ts.isForOfStatement(n) || ts.isForInStatement(n);

/** Whether `n` holds a return, or a break/continue that leaves `n` (not one of an inner loop/switch).
 *  `await`, `yield` and `var` count too: none of them can move into the closures a branch becomes
 *  (an arrow function is not async, and a `var` would be scoped to it). */
function hasEscapingJump(n: ts.Node, kinds: { ret?: boolean; loop?: boolean }): boolean {
  let found = false;
  const visit = (x: ts.Node, inLoop: boolean, inSwitch: boolean): void => {
    if (found || isFunctionBoundary(x)) return;
    if (ts.isAwaitExpression(x) || ts.isYieldExpression(x) || (ts.isVariableDeclarationList(x) && !(x.flags & (ts.NodeFlags.Let | ts.NodeFlags.Const)))) { found = true; return; }
    if (kinds.ret && ts.isReturnStatement(x)) { found = true; return; }
    if (kinds.loop && ts.isBreakStatement(x) && !x.label && !inLoop && !inSwitch) { found = true; return; }
    if (kinds.loop && ts.isContinueStatement(x) && !x.label && !inLoop) { found = true; return; }
    if ((ts.isBreakStatement(x) || ts.isContinueStatement(x)) && x.label && kinds.loop) { found = true; return; }
    ts.forEachChild(x, (c) => visit(c, inLoop || isLoop(x), inSwitch || ts.isSwitchStatement(x)));
  };
  visit(n, false, false);
  return found;
}

const statementsOf = (s: ts.Statement): readonly ts.Statement[] => (ts.isBlock(s) ? s.statements : [s]);

/** Whether every path through `s` ends in the jump `is` (return, or break/continue). */
function alwaysJumps(s: ts.Statement | undefined, is: (x: ts.Node) => boolean): boolean {
  if (!s) return false;
  if (is(s)) return true;
  if (ts.isBlock(s)) return s.statements.length > 0 && alwaysJumps(s.statements[s.statements.length - 1], is);
  if (ts.isIfStatement(s)) return alwaysJumps(s.thenStatement, is) && alwaysJumps(s.elseStatement, is);
  return false;
}

/** Identifiers assigned in `n` (=, op=, ++/--, destructuring), outside nested functions, minus those
 *  declared inside `n`: the variables a branch or loop hands back to the code around it. */
function assignedOuterVariables(nodes: readonly ts.Node[]): string[] {
  const assigned: string[] = [];
  const declared = new Set<string>();
  const addTarget = (t: ts.Node): void => {
    if (ts.isIdentifier(t)) { if (!assigned.includes(t.text)) assigned.push(t.text); }
    else if (ts.isParenthesizedExpression(t)) addTarget(t.expression);
    else if (ts.isArrayLiteralExpression(t)) t.elements.forEach((e) => addTarget(ts.isSpreadElement(e) ? e.expression : e));
    else if (ts.isObjectLiteralExpression(t)) {
      for (const p of t.properties) {
        if (ts.isShorthandPropertyAssignment(p)) addTarget(p.name);
        else if (ts.isPropertyAssignment(p)) addTarget(p.initializer);
        else if (ts.isSpreadAssignment(p)) addTarget(p.expression);
      }
    } else if (ts.isBinaryExpression(t) && t.operatorToken.kind === ts.SyntaxKind.EqualsToken) addTarget(t.left);
  };
  const declare = (name: ts.BindingName): void => {
    if (ts.isIdentifier(name)) declared.add(name.text);
    else for (const e of name.elements) if (!ts.isOmittedExpression(e)) declare(e.name);
  };
  const visit = (x: ts.Node): void => {
    if (isFunctionBoundary(x)) {
      if ((ts.isFunctionDeclaration(x) || ts.isClassDeclaration(x)) && x.name) declared.add(x.name.text);
      return;
    }
    if (ts.isVariableDeclaration(x)) declare(x.name);
    if (ts.isBinaryExpression(x) && x.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && x.operatorToken.kind <= ts.SyntaxKind.LastAssignment) addTarget(x.left);
    if ((ts.isPrefixUnaryExpression(x) || ts.isPostfixUnaryExpression(x)) && (x.operator === ts.SyntaxKind.PlusPlusToken || x.operator === ts.SyntaxKind.MinusMinusToken)) addTarget(x.operand);
    ts.forEachChild(x, visit);
  };
  nodes.forEach(visit);
  return assigned.filter((n) => !declared.has(n));
}

// ---- text edits (pass 1) ----

interface Edit { pos: number; end: number; text: string; seq: number }

function applyEdits(text: string, edits: Edit[]): string {
  // right to left; at one position a replacement goes before the insertions there (so they land in
  // front of it), and insertions made earlier end up first
  const sorted = [...edits].sort((a, b) => b.pos - a.pos || (b.end - b.pos) - (a.end - a.pos) || b.seq - a.seq);
  let out = text;
  for (const e of sorted) out = out.slice(0, e.pos) + e.text + out.slice(e.end);
  return out;
}

/** Pass 1: early returns and loop jumps lowered into if/else form (plain JavaScript semantics). */
function lowerJumps(sf: ts.SourceFile, fns: readonly Fn[]): { text: string; changed: boolean } {
  const edits: Edit[] = [];
  let seq = 0;
  const edit = (pos: number, end: number, text: string): void => { edits.push({ pos, end, text, seq: seq++ }); };
  const insert = (pos: number, text: string): void => edit(pos, pos, text);
  let brkCount = 0;

  /** Lowers a statement list in tail position; `jump` says what is lowered (returns -> __ret, or a
   *  loop's break/continue). Returns false when the list is not in a lowerable form. */
  const lowerList = (list: readonly ts.Statement[], mode: { kind: 'ret' } | { kind: 'loop'; flag: string }): boolean => {
    const isJump = mode.kind === 'ret' ? ts.isReturnStatement : (x: ts.Node) => ts.isBreakStatement(x) || ts.isContinueStatement(x);
    const escapes = (n: ts.Node): boolean => hasEscapingJump(n, mode.kind === 'ret' ? { ret: true } : { loop: true });
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (isJump(s)) {
        if (ts.isReturnStatement(s)) edit(s.getStart(sf), s.getEnd(), `__ret = ${s.expression ? s.expression.getText(sf) : 'undefined'};`);
        else if (ts.isBreakStatement(s)) { if (mode.kind === 'loop') edit(s.getStart(sf), s.getEnd(), `${mode.flag} = true;`); }
        else edit(s.getStart(sf), s.getEnd(), ';');
        return true; // what follows is dead code
      }
      if (!escapes(s)) continue;
      if (!ts.isIfStatement(s)) return false;
      const rest = list.slice(i + 1);
      const thenJumps = alwaysJumps(s.thenStatement, isJump);
      if (!thenJumps) return false;
      if (!lowerList(statementsOf(s.thenStatement), mode)) return false;
      if (!ts.isBlock(s.thenStatement)) { insert(s.thenStatement.getStart(sf), '{ '); insert(s.thenStatement.getEnd(), ' }'); }
      const e = s.elseStatement;
      if (e && alwaysJumps(e, isJump)) {
        if (!lowerList(statementsOf(e), mode)) return false;
        if (!ts.isBlock(e) && !ts.isIfStatement(e)) { insert(e.getStart(sf), '{ '); insert(e.getEnd(), ' }'); }
        return true;
      }
      if (rest.length === 0 && !e) return true;
      const restEnd = rest.length ? rest[rest.length - 1].getEnd() : 0;
      if (!e) {
        insert(s.thenStatement.getEnd(), ' else {');
        insert(restEnd, ' }');
        return lowerList(rest, mode);
      }
      if (ts.isBlock(e)) {
        if (rest.length) { edit(e.getEnd() - 1, e.getEnd(), ' '); insert(restEnd, ' }'); }
        return lowerList([...e.statements, ...rest], mode);
      }
      insert(e.getStart(sf), '{ ');
      insert(rest.length ? restEnd : e.getEnd(), ' }');
      return lowerList([e, ...rest], mode);
    }
    return true;
  };

  const visitLoops = (n: ts.Node): void => {
    if (ts.isWhileStatement(n) || ts.isForStatement(n) || ts.isForOfStatement(n) || ts.isForInStatement(n)) {
      const body = n.statement;
      if (ts.isBlock(body) && hasEscapingJump(body, { loop: true }) && !hasEscapingJump(body, { ret: true })) {
        // `let` flags go before the statement, so the statement must sit in a block or list
        if (!(ts.isBlock(n.parent) || ts.isSourceFile(n.parent) || ts.isCaseClause(n.parent))) return ts.forEachChild(n, visitLoops);
        const flag = `__brk${brkCount++}`;
        const before = edits.length;
        if (lowerList(body.statements, { kind: 'loop', flag })) {
          const usesBreak = hasBreak(body);
          if (usesBreak) {
            insert(n.getStart(sf), `let ${flag} = false; `);
            if (ts.isWhileStatement(n)) { insert(n.expression.getStart(sf), `!${flag} && (`); insert(n.expression.getEnd(), ')'); }
            else if (ts.isForStatement(n)) {
              if (!n.condition) { edits.splice(before); return ts.forEachChild(n, visitLoops); } // for (;;) with break stays JavaScript
              insert(n.condition.getStart(sf), `!${flag} && (`); insert(n.condition.getEnd(), ')');
            } else {
              // for-of / for-in iterate in JavaScript: stop early when the flag is a JS true; a traced
              // flag guards the rest of the iterations as branches instead
              insert(body.getStart(sf) + 1, ` if (${flag} === true) break; if (!${flag}) {`);
              insert(body.getEnd() - 1, '} ');
            }
          }
        } else {
          edits.splice(before);
        }
      }
    }
    if (isFunctionBoundary(n) && !fns.includes(n as Fn)) return;
    ts.forEachChild(n, visitLoops);
  };
  const hasBreak = (body: ts.Node): boolean => {
    let found = false;
    const v = (x: ts.Node, nested: boolean): void => {
      if (found || isFunctionBoundary(x)) return;
      if (ts.isBreakStatement(x) && !nested) found = true;
      ts.forEachChild(x, (c) => v(c, nested || isLoop(x) || ts.isSwitchStatement(x)));
    };
    v(body, false);
    return found;
  };

  for (const fn of fns) {
    const body = fn.body;
    if (!body || !ts.isBlock(body)) continue;
    // loops first (their edits sit inside the statements the return lowering may move)
    ts.forEachChild(body, visitLoops);
    const needsReturns = body.statements.some((s) => !ts.isReturnStatement(s) && hasEscapingJump(s, { ret: true }));
    if (!needsReturns) continue;
    const before = edits.length;
    if (lowerList(body.statements, { kind: 'ret' })) {
      insert(body.getStart(sf) + 1, ' let __ret;');
      insert(body.getEnd() - 1, ' return __ret; ');
    } else edits.splice(before);
  }
  return { text: applyEdits(sf.text, edits), changed: edits.length > 0 };
}

// ---- conversion (pass 2) ----

function convert(sf: ts.SourceFile, fns: readonly Fn[], conversions: string[]): string | null {
  const text = sf.text;
  const fnSet = new Set<ts.Node>(fns);
  const lineOf = (n: ts.Node): number => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  let changed = false;

  /** The transformed text of node n (from its start to its end), children substituted. */
  const emit = (n: ts.Node, inTarget: boolean): string => {
    if (inTarget) {
      const special = convertNode(n);
      if (special !== null) { changed = true; return special; }
    }
    let out = '';
    // the file itself starts at 0, so leading comments (and with them every line number) survive
    let pos = ts.isSourceFile(n) ? 0 : n.getStart(sf);
    ts.forEachChild(n, (c) => {
      const start = c.getStart(sf);
      out += text.slice(pos, start) + emit(c, inTarget || fnSet.has(c));
      pos = c.getEnd();
    });
    return out + text.slice(pos, n.getEnd());
  };
  const e = (n: ts.Node): string => emit(n, true);
  const gap = (a: number, b: number): string => text.slice(a, b);
  /** Just past the `)` closing an if/while condition (comments and spaces may sit before it). */
  const closeParen = (x: ts.Node): number => text.indexOf(')', x.getEnd()) + 1;
  const block = (s: ts.Statement): string => (ts.isBlock(s) ? e(s) : `{ ${e(s)} }`);
  const varsArgs = (vars: string[]): string => (vars.length
    ? `, () => [${vars.join(', ')}], (__v) => { [${vars.join(', ')}] = __v; }, ${JSON.stringify(vars)}`
    : '');

  /** A condition with &&, || and ! turned into helper calls. */
  const cond = (x: ts.Expression): string => {
    if (ts.isParenthesizedExpression(x)) return `(${cond(x.expression)})`;
    if (ts.isPrefixUnaryExpression(x) && x.operator === ts.SyntaxKind.ExclamationToken) return `${RT}.not(${cond(x.operand)})`;
    if (ts.isBinaryExpression(x) && (x.operatorToken.kind === ts.SyntaxKind.AmpersandAmpersandToken || x.operatorToken.kind === ts.SyntaxKind.BarBarToken)) {
      const fn = x.operatorToken.kind === ts.SyntaxKind.AmpersandAmpersandToken ? 'and' : 'or';
      return `${RT}.${fn}(${cond(x.left)}, () => (${cond(x.right)}))`;
    }
    return e(x);
  };

  const convertNode = (n: ts.Node): string | null => {
    if (ts.isIfStatement(n)) {
      const branches = [n.thenStatement, ...(n.elseStatement ? [n.elseStatement] : [])];
      if (branches.some((b) => hasEscapingJump(b, { ret: true, loop: true }))) {
        // left in JavaScript: an explicit conversion, so a traced tensor breaks the graph loudly
        conversions.push(`truth at line ${lineOf(n)}`);
        let out = gap(n.getStart(sf), n.expression.getStart(sf)) + `${RT}.truth(${cond(n.expression)})` + gap(n.expression.getEnd(), n.thenStatement.getStart(sf)) + e(n.thenStatement);
        if (n.elseStatement) out += gap(n.thenStatement.getEnd(), n.elseStatement.getStart(sf)) + e(n.elseStatement);
        return out;
      }
      conversions.push(`ifElse at line ${lineOf(n)}`);
      const vars = assignedOuterVariables(branches);
      let out = `${RT}.ifElse(${cond(n.expression)}, () => ${gap(closeParen(n.expression), n.thenStatement.getStart(sf))}${block(n.thenStatement)}`;
      if (n.elseStatement) {
        out += gap(n.thenStatement.getEnd(), n.elseStatement.getStart(sf)).replace(/\belse\b/, ', () =>') + block(n.elseStatement);
      } else out += ', () => {}';
      return `${out}${varsArgs(vars)});`;
    }
    if (ts.isConditionalExpression(n)) {
      conversions.push(`ifElse (ternary) at line ${lineOf(n)}`);
      return `${RT}.ifElse(${cond(n.condition)}, () => (${e(n.whenTrue)}), () => (${e(n.whenFalse)}))`;
    }
    if (ts.isWhileStatement(n) && !hasEscapingJump(n.statement, { ret: true, loop: true })) {
      conversions.push(`whileLoop at line ${lineOf(n)}`);
      const vars = assignedOuterVariables([n.expression, n.statement]);
      return `${RT}.whileLoop(() => (${cond(n.expression)}), () => ${gap(closeParen(n.expression), n.statement.getStart(sf))}${block(n.statement)}${varsArgs(vars)});`;
    }
    if (ts.isForStatement(n) && !hasEscapingJump(n.statement, { ret: true, loop: true })) {
      conversions.push(`whileLoop (for) at line ${lineOf(n)}`);
      const init = n.initializer ? (ts.isVariableDeclarationList(n.initializer) ? e(n.initializer) : e(n.initializer)) : '';
      const vars = assignedOuterVariables([...(n.condition ? [n.condition] : []), n.statement, ...(n.incrementor ? [n.incrementor] : [])]);
      const c = n.condition ? cond(n.condition) : 'true';
      const inc = n.incrementor ? ` ${e(n.incrementor)};` : '';
      const body = block(n.statement);
      return `{ ${init}; ${RT}.whileLoop(() => (${c}), () => { ${body}${inc} }${varsArgs(vars)}); }`;
    }
    if ((ts.isWhileStatement(n) || ts.isDoStatement(n)) && n.expression) {
      // a loop with jumps the lowering could not remove runs in JavaScript, condition made explicit
      conversions.push(`truth (loop) at line ${lineOf(n)}`);
      const before = ts.isWhileStatement(n) ? gap(n.getStart(sf), n.expression.getStart(sf)) : gap(n.getStart(sf), n.statement.getStart(sf)) + e(n.statement) + gap(n.statement.getEnd(), n.expression.getStart(sf));
      const after = ts.isWhileStatement(n) ? gap(n.expression.getEnd(), n.statement.getStart(sf)) + e(n.statement) + gap(n.statement.getEnd(), n.getEnd()) : gap(n.expression.getEnd(), n.getEnd());
      return `${before}${RT}.truth(${cond(n.expression)})${after}`;
    }
    return null;
  };

  const out = emit(sf, false);
  return changed ? out : null;
}

/** Identity line map: line i of the output comes from line i of the input (the transform keeps
 *  lines), as an inline source map comment. */
function lineMap(fileName: string, source: string, lines: number): string {
  const mappings = ['AAAA', ...Array.from({ length: lines - 1 }, () => 'AACA')].join(';');
  const map = { version: 3, sources: [fileName], sourcesContent: [source], names: [], mappings };
  return `\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}`;
}

/** Transforms one TypeScript/JavaScript file; files without a decorated class or an inferenceJit
 *  call come back unchanged (cheaply: a text check first). */
export function transformSource(code: string, fileName: string, options: TransformOptions): TransformResult {
  if (!JIT_NAME.test(code)) return { code, changed: false, conversions: [] };
  const kind = /\.(c|m)?tsx$|\.jsx$/.test(fileName) ? ts.ScriptKind.TSX : /\.(c|m)?js$/.test(fileName) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const parse = (t: string): ts.SourceFile => ts.createSourceFile(fileName, t, ts.ScriptTarget.Latest, true, kind);
  const sf1 = parse(code);
  const fns1 = targetFunctions(sf1);
  if (fns1.length === 0) return { code, changed: false, conversions: [] };
  const lowered = lowerJumps(sf1, fns1);
  const sf2 = lowered.changed ? parse(lowered.text) : sf1;
  const conversions: string[] = [];
  const converted = convert(sf2, lowered.changed ? targetFunctions(sf2) : fns1, conversions);
  if (converted === null && !lowered.changed) return { code, changed: false, conversions };
  let body = converted ?? lowered.text;
  // the import goes on the first line (after a shebang), so no line moves
  const header = `import * as ${RT} from ${JSON.stringify(options.runtimeSpecifier)}; `;
  if (body.startsWith('#!')) {
    const nl = body.indexOf('\n');
    body = nl < 0 ? body : `${body.slice(0, nl + 1)}${header}${body.slice(nl + 1)}`;
  } else body = header + body;
  if (options.sourceMap ?? true) body += lineMap(fileName, code, code.split('\n').length);
  return { code: body, changed: true, conversions };
}
